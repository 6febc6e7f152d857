// A simulated NMEA receiver on a bus: writes RMC + GGA for a vehicle driving a
// looped city route to a real serial port (in tests, one end of a socat pty
// pair), so the reader is exercised through the same kernel path as hardware.

import { SerialPort } from 'serialport';
import type { Logger } from 'pino';
import { KNOTS_TO_MPS, hex2, nmeaChecksum } from './nmea.ts';

export interface SimPosition {
  lat: number;
  lon: number;
  altM: number;
  speedMps: number;
  /** Degrees true, [0, 360). */
  trackDeg: number;
}

/** What the simulator last wrote: the position as encoded (rounded to the digits sent) and its UTC time. */
export interface SimSample extends SimPosition {
  time: Date;
  valid: boolean;
}

export interface Waypoint {
  lat: number;
  lon: number;
}

/**
 * A loop through central Xi'an the way a trunk bus line runs it: Bell Tower,
 * south along Nan Dajie and Chang'an Road to Xiaozhai, east to the Big Wild
 * Goose Pagoda, north on Yanta Road through Heping Gate, west on Dong Dajie
 * back to the Bell Tower. About 12 km, so a loop takes ~25 min at 8 m/s.
 */
export const XIAN_LOOP: readonly Waypoint[] = [
  { lat: 34.261, lon: 108.9424 }, // Bell Tower
  { lat: 34.2568, lon: 108.9425 }, // Nan Dajie
  { lat: 34.2524, lon: 108.9426 }, // South Gate (Yongningmen)
  { lat: 34.2448, lon: 108.943 }, // Nanshaomen
  { lat: 34.2372, lon: 108.9433 }, // Provincial Stadium
  { lat: 34.2238, lon: 108.944 }, // Xiaozhai
  { lat: 34.22, lon: 108.953 }, // Yanta West Road
  { lat: 34.218, lon: 108.9641 }, // Big Wild Goose Pagoda
  { lat: 34.232, lon: 108.9645 }, // Yanta Road
  { lat: 34.2523, lon: 108.9564 }, // Heping Gate
  { lat: 34.2608, lon: 108.956 }, // Dong Dajie
  { lat: 34.2609, lon: 108.9492 }, // Dong Dajie west
];

const EARTH_RADIUS_M = 6_371_008.8;
const RAD = Math.PI / 180;

export interface SimOptions {
  /** Serial device the simulator writes to (the receiver side of a pty pair). */
  path: string;
  baudRate?: number;
  /** Sentence bursts per second, 0 < rateHz <= 25 (u-blox F9P tops out there). Default 1. */
  rateHz?: number;
  /** false: RMC 'V' / GGA quality 0 (lost lock), still carrying the dead-reckoned position. Default true. */
  fixValid?: boolean;
  speedMps?: number;
  route?: readonly Waypoint[];
  /** UTC time of the first burst. Default: now. */
  startTime?: Date;
  /** Altitude above mean sea level; Xi'an's old town is ~400 m. */
  altM?: number;
  log?: Logger;
}

export class SimGpsReceiver {
  private readonly path: string;
  private readonly baudRate: number;
  private readonly periodMs: number;
  private readonly speedMps: number;
  private readonly route: readonly Waypoint[];
  private readonly altM: number;
  private readonly log: Logger | undefined;
  private fixValid: boolean;
  private startMs: number;
  private tick = 0;
  private port: SerialPort | null = null;
  private opening = false;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private last: SimSample | null = null;

  constructor(opts: SimOptions) {
    const rateHz = opts.rateHz ?? 1;
    if (!(rateHz > 0 && rateHz <= 25)) {
      throw new Error(`SimGpsReceiver ${opts.path}: rateHz ${rateHz} out of range; use 0 < rateHz <= 25, as real receivers do`);
    }
    const route = opts.route ?? XIAN_LOOP;
    if (route.length < 2) throw new Error(`SimGpsReceiver ${opts.path}: route has ${route.length} waypoints; give at least 2`);
    this.path = opts.path;
    this.baudRate = opts.baudRate ?? 9600;
    this.periodMs = 1000 / rateHz;
    this.speedMps = opts.speedMps ?? 8;
    this.route = route;
    this.altM = opts.altM ?? 405;
    this.log = opts.log;
    this.fixValid = opts.fixValid ?? true;
    // Whole seconds, as receivers align their epochs to the GPS second.
    this.startMs = Math.floor((opts.startTime?.getTime() ?? Date.now()) / 1000) * 1000;
  }

