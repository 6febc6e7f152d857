// The serial line to one VC0706 camera: the port (reopened when it was
// lost), the bytes received, one command and its reply at a time with a
// deadline, and one chunk of a frozen frame (READ_FBUF). Following the
// camera from rate to rate is in vc0706-setup.ts, on top of this. Nothing
// here may hang: every exchange has a deadline, the line is resynchronised
// after garbage (drainQuiet), and a port that goes away fails the waiter at
// once with 'io'. What the bytes mean is in vc0706-codec.ts; what a camera is
// asked to do, and when, is the driver's (vc0706.ts).

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { SerialPort } from 'serialport';
import { HANGUP_AWARE_BINDING } from '../serial/hangup-aware-binding.ts';
import { errText } from '../../common/errors.ts';
import { CameraError, type CameraErrorDetail, type CameraErrorKind } from './types.ts';
import { RxBuffer, PortGone, TimeoutError, bounded, sleep } from './vc0706-rx.ts';
import {
  READ_FBUF_OVERHEAD,
  VC0706_CMD,
  VC0706_REPLY,
  VC0706_STATUS_TEXT,
  type Vc0706Reply,
  commandName,
  encodeCommand,
  encodeReply,
  findReply,
  frameCmd,
  hex,
  readFbufArgs,
  wireMs,
} from './vc0706-codec.ts';

export type SerialPortOptions = ConstructorParameters<typeof SerialPort>[0];

export interface Vc0706LinkOptions {
  path: string;
  baudRate: number;
  serial: number;
  /** Reply timeout of one short command. */
  timeoutMs: number;
  /** After a failure, wait at most this long for the line to go quiet before the next command. */
  maxDrainMs: number;
  log?: Logger;
}

export class Vc0706Link {
  readonly path: string;
  readonly serial: number;
  readonly timeoutMs: number;
  private readonly maxDrainMs: number;
  readonly log: Logger | undefined;
  private baud: number;
  private port: SerialPort | null = null;
  private readonly rx = new RxBuffer();
  /** The last exchange failed: bytes of it may still be on the way. */
  dirty = false;
  /** The last drain gave up with the camera still sending. */
  private busyLine = false;
  /** The port was lost since it was last opened: the camera may have rebooted. */
  private lost = false;

  constructor(o: Vc0706LinkOptions) {
    this.path = o.path;
    this.baud = o.baudRate;
    this.serial = o.serial;
    this.timeoutMs = o.timeoutMs;
    this.maxDrainMs = o.maxDrainMs;
    this.log = o.log;
  }

  /** The rate the port (and, as far as we know, the camera) is set to. */
  get baudRate(): number {
    return this.baud;
  }

  get isOpen(): boolean {
    return this.port?.isOpen === true;
  }

  // ─────────────── the port ───────────────

  /** Open the port unless it is open. Resolves true when it had been lost: the camera may have lost power with it. */
  async ensureOpen(what: string): Promise<boolean> {
    if (this.port?.isOpen) return false;
    await this.open(what);
    const wasLost = this.lost;
    this.lost = false;
    return wasLost;
  }

