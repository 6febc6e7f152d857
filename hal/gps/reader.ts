// NMEA reader over a serial port: lines → sentences → fixes, and a port that
// reopens by itself; the search for the receiver's baud rate is in
// baud-search.ts. Everything here is asynchronous and catches its own
// errors, so a receiver that is unplugged, babbles binary or goes silent can
// never throw into the event loop the alarm path shares.

import { EventEmitter } from 'node:events';
import { ReadlineParser, SerialPort } from 'serialport';
import { HANGUP_AWARE_BINDING } from '../serial/hangup-aware-binding.ts';
import type { Logger } from 'pino';
import type { GpsFix } from './types.ts';
import { FixAssembler } from './fix-assembler.ts';
import { parseSentence } from './nmea.ts';
import { BaudSearch } from './baud-search.ts';
import { Backoff } from '../../common/backoff.ts';
import { errText } from '../../common/errors.ts';

export interface NmeaReaderOptions {
  /** Serial device, e.g. /dev/ttyS1 or /dev/serial/by-id/... */
  path: string;
  baudRate: number;
  log?: Logger;
  /** Report 'no-data' after this long without a valid sentence while open. Default 5000. */
  noDataTimeoutMs?: number;
  /** First reopen delay after the port failed or closed. Default 500. */
  reopenMinMs?: number;
  /** Reopen delay ceiling. Default 10000. */
  reopenMaxMs?: number;
  /** Longer lines are skipped and counted. Default 200 (NMEA 0183 allows 82; u-blox PUBX and high-precision GGA run longer). */
  maxLineLength?: number;
  /**
   * Try the other NMEA baud rates when no valid sentence arrives at the
   * current one. Default true. The configured rate is tried first.
   */
  autoBaud?: boolean;
  /**
   * How long one baud rate gets to produce valid sentences before the next is
   * tried, in the first sweep through the rates. Default 2500 ms: a receiver
   * at another rate than configured is found within seconds.
   */
  baudProbeMs?: number;
  /**
   * Ceiling of that dwell: it doubles after each full sweep that found
   * nothing, up to this, so a silent or garbled receiver is not probed (and
   * logged) every 2.5 s forever. Default 60000 ms.
   */
  baudProbeMaxMs?: number;
  /**
   * While the receiver stays silent or garbled, a 'gps.baud.none' warning is
   * logged at the end of a sweep when the outage has doubled since the last
   * one, or this long has passed. Default 900000 ms (15 min).
   */
  baudSummaryMaxMs?: number;
  /**
   * The serialport binding. Default: the hang-up-aware native one
   * (hal/serial). Tests where a pseudo-terminal adds nothing pass
   * serialport's mock binding (@serialport/binding-mock).
   */
  binding?: unknown;
}

export { NMEA_BAUD_RATES } from './baud-search.ts';

export interface NmeaReaderStats {
  /** Lines that parsed as NMEA sentences (any type). */
  sentencesOk: number;
  /** Lines with a missing or wrong *hh checksum. */
  checksumErrors: number;
  /** Lines that were not NMEA (no '$', binary bytes) or had malformed RMC/GGA fields. */
  otherErrors: number;
  /** Lines longer than maxLineLength, and runs of bytes that never reached a newline. */
  overlongLines: number;
  /** Fixes emitted (valid or not). */
  fixes: number;
  /** Successful port opens, the first one included. */
  opens: number;
}

export type NmeaReaderState = 'open' | 'closed' | 'no-data' | 'probing';

export interface NmeaReaderStatus {
  state: NmeaReaderState;
  /**
   * The log level the status deserves: 'warn' when the receiver is gone or
   * silent ('closed' because the port was lost or cannot be opened,
   * 'no-data'); 'info' for 'open' (also a recovery), 'probing', and 'closed'
   * by close().
   */
  level: 'info' | 'warn';
  /** One sentence a technician can act on. */
  detail: string;
}

export type NmeaReaderEvents = {
  fix: [GpsFix];
  status: [NmeaReaderStatus];
};

