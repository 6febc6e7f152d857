// The search for a GPS receiver's baud rate, for the NMEA reader
// (reader.ts): the configured rate first, then the other rates NMEA
// receivers ship with, each for a dwell that doubles with every sweep that
// found nothing; a rate is proven by checksummed sentences in a row. A
// silent or garbled receiver is summarised in the log now and then, not
// once per rate tried. The reader owns the port and tells the search what it
// reads; the search switches the open port's rate.

import type { SerialPort } from 'serialport';
import type { Logger } from 'pino';
import type { NmeaReaderState, NmeaReaderStats, NmeaReaderStatus } from './reader.ts';
import { errText } from '../../common/errors.ts';

/** The rates NMEA receivers ship with: 4800 (NMEA 0183 standard), 9600 (most modules), 38400 and 115200 (u-blox, Quectel at higher rates). */
export const NMEA_BAUD_RATES = [4800, 9600, 38400, 115200] as const;
/** Checksummed sentences in a row that prove a baud rate right: one can be luck on line noise, two are not. */
const BAUD_LOCK_SENTENCES = 2;

export interface BaudSearchOptions {
  path: string;
  /** The configured rate, tried first. */
  baudRate: number;
  /** Search at all; without it the port stays at baudRate. */
  autoBaud: boolean;
  /** Dwell per rate in the first sweep. */
  baudProbeMs: number;
  /** Ceiling of the dwell. */
  baudProbeMaxMs: number;
  /** Longest time between two 'gps.baud.none' warnings. */
  baudSummaryMaxMs: number;
  log?: Logger;
}

/** What the search needs of the reader. All calls are synchronous. */
export interface BaudSearchHost {
  /** The reader's port, or null while it has none. */
  port(): SerialPort | null;
  /** close() was called. */
  closed(): boolean;
  /** Whatever is buffered was read at the old rate: drop it up to the next line end. */
  dropPartialLine(): void;
  state(): NmeaReaderState | null;
  setState(state: NmeaReaderState, detail: string, level: NmeaReaderStatus['level']): void;
  stats(): NmeaReaderStats;
}

export class BaudSearch {
  /** Rates in the order they are tried: the configured one first. */
  readonly order: number[];
  private index = 0;
  /** Valid sentences in a row at the current rate; the rate is locked at BAUD_LOCK_SENTENCES. */
  private validInARow = 0;
  private locked: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The search for a rate while none is locked: its backoff and what it has seen (see arm, next). */
  private readonly probe = {
    /** How long the current rate gets; baudProbeMs in the first sweep, doubling per sweep up to baudProbeMaxMs. */
    dwellMs: 0,
    /** Full sweeps through every rate that found nothing, since the search (re)started. */
    sweeps: 0,
    /** Rates given their dwell in the current sweep. */
    triedInSweep: 0,
    /** Bytes read during the current dwell, and dwells in a row that read none: a silent line. */
    bytesThisDwell: 0,
    quietDwells: 0,
    /** Date.now() when the receiver was last heard talking sense (or the port opened). */
    outageSince: 0,
    /** Bytes read and lines thrown away since then, for the summary. */
    bytes: 0,
    garbageLines: 0,
    /** The outage's length at the last 'gps.baud.none' warning; 0 before the first. */
    warnedAtMs: 0,
  };

  constructor(
    private readonly o: BaudSearchOptions,
    private readonly host: BaudSearchHost,
  ) {
    this.order = [o.baudRate, ...NMEA_BAUD_RATES.filter((b) => b !== o.baudRate)];
  }

  /** The rate the port is set to now. */
  get current(): number {
    return this.order[this.index] ?? this.o.baudRate;
  }

  /** The rate at which valid sentences were found, or null while none has been (yet). */
  get detected(): number | null {
    return this.locked;
  }

  /** The port (re)opened: a port may have another receiver behind it, so search afresh unless a rate is locked. */
  portOpened(): void {
    this.validInARow = 0;
    if (this.o.autoBaud && this.locked === null) this.start(Date.now());
  }

  /** Bytes arrived. */
  sawBytes(n: number): void {
    const p = this.probe;
    // A line that was silent for a whole dwell and now carries bytes: the
    // receiver has just started (powered up, wire reconnected), at a rate the
    // grown dwell would take minutes to reach. Search at the first sweep's
    // pace again, from the current rate.
    if (p.quietDwells > 0 && this.timer && this.locked === null) {
      p.quietDwells = 0;
      if (p.dwellMs > this.o.baudProbeMs) {
        this.o.log?.debug(
          { event: 'gps.baud.activity', path: this.o.path, baudRate: this.current, silentDwellMs: p.dwellMs, dwellMs: this.o.baudProbeMs },
          `bytes on a line silent for ${fmtSeconds(p.dwellMs)}: trying each rate for ${fmtSeconds(this.o.baudProbeMs)} again`,
        );
        this.resetBackoff();
      }
    }
    p.bytes += n;
    p.bytesThisDwell += n;
  }

  /** A line was thrown away (overlong, not NMEA): counted for the summary. */
  sawGarbage(): void {
    this.probe.garbageLines++;
  }

  /** A line that did not parse: the run of valid sentences starts over. */
  sawInvalid(): void {
    this.validInARow = 0;
    this.probe.garbageLines++;
  }

  /** A checksummed sentence: enough of them in a row lock the current rate. */
  sawSentence(): void {
    if (++this.validInARow >= BAUD_LOCK_SENTENCES && this.locked !== this.current) this.lock();
  }