  async open(what = 'open'): Promise<void> {
    let port: SerialPort;
    try {
      port = new SerialPort({ path: this.path, baudRate: this.baud, autoOpen: false, binding: HANGUP_AWARE_BINDING } as SerialPortOptions);
    } catch (err) {
      throw this.error('io', what, `cannot create the port (${errText(err)}); check the camera port in the config`, { cause: err });
    }
    port.on('data', (data: Buffer) => {
      if (port === this.port) this.rx.push(data);
    });
    port.on('error', (err) => {
      if (port === this.port) this.log?.warn({ event: 'camera.port.error', path: this.path, err: errText(err) });
    });
    port.on('close', (err: Error | null) => {
      if (port !== this.port) return;
      this.port = null;
      this.lost = true;
      const why = err ? errText(err) : 'closed';
      this.log?.warn({ event: 'camera.port.lost', path: this.path, why });
      this.rx.fail(`the port went away (${why}); check that the camera is plugged in`);
    });
    this.rx.reset();
    this.port = port;
    try {
      await bounded(new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve()))), this.timeoutMs);
    } catch (err) {
      this.port = null;
      if (port.isOpen) port.close(() => {});
      throw this.error('io', what, `cannot open the port (${errText(err)}); check that the camera is plugged in, the path in the config and the permissions (group dialout)`, {
        cause: err,
      });
    }
    this.log?.info({ event: 'camera.port.open', path: this.path, baudRate: this.baud });
  }

  /** Close the port; a waiter fails with 'io' and `reason`. */
  async close(reason: string): Promise<void> {
    const port = this.port;
    this.port = null;
    this.rx.fail(reason);
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    this.log?.info({ event: 'camera.port.closed', path: this.path });
  }

  private requirePort(name: string): SerialPort {
    const port = this.port;
    if (!port?.isOpen) throw this.error('io', name, 'the port is not open; check that the camera is plugged in');
    return port;
  }

  /** Set the port (not the camera) to another rate. */
  async setPortBaud(baudRate: number): Promise<void> {
    const port = this.requirePort('SET_PORT');
    await bounded(
      new Promise<void>((resolve, reject) => port.update({ baudRate }, (err) => (err ? reject(err) : resolve()))),
      this.timeoutMs,
    ).catch((err: unknown) => {
      throw this.error('io', 'SET_PORT', `cannot set the port to ${baudRate} baud (${errText(err)}); check that the serial adapter supports it`, { cause: err });
    });
    this.baud = baudRate;
    this.rx.clear();
  }

  // ─────────────── exchanges ───────────────

  /** Send one command and wait for its reply; returns the reply's data. */
  async exchange(cmd: number, args: readonly number[], dataLength?: number): Promise<Buffer> {
    const name = commandName(cmd);
    const frame = encodeCommand(this.serial, cmd, args);
    this.rx.clear(); // nothing is outstanding: whatever is here is stale
    const deadline = performance.now() + this.timeoutMs;
    await this.write(frame, name, deadline);
    const reply = await this.wait(name, frame, (buf) => {
      const r = findReply(buf, this.serial, cmd);
      return r === null || r === 'partial' ? undefined : r;
    }, deadline);
    if (!reply) {
      this.dirty = true;
      throw this.noReply(name, frame, this.rx.bytes, this.timeoutMs);
    }
    this.rx.consume(reply.end);
    if (reply.start > 0) this.log?.debug({ event: 'camera.reply.skipped', path: this.path, command: name, bytes: reply.start });
    if (reply.status !== 0) {
      this.dirty = true;
      throw this.statusError(name, frame, reply);
    }
    if (dataLength !== undefined && reply.data.length !== dataLength) {
      this.dirty = true;
      throw this.error('garbled', name, `reply carries ${reply.data.length} data bytes, expected ${dataLength}; check that this is a VC0706 camera`, {
        sent: frame,
        received: reply.data,
      });
    }
    return reply.data;
  }

  /** One READ_FBUF: `n` bytes of the frozen frame from `addr`, between its header and footer. */
  async readChunk(addr: number, n: number, delay: number, timeoutMs: number, deadline: number, length: number): Promise<Buffer> {
    const cmd = VC0706_CMD.READ_FBUF;
    const frame = encodeCommand(this.serial, cmd, readFbufArgs(addr, n, delay));
    const where = `chunk ${addr}..${addr + n} of ${length}`;
    this.rx.clear();
    const sentAt = performance.now();
    const until = Math.min(sentAt + timeoutMs, deadline);
    await this.write(frame, 'READ_FBUF', until);
    const seen: { header: Vc0706Reply | null } = { header: null };
    const got = await this.wait('READ_FBUF', frame, (buf) => {
      const r = findReply(buf, this.serial, cmd);
      if (r === null || r === 'partial') return undefined;
      seen.header = r;
      return buf.length >= r.end + n + 5 ? r : undefined;
    }, until);
    if (!got) {
      const rx = this.rx.bytes;
      const ms = until - sentAt;
      this.dirty = true;
      if (seen.header) {
        const have = Math.min(n, Math.max(0, rx.length - seen.header.end));
        throw this.error(
          'timeout',
          'READ_FBUF',
          `${where}: ${have} of ${n} bytes in ${Math.round(ms)} ms, where ${this.baud} baud needs ${Math.round(wireMs(n + READ_FBUF_OVERHEAD, this.baud))} ms: ` +
            `the camera stalled or sends slower than the port is set; check the baud rate, the camera's power and the wiring`,
          { sent: frame },
        );
      }
      throw this.noReply('READ_FBUF', frame, rx, ms);
    }
    if (got.status !== 0) {
      this.dirty = true;
      throw this.statusError('READ_FBUF', frame, got, where);
    }
    if (got.data.length !== 0) {
      this.dirty = true;
      throw this.error('garbled', 'READ_FBUF', `${where}: the reply header carries ${got.data.length} data bytes, expected none; check the baud rate and the wiring`, {
        sent: frame,
        received: this.rx.bytes.subarray(got.start, got.start + 24),
      });
    }
    const buf = this.rx.bytes;
    const data = Buffer.from(buf.subarray(got.end, got.end + n));
    const footer = buf.subarray(got.end + n, got.end + n + 5);
    this.rx.consume(got.end + n + 5);
    if (!footer.equals(encodeReply(this.serial, cmd, 0))) {
      this.dirty = true;
      throw this.error('garbled', 'READ_FBUF', `${where}: no reply footer after the data (got ${hex(footer)}): bytes lost or stale data on the line; check the baud rate and the wiring`, {
        sent: frame,
        received: buf.subarray(got.start, got.start + 24),
      });
    }
    return data;
  }

  /** rx.until, with a lost port turned into an 'io' error naming the command. */
  private async wait<T>(name: string, frame: Buffer | null, scan: (buf: Buffer) => T | undefined, deadline: number): Promise<T | undefined> {
    try {
      return await this.rx.until(scan, deadline);
    } catch (err) {
      if (err instanceof PortGone) throw this.error('io', name, err.message, frame ? { sent: frame } : {});
      throw err;
    }
  }

  private async write(frame: Buffer, name: string, deadline: number): Promise<void> {
    const port = this.requirePort(name);
    const written = new Promise<void>((resolve, reject) => port.write(frame, (err) => (err ? reject(err) : resolve())));
    try {
      await bounded(written, deadline - performance.now());
    } catch (err) {
      if (err instanceof TimeoutError) {
        this.dirty = true;
        throw this.error('timeout', name, `could not send the command within ${this.timeoutMs} ms: output stuck; check the adapter and flow control`, { sent: frame });
      }
      throw this.error('io', name, `write failed (${errText(err)}); check that the camera is plugged in`, { sent: frame, cause: err });
    }
  }

  /** Wait until the camera has stopped sending (bounded by maxDrainMs), then discard what came. */
  async drainQuiet(): Promise<void> {
    const quietMs = Math.max(20, wireMs(16, this.baud));
    const end = performance.now() + this.maxDrainMs;
    for (;;) {
      const now = performance.now();
      const since = now - this.rx.lastByteAt;
      if (since >= quietMs) {
        this.busyLine = false;
        break;
      }
      if (now >= end) {
        this.busyLine = true;
        this.log?.warn({ event: 'camera.line.busy', path: this.path, drainMs: this.maxDrainMs }, 'the camera is still sending an earlier answer');
        break;
      }
      await sleep(Math.min(quietMs - since, end - now));
    }
    this.rx.clear();
    const port = this.port;
    if (port?.isOpen) await bounded(new Promise<void>((resolve) => port.flush(() => resolve())), 200).catch(() => {});
    this.dirty = false;
  }

  /** Does the camera answer GEN_VERSION at the port's current rate? */
  async answers(): Promise<boolean> {
    try {
      await this.drainQuiet();
      await this.exchange(VC0706_CMD.GEN_VERSION, []);
      return true;
    } catch (err) {
      if (err instanceof CameraError && err.kind === 'io') throw err;
      return false;
    }
  }

  /**
   * Wait until `text` shows among the bytes received (a boot message), at
   * most until `deadline`; then let the rest of its line come and discard it.
   * Resolves what was seen when it did not show.
   */
  async waitForText(name: string, text: string, deadline: number): Promise<{ found: boolean; seen: Buffer }> {
    const at = await this.wait(name, null, (buf) => {
      const i = buf.indexOf(text, 0, 'latin1');
      return i === -1 ? undefined : i;
    }, deadline);
    if (at === undefined) return { found: false, seen: this.rx.bytes };
    await sleep(20); // the rest of the line ("\r\n")
    this.rx.clear();
    return { found: true, seen: Buffer.alloc(0) };
  }

  // ─────────────── errors ───────────────

  private noReply(name: string, frame: Buffer, seen: Buffer, timeoutMs: number): CameraError {
    const ms = Math.round(timeoutMs);
    if (seen.length === 0) {
      return this.error('timeout', name, `no reply in ${ms} ms; check the camera's power, its TX wire, and that it talks at ${this.baud} baud`, { sent: frame });
    }
    if (this.busyLine) {
      // The line never went quiet before this command: these are the tail of an earlier answer.
      return this.error(
        'timeout',
        name,
        `no reply in ${ms} ms, only ${seen.length} bytes of an earlier answer the camera was still sending (a slow or stalled camera); check the baud rate (${this.baud}) and the camera's power`,
        { sent: frame, received: seen },
      );
    }
    if (seen.indexOf(Buffer.from([VC0706_REPLY, this.serial, frameCmd(frame)])) !== -1) {
      return this.error('timeout', name, `reply incomplete after ${ms} ms (${seen.length} bytes); check the baud rate (${this.baud}) and the wiring`, {
        sent: frame,
        received: seen,
      });
    }
    return this.error(
      'garbled',
      name,
      `${seen.length} bytes in ${ms} ms but no reply among them; check the baud rate (port at ${this.baud}), the camera's serial number (${this.serial}) and noise on the line`,
      { sent: frame, received: seen },
    );
  }

  private statusError(name: string, frame: Buffer, reply: Vc0706Reply, where?: string): CameraError {
    const text = VC0706_STATUS_TEXT[reply.status] ?? 'unknown status';
    return this.error(
      'garbled',
      name,
      `${where ? `${where}: ` : ''}camera answered status ${reply.status} (${text}); the command may have been corrupted on the line: check the wiring and baud rate`,
      { sent: frame, received: encodeReply(this.serial, frameCmd(frame), reply.status, reply.data), status: reply.status },
    );
  }

  /** A CameraError naming the port and the command, with the bytes sent and received. */
  error(kind: CameraErrorKind, command: string, what: string, extra: { sent?: Buffer; received?: Buffer; status?: number; cause?: unknown } = {}): CameraError {
    const detail: CameraErrorDetail = { path: this.path, command };
    if (extra.sent) detail.sent = hex(extra.sent);
    if (extra.received) detail.received = hex(extra.received.subarray(0, 32)) + (extra.received.length > 32 ? ` …(${extra.received.length} bytes)` : '');
    if (extra.status !== undefined) detail.status = extra.status;
    const sent = detail.sent ? ` [sent ${detail.sent}]` : '';
    const got = detail.received ? ` [got ${detail.received}]` : '';
    return new CameraError(kind, `camera ${this.path}: ${command}: ${what}${sent}${got}`, detail, extra.cause === undefined ? undefined : { cause: extra.cause });
  }
}