  /** Open the port and start writing; rejects if the port cannot be opened the first time. */
  async start(): Promise<void> {
    if (this.timer) return;
    this.stopped = false;
    await this.open();
    this.burst();
    this.timer = setInterval(() => this.burst(), this.periodMs);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
  }

  /** The last burst written; null before the first one. */
  position(): SimSample | null {
    return this.last;
  }

  /** Switch between lock and lost lock, as when the bus enters or leaves a tunnel. */
  setFixValid(valid: boolean): void {
    this.fixValid = valid;
  }

  private burst(): void {
    // To the 10 ms the time field carries, so position().time equals what a reader decodes (3 Hz is .33/.67).
    const time = new Date(Math.round((this.startMs + this.tick * this.periodMs) / 10) * 10);
    const pos = positionAlongRoute(this.route, this.tick * (this.periodMs / 1000) * this.speedMps, this.speedMps, this.altM);
    this.tick++;
    const port = this.port;
    if (!port?.isOpen) {
      // The far end went away (socat restarted, cable pulled): keep driving and
      // try the port again, as a real receiver keeps talking into nothing.
      if (!this.opening) this.open().catch((err: unknown) => this.log?.debug({ event: 'gps.sim.reopen-failed', path: this.path, err: String(err) }));
      return;
    }
    // A UART transmits into the void when nobody listens; a pty whose other end
    // is closed stops accepting and serialport would queue bursts in memory.
    if (port.writableLength > 16_384) return;
    const [rmc, gga] = nmeaFor(pos, time, { fixValid: this.fixValid });
    port.write(rmc + gga, 'latin1', (err) => {
      if (err) this.log?.debug({ event: 'gps.sim.write-failed', path: this.path, err: err.message });
    });
    const written = decodeWritten(pos);
    this.last = { ...pos, lat: written.lat, lon: written.lon, time, valid: this.fixValid };
  }

  private open(): Promise<void> {
    this.opening = true;
    const port = new SerialPort({ path: this.path, baudRate: this.baudRate, autoOpen: false });
    const lost = () => {
      if (this.port === port) this.port = null;
    };
    // A write into a pty whose master died fails with EIO and destroys the stream.
    port.on('error', (err) => {
      this.log?.debug({ event: 'gps.sim.port-error', path: this.path, err: err.message });
      lost();
    });
    port.on('close', lost);
    return new Promise<void>((resolve, reject) => {
      port.open((err) => {
        this.opening = false;
        if (err) {
          reject(new Error(`SimGpsReceiver ${this.path}: cannot open at ${this.baudRate} baud (${err.message}); is the pty pair running?`));
          return;
        }
        if (this.stopped) {
          // stop() ran while a reopen was under way.
          port.close();
          resolve();
          return;
        }
        this.port = port;
        resolve();
      });
    });
  }
}

/**
 * Position after driving `distanceM` along the looped route from its first
 * waypoint. Segments are short (city blocks), so a local flat-earth
 * interpolation is well under a metre off.
 */
export function positionAlongRoute(route: readonly Waypoint[], distanceM: number, speedMps: number, altM: number): SimPosition {
  const legs = route.map((from, i) => {
    const to = route[(i + 1) % route.length] as Waypoint;
    return { from, to, lengthM: legLengthM(from, to) };
  });
  const loopM = legs.reduce((sum, l) => sum + l.lengthM, 0);
  let d = loopM > 0 ? ((distanceM % loopM) + loopM) % loopM : 0;
  for (const leg of legs) {
    if (d <= leg.lengthM || leg === legs[legs.length - 1]) {
      const f = leg.lengthM > 0 ? Math.min(1, d / leg.lengthM) : 0;
      return {
        lat: leg.from.lat + (leg.to.lat - leg.from.lat) * f,
        lon: leg.from.lon + (leg.to.lon - leg.from.lon) * f,
        altM,
        speedMps,
        trackDeg: bearingDeg(leg.from, leg.to),
      };
    }
    d -= leg.lengthM;
  }
  const first = route[0] as Waypoint;
  return { lat: first.lat, lon: first.lon, altM, speedMps, trackDeg: 0 };
}