export class NmeaReader extends EventEmitter<NmeaReaderEvents> {
  readonly path: string;
  /** The configured baud rate, tried first. */
  readonly baudRate: number;
  private readonly log: Logger | undefined;
  private readonly noDataTimeoutMs: number;
  private readonly reopenMinMs: number;
  private readonly reopenMaxMs: number;
  private readonly maxLineLength: number;
  private readonly autoBaud: boolean;
  private readonly baud: BaudSearch;

  private readonly assembler = new FixAssembler();
  private readonly counts: NmeaReaderStats = {
    sentencesOk: 0,
    checksumErrors: 0,
    otherErrors: 0,
    overlongLines: 0,
    fixes: 0,
    opens: 0,
  };
  private port: SerialPort | null = null;
  private pendingOpen: Promise<void> | null = null;
  private reopenTimer: NodeJS.Timeout | null = null;
  private noDataTimer: NodeJS.Timeout | null = null;
  private failedAttempts = 0;
  private readonly reopenBackoff: Backoff;
  private state: NmeaReaderState | null = null;
  private started = false;
  private stopped = false;
  /** Set after a newline-less run was cut: the bytes up to the next '\n' are its tail, not a line. */
  private skipTail = false;
  private lastFix: GpsFix | null = null;
  private lastValidFix: GpsFix | null = null;
  private readonly binding: unknown;

  constructor(opts: NmeaReaderOptions) {
    super();
    if (!opts.path) throw new Error(`NmeaReader: empty serial port path; set the GPS serial port in the config (e.g. /dev/ttyS1)`);
    if (!Number.isInteger(opts.baudRate) || opts.baudRate <= 0) {
      throw new Error(`NmeaReader ${opts.path}: baud rate ${String(opts.baudRate)} is not a positive integer; NMEA receivers use 4800, 9600 or 115200`);
    }
    this.path = opts.path;
    this.baudRate = opts.baudRate;
    this.log = opts.log;
    this.binding = opts.binding ?? HANGUP_AWARE_BINDING;
    this.noDataTimeoutMs = opts.noDataTimeoutMs ?? 5000;
    this.reopenMinMs = opts.reopenMinMs ?? 500;
    this.reopenMaxMs = Math.max(opts.reopenMaxMs ?? 10_000, this.reopenMinMs);
    this.reopenBackoff = new Backoff(this.reopenMinMs, this.reopenMaxMs);
    this.maxLineLength = opts.maxLineLength ?? 200;
    this.autoBaud = opts.autoBaud ?? true;
    const baudProbeMs = opts.baudProbeMs ?? 2500;
    this.baud = new BaudSearch(
      {
        path: opts.path,
        baudRate: opts.baudRate,
        autoBaud: this.autoBaud,
        baudProbeMs,
        baudProbeMaxMs: Math.max(opts.baudProbeMaxMs ?? 60_000, baudProbeMs),
        baudSummaryMaxMs: opts.baudSummaryMaxMs ?? 15 * 60_000,
        log: opts.log,
      },
      {
        port: () => this.port,
        closed: () => this.stopped,
        dropPartialLine: () => {
          this.skipTail = true;
        },
        state: () => this.state,
        setState: (state, detail, level) => this.setState(state, detail, level),
        stats: () => this.stats(),
      },
    );
  }

  /** The rate the port is set to now. */
  get currentBaud(): number {
    return this.baud.current;
  }

  /** The rate at which valid sentences were found, or null while none has been (yet). */
  get detectedBaud(): number | null {
    return this.baud.detected;
  }