  /** The receiver went silent: it may have been reconfigured to another rate, so look again (a search under way goes on with its backoff). */
  noData(silentMs: number): void {
    if (this.o.autoBaud && this.locked !== null) {
      this.locked = null;
      this.start(Date.now() - silentMs);
    }
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /**
   * Begin the search for a rate: the first sweep tries each rate for
   * baudProbeMs, so a receiver at an unexpected rate is found in seconds.
   * `since` is when the receiver last talked sense, for the summary.
   */
  private start(since: number): void {
    Object.assign(this.probe, { sweeps: 0, triedInSweep: 0, bytesThisDwell: 0, quietDwells: 0, outageSince: since, bytes: 0, garbageLines: 0, warnedAtMs: 0 });
    this.resetBackoff();
  }

  private resetBackoff(): void {
    this.probe.sweeps = 0;
    this.probe.triedInSweep = 0;
    this.probe.dwellMs = this.o.baudProbeMs;
    this.arm();
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.probe.bytesThisDwell = 0;
    this.timer = setTimeout(() => this.next(), this.probe.dwellMs);
  }

  /** No proof at this rate within its dwell: switch the open port to the next candidate. */
  private next(): void {
    this.timer = null;
    const port = this.host.port();
    if (this.host.closed() || !port?.isOpen || this.locked !== null) return;
    const p = this.probe;
    p.quietDwells = p.bytesThisDwell === 0 ? p.quietDwells + 1 : 0;
    const from = this.current;
    const fromDwellMs = p.dwellMs;
    this.index = (this.index + 1) % this.order.length;
    const to = this.current;
    if (++p.triedInSweep >= this.order.length) {
      // Every rate had its turn and none talked NMEA: slow down, and say so once per sweep.
      p.sweeps++;
      p.triedInSweep = 0;
      p.dwellMs = Math.min(this.o.baudProbeMaxMs, this.o.baudProbeMs * 2 ** Math.min(p.sweeps, 30));
      this.summariseSweep();
    }
    this.validInARow = 0;
    this.host.dropPartialLine(); // whatever is buffered was read at the old rate
    const path = this.o.path;
    this.o.log?.debug(
      { event: 'gps.baud.trying', path, from, to, dwellMs: p.dwellMs, sweep: p.sweeps + 1, stats: this.host.stats() },
      `no valid NMEA at ${from} baud in ${fmtSeconds(fromDwellMs)}, trying ${to} for ${fmtSeconds(p.dwellMs)}`,
    );
    // After 'no-data' the state stays there: flipping to 'probing' would read
    // like a recovery in the log while the receiver is as silent as before.
    if (this.host.state() !== 'no-data') {
      // info: a receiver at another rate than configured is found this way; a silent one gets 'no-data' (warn).
      this.host.setState('probing', `GPS port ${path}: no valid NMEA at ${from} baud; trying ${to} (of ${this.order.join(', ')})`, 'info');
    }
    port.update({ baudRate: to }, (err) => {
      if (err && port === this.host.port()) this.o.log?.warn({ event: 'gps.baud.update-failed', path, baudRate: to, err: errText(err) });
    });
    this.arm();
  }

  /**
   * The end of a sweep that found nothing. Logged at warn while the outage
   * doubles between warnings (each sweep while the dwell grows), then at
   * most every baudSummaryMaxMs; the sweeps in between at debug. A silent
   * receiver thus costs a few lines an hour, not one per rate tried.
   */
  private summariseSweep(): void {
    const p = this.probe;
    const outageMs = Math.max(0, Date.now() - p.outageSince);
    const warn = p.warnedAtMs === 0 || outageMs >= 2 * p.warnedAtMs || outageMs - p.warnedAtMs >= this.o.baudSummaryMaxMs;
    if (warn) p.warnedAtMs = Math.max(outageMs, 1);
    const rates = [...this.order].sort((a, b) => a - b);
    const rateList = `${rates.slice(0, -1).join(', ')} or ${rates.at(-1)}`;
    const check =
      p.bytes === 0
        ? "nothing at all arrives: check the receiver's power and the wire from its TX to our RX"
        : "bytes arrive but no checksummed NMEA at any rate: check that the receiver is in NMEA mode (not a binary protocol such as UBX or SiRF), and its wiring and ground";
    const msg =
      `GPS port ${this.o.path}: no NMEA at ${rateList} baud for ${fmtDuration(outageMs)} ` +
      `(${p.bytes} bytes read, ${p.garbageLines} garbage lines); still trying, each rate for ${fmtSeconds(p.dwellMs)}; ${check}`;
    const entry = { event: 'gps.baud.none', path: this.o.path, sweeps: p.sweeps, outageMs, bytes: p.bytes, garbageLines: p.garbageLines, dwellMs: p.dwellMs };
    if (warn) this.o.log?.warn(entry, msg);
    else this.o.log?.debug(entry, msg);
  }

  private lock(): void {
    const baud = this.current;
    this.stop();
    if (this.locked === baud) return;
    this.locked = baud;
    const configured = this.o.baudRate;
    const entry = { event: 'gps.baud.detected', path: this.o.path, baudRate: baud, configured };
    if (baud === configured) this.o.log?.info(entry, `GPS receiver talks at ${baud} baud`);
    else this.o.log?.warn(entry, `GPS receiver talks at ${baud} baud, not the configured ${configured}: set gps.baudRate to ${baud}`);
    this.host.setState('open', `GPS port ${this.o.path}: valid NMEA at ${baud} baud${baud === configured ? '' : ` (configured ${configured})`}`, 'info');
  }
}

/** '2.5 s', '60 s'. */
function fmtSeconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(1))} s`;
}

/** '40 s', '5 min', '2 h 10 min': an outage as a technician reads it. */
function fmtDuration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 90) return `${s} s`;
  const min = Math.round(s / 60);
  if (min < 90) return `${min} min`;
  return `${Math.floor(min / 60)} h ${min % 60} min`;
}