function legLengthM(a: Waypoint, b: Waypoint): number {
  const x = (b.lon - a.lon) * RAD * Math.cos(((a.lat + b.lat) / 2) * RAD);
  const y = (b.lat - a.lat) * RAD;
  return Math.hypot(x, y) * EARTH_RADIUS_M;
}

function bearingDeg(a: Waypoint, b: Waypoint): number {
  const x = (b.lon - a.lon) * Math.cos(((a.lat + b.lat) / 2) * RAD);
  const y = b.lat - a.lat;
  return ((Math.atan2(x, y) / RAD) % 360 + 360) % 360;
}

/**
 * The RMC and GGA a receiver would send for `pos` at `date`, each with its
 * checksum and CRLF, as NMEA 0183 frames them. `pos` null gives the empty position
 * fields of a receiver that has never had a fix.
 */
export function nmeaFor(pos: SimPosition | null, date: Date, opts: { fixValid?: boolean; talker?: string } = {}): [rmc: string, gga: string] {
  const valid = (opts.fixValid ?? true) && pos !== null;
  const talker = opts.talker ?? 'GP';
  const hh = pad(date.getUTCHours(), 2);
  const mm = pad(date.getUTCMinutes(), 2);
  const ss = pad(date.getUTCSeconds(), 2);
  const cs = pad(Math.floor(date.getUTCMilliseconds() / 10), 2);
  const time = `${hh}${mm}${ss}.${cs}`;
  const ddmmyy = `${pad(date.getUTCDate(), 2)}${pad(date.getUTCMonth() + 1, 2)}${pad(date.getUTCFullYear() % 100, 2)}`;
  const latLon = pos ? `${ddmm(Math.abs(pos.lat), 2)},${pos.lat < 0 ? 'S' : 'N'},${ddmm(Math.abs(pos.lon), 3)},${pos.lon < 0 ? 'W' : 'E'}` : ',,,';
  const knots = pos ? (pos.speedMps / KNOTS_TO_MPS).toFixed(3) : '';
  const course = pos ? pos.trackDeg.toFixed(2) : '';
  // NMEA 2.3 mode: A autonomous, N not valid (must accompany status V).
  const rmc = `${talker}RMC,${time},${valid ? 'A' : 'V'},${latLon},${knots},${course},${ddmmyy},,,${valid ? 'A' : 'N'}`;
  const alt = pos ? pos.altM.toFixed(1) : '';
  // Geoid separation around Xi'an is about -28 m (EGM96).
  const gga = `${talker}GGA,${time},${latLon},${valid ? 1 : 0},${valid ? '09' : '00'},${valid ? '0.9' : ''},${alt},M,-28.0,M,,`;
  return [sentence(rmc), sentence(gga)];
}

function sentence(body: string): string {
  return `$${body}*${hex2(nmeaChecksum(body))}\r\n`;
}

function pad(n: number, width: number): string {
  return String(n).padStart(width, '0');
}

// Six decimals of minutes (u-blox high-precision mode writes seven): the usual
// four are 1.7e-6 degrees, too coarse for tests that compare to 1e-6.
const MICRO = 1e6;

/** Degrees → d..dmm.mmmmmm, rounded in whole micro-minutes so 59.9999999' carries into the degree. */
function ddmm(absDeg: number, degDigits: number): string {
  const microMin = Math.round(absDeg * 60 * MICRO);
  const deg = Math.floor(microMin / (60 * MICRO));
  const min = (microMin - deg * 60 * MICRO) / MICRO;
  return `${pad(deg, degDigits)}${min.toFixed(6).padStart(9, '0')}`;
}

/** The position as the sentences encode it, so position() compares exactly with what a reader decodes. */
function decodeWritten(pos: SimPosition): { lat: number; lon: number } {
  const round = (deg: number) => Math.sign(deg) * (Math.round(Math.abs(deg) * 60 * MICRO) / (60 * MICRO));
  return { lat: round(pos.lat), lon: round(pos.lon) };
}