  /** Open the port (and keep reopening it) until close(). Calling it twice does nothing. */
  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.openPort();
  }

  /**
   * The most recent valid fix; before the first valid fix, the most recent
   * invalid one with a position (flagged valid=false). An invalid fix never
   * hides an older valid one: in a tunnel the last real position and its age
   * say more than a receiver's stale guess.
   */
  latest(): GpsFix | null {
    return this.lastValidFix ?? this.lastFix;
  }

  /** The last state reported ('status' event); null before the port was first tried. */
  get readerState(): NmeaReaderState | null {
    return this.state;
  }

  stats(): NmeaReaderStats {
    return { ...this.counts };
  }

  /** Stop reopening, close the port, and wait until it is closed. */
  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.clearTimers();
    await this.pendingOpen;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) {
      await new Promise<void>((resolve) => port.close(() => resolve()));
    }
    this.log?.info({ event: 'gps.port.closed', path: this.path, reason: 'close() called' });
    this.setState('closed', `GPS port ${this.path}: closed by the agent`, 'info');
  }

  private openPort(): void {
    if (this.stopped) return;
    let port: SerialPort;
    try {
      port = new SerialPort({ path: this.path, baudRate: this.currentBaud, autoOpen: false, binding: this.binding } as SerialPortOptions);
    } catch (err) {
      this.portFailed(`cannot create port (${errText(err)})`);
      return;
    }
    // Latin-1 keeps one char per byte, so binary garbage stays countable and
    // the length limit means bytes, not UTF-8 sequences.
    const parser = new ReadlineParser({ delimiter: '\n', encoding: 'latin1' });
    this.port = port;
    this.skipTail = false;

    // Handlers check `port === this.port`: an old port may still emit (a
    // destroyed stream emits 'close' twice) after it has been replaced.
    port.on('error', (err) => {
      if (port !== this.port) return;
      this.log?.warn({ event: 'gps.port.error', path: this.path, err: errText(err) });
      if (!port.isOpen && !port.opening) this.portLost(port, `port error (${errText(err)})`);
    });
    port.on('close', (err: Error | null) => {
      if (port !== this.port || this.stopped) return;
      this.portLost(port, err ? `port closed (${errText(err)})` : 'port closed');
    });
    port.pipe(parser);
    // ReadlineParser buffers without limit until it sees '\n'; a receiver at
    // the wrong baud rate may never send one. Cut such a run and skip its tail.
    port.on('data', (chunk: Buffer) => {
      if (port === this.port) this.baud.sawBytes(chunk.length);
      if (parser.buffer.length > this.maxLineLength) {
        parser.buffer = Buffer.alloc(0);
        if (!this.skipTail) {
          this.counts.overlongLines++; // one run, however long, counts once
          this.baud.sawGarbage();
        }
        this.skipTail = true;
      }
    });
    parser.on('data', (line: string) => {
      if (port === this.port) this.onLine(line);
    });

    this.pendingOpen = new Promise<void>((resolve) => {
      port.open((err) => {
        this.pendingOpen = null;
        resolve();
        if (port !== this.port) return;
        if (err) {
          this.port = null;
          this.portFailed(`cannot open (${errText(err)})`);
        } else if (!this.stopped) {
          this.portOpened();
        } // else close() is waiting on pendingOpen and closes this port itself
      });
    });
  }

  private portOpened(): void {
    this.counts.opens++;
    this.log?.info({ event: 'gps.port.open', path: this.path, baudRate: this.currentBaud, opens: this.counts.opens });
    this.setState('open', `GPS port ${this.path}: open at ${this.currentBaud} baud`, 'info');
    this.noDataTimer = setTimeout(() => this.onNoData(), this.noDataTimeoutMs);
    this.baud.portOpened();
  }

  private portLost(port: SerialPort, why: string): void {
    if (port !== this.port) return;
    this.port = null;
    this.clearTimers();
    // A cycle cut by the disconnect is still a real fix; the next port starts clean.
    const fix = this.assembler.flush();
    if (fix) this.onFix(fix);
    this.portFailed(why);
  }

  private portFailed(why: string): void {
    if (this.stopped) return;
    const delayMs = this.nextDelayMs();
    this.failedAttempts++;
    const detail =
      `GPS port ${this.path}: ${why}; retrying in ${(delayMs / 1000).toFixed(1)} s; ` +
      `check that the receiver is plugged in and the path in the config`;
    const entry = { event: 'gps.port.retry', path: this.path, why, attempt: this.failedAttempts, delayMs: Math.round(delayMs) };
    if (this.state === 'closed') this.log?.debug(entry);
    else this.log?.warn(entry);
    // A lost or missing receiver: the alarm goes out without a fresh fix.
    this.setState('closed', detail, 'warn');
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = null;
      this.openPort();
    }, delayMs);
  }

  /** Exponential backoff; jitter keeps us out of lockstep with a receiver that reboots on a fixed period. */
  private nextDelayMs(): number {
    return this.reopenBackoff.next();
  }

  private onLine(raw: string): void {
    if (this.skipTail) {
      this.skipTail = false;
      return;
    }
    if (raw.length > this.maxLineLength) {
      this.counts.overlongLines++;
      this.baud.sawGarbage();
      return;
    }
    // Some receivers pad with blank lines or send a lone CR between bursts.
    if (raw === '' || raw === '\r') return;
    const r = parseSentence(raw);
    if ('error' in r) {
      this.baud.sawInvalid();
      if (r.kind === 'checksum') this.counts.checksumErrors++;
      else this.counts.otherErrors++;
      this.log?.debug({ event: 'gps.nmea.rejected', path: this.path, kind: r.kind, error: r.error });
      return;
    }
    this.counts.sentencesOk++;
    this.baud.sawSentence();
    this.sawSentence();
    for (const fix of this.assembler.push(r)) this.onFix(fix);
  }

  private sawSentence(): void {
    // Only a receiver that talks sense proves the port works: a port that
    // opens and fails again at once keeps backing off.
    this.failedAttempts = 0;
    this.reopenBackoff.reset();
    this.noDataTimer?.refresh();
    if (this.state === 'no-data') {
      this.log?.info({ event: 'gps.data.resumed', path: this.path });
      this.setState('open', `GPS port ${this.path}: NMEA sentences again`, 'info');
    }
  }

  private onNoData(): void {
    if (this.stopped || !this.port) return;
    const fix = this.assembler.flush();
    if (fix) this.onFix(fix);
    const detail =
      `GPS port ${this.path}: no NMEA sentence in ${this.noDataTimeoutMs / 1000} s; ` +
      (this.autoBaud
        ? `trying ${this.baud.order.join(', ')} baud in turn (gps.baud.none says how that goes); check the receiver's power and its TX wire`
        : `check baud rate (set to ${this.currentBaud}), the receiver's power and its TX wire`);
    this.log?.warn({ event: 'gps.data.none', path: this.path, baudRate: this.currentBaud, timeoutMs: this.noDataTimeoutMs, stats: this.stats() });
    this.setState('no-data', detail, 'warn');
    // The receiver may have been reconfigured to another rate: look again,
    // from the first sweep's pace. A search already under way (no rate was
    // ever locked) goes on with its backoff.
    this.baud.noData(this.noDataTimeoutMs);
  }

  private onFix(fix: GpsFix): void {
    this.counts.fixes++;
    this.lastFix = fix;
    if (fix.valid) this.lastValidFix = fix;
    this.safeEmit('fix', fix);
  }

  private setState(state: NmeaReaderState, detail: string, level: NmeaReaderStatus['level']): void {
    if (state === this.state) return;
    this.state = state;
    this.safeEmit('status', { state, level, detail });
  }

  // A throwing listener is a bug elsewhere; it must not end up in the serial
  // stream's event handler and crash the process.
  private safeEmit<K extends keyof NmeaReaderEvents>(event: K, ...args: NmeaReaderEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: NmeaReaderEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log?.error({ event: 'gps.listener.threw', path: this.path, listenerOf: event, err: errText(err) });
    }
  }

  private clearTimers(): void {
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    if (this.noDataTimer) clearTimeout(this.noDataTimer);
    this.baud.stop();
    this.reopenTimer = null;
    this.noDataTimer = null;
  }
}

type SerialPortOptions = ConstructorParameters<typeof SerialPort>[0];
