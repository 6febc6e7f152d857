// VC0706 serial JPEG camera (Adafruit's TTL serial camera, LinkSprite LS-Y201,
// the SC03MPD modules): freeze a frame, read its length, read the JPEG in
// chunks, resume. A snapshot is taken on every alarm, so nothing here may
// hang: every exchange has a deadline (vc0706-transport.ts), and a frame
// frozen by a failed snapshot is resumed before the next one (a camera left
// frozen serves the same old picture for every later alarm).
//
// The camera is looked for at every rate it knows (connect(), find()): a
// module may be left at any of them by SET_PORT, another tool or its EEPROM.
// After an exchange that got no valid answer, the next command first asks
// again at the current rate and, failing that, at every other: a camera that
// lost power behind a live serial port (its own supply, a brown-out) is back
// at its power-on rate, has forgotten SET_PORT and any frozen frame, and is
// found and set up again without reopening anything. A healthy camera costs
// no extra round trip.
//
// The bytes are in vc0706-codec.ts, the serial line in vc0706-transport.ts,
// the rate search and the image size register in vc0706-setup.ts, the
// chunked frame read in vc0706-frame.ts; this file is what the camera is
// asked to do, and when.

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { errText } from '../../common/errors.ts';
import type { Vc0706CameraConfig } from './config.ts';
import { type Camera, CameraError, type CameraReady } from './types.ts';
import { type SnapshotOptions, type SnapshotStats, readFrame, readFrameDimensions } from './vc0706-frame.ts';
import { checkFrameSize, findCamera, readImageSize, resetCamera, switchBaud, writeImageSize } from './vc0706-setup.ts';
import { Vc0706Link } from './vc0706-transport.ts';
import { BAUD_DIVISORS, FBUF_CTRL, IMAGE_SIZE_CODES, IMAGE_SIZES, type ImageSize, VC0706_BAUD_RATES, VC0706_CMD, VC0706_POWER_ON_BAUD, checkBaud } from './vc0706-codec.ts';

export type { SnapshotOptions, SnapshotStats };

export interface Vc0706Options {
  /** Serial device, e.g. /dev/ttyUSB1 or /dev/serial/by-id/... */
  path: string;
  /** The rate the camera talks at now. Default 38400, the VC0706's power-on rate. */
  baudRate?: number;
  /** The camera's serial number (second byte of every frame). Default 0. */
  serial?: number;
  /** Reply timeout of one short command. Default 1000 ms. */
  timeoutMs?: number;
  /** The rate the camera comes back at after a reset or power cycle. Default 38400. */
  bootBaudRate?: number;
  /**
   * The rate to talk at once the camera is found: connect() switches to it,
   * and so does the recovery after the camera rebooted behind the port.
   * Default: baudRate. setBaudRate() and reset() change it.
   */
  transferBaudRate?: number;
  /**
   * The image size connect() sets (with the reset the part needs) and the
   * recovery checks again. Default: whatever the camera has. setImageSize() changes it.
   */
  imageSize?: ImageSize;
  /** How long a reset may take until "Init end". Default 3000 ms. */
  resetTimeoutMs?: number;
  /** After a failure, wait at most this long for the line to go quiet before the next command. Default 500 ms. */
  maxDrainMs?: number;
  log?: Logger;
}

export interface Vc0706Ready extends CameraReady {
  version: string;
  /** The rate it answered at. */
  foundAt: number;
  /** The rate it talks at now. */
  baudRate: number;
  imageSize: ImageSize | null;
}

export class Vc0706Camera implements Camera {
  readonly driver = 'vc0706';
  readonly path: string;
  readonly serial: number;
  readonly description: string;
  private readonly link: Vc0706Link;
  private readonly bootBaud: number;
  /** The rate the camera is meant to talk at; restored after it rebooted behind our back. */
  private target: number;
  /** The image size it is meant to have; checked again after it rebooted. */
  private wantSize: ImageSize | null;
  private readonly resetTimeoutMs: number;
  private readonly log: Logger | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** A freeze was sent and no resume acknowledged since. */
  private frozen = false;
  /**
   * The last command got no valid answer (timeout, garbage) or the port was
   * lost: the camera may have rebooted at another rate. The next command looks
   * for it first.
   */
  private suspect = false;
  private last: SnapshotStats | null = null;

  private constructor(opts: Vc0706Options) {
    if (!opts.path) throw new Error('Vc0706Camera: empty serial port path; set the camera port in the config (e.g. /dev/ttyUSB1)');
    this.path = opts.path;
    this.description = `VC0706 on ${opts.path}`;
    const baud = checkBaud(opts.path, opts.baudRate ?? VC0706_POWER_ON_BAUD, 'baudRate');
    this.bootBaud = checkBaud(opts.path, opts.bootBaudRate ?? VC0706_POWER_ON_BAUD, 'bootBaudRate');
    this.target = checkBaud(opts.path, opts.transferBaudRate ?? baud, 'transferBaudRate');
    if (opts.imageSize !== undefined && !(opts.imageSize in IMAGE_SIZE_CODES)) {
      throw new RangeError(`camera ${opts.path}: image size ${String(opts.imageSize)} is not one of ${IMAGE_SIZES.join(', ')}`);
    }
    this.wantSize = opts.imageSize ?? null;
    this.serial = opts.serial ?? 0;
    if (!Number.isInteger(this.serial) || this.serial < 0 || this.serial > 255) {
      throw new Error(`camera ${opts.path}: serial number ${String(opts.serial)} is not 0..255; it is 0 unless someone changed it`);
    }
    this.resetTimeoutMs = opts.resetTimeoutMs ?? 3000;
    this.log = opts.log;
    this.link = new Vc0706Link({ path: opts.path, baudRate: baud, serial: this.serial, timeoutMs: opts.timeoutMs ?? 1000, maxDrainMs: opts.maxDrainMs ?? 500, log: opts.log });
  }

  /** Open the port. Throws CameraError 'io' when it cannot be opened; does not talk to the camera yet. */
  static async open(opts: Vc0706Options): Promise<Vc0706Camera> {
    const cam = new Vc0706Camera(opts);
    await cam.link.open();
    return cam;
  }

  /**
   * The camera as the agent config describes it (drivers.ts). The port opens
   * at the power-on rate, where connect() looks first; then at the transfer
   * rate (the camera keeps a SET_PORT rate until it loses power: after an
   * agent restart it still talks there), then at every other rate.
   */
  static fromConfig(cfg: Vc0706CameraConfig, log?: Logger): Promise<Vc0706Camera> {
    return Vc0706Camera.open({
      path: cfg.port,
      baudRate: cfg.baudRate,
      bootBaudRate: cfg.baudRate,
      transferBaudRate: cfg.transferBaudRate,
      imageSize: cfg.imageSize,
      serial: cfg.serial,
      timeoutMs: cfg.timeoutMs,
      log,
    });
  }

  /** The rate the port (and, as far as we know, the camera) is set to. */
  get baudRate(): number {
    return this.link.baudRate;
  }

  /** Figures of the last successful snapshot. */
  get lastSnapshot(): SnapshotStats | null {
    return this.last;
  }

  /** The camera's version string, e.g. "VC0703 1.00". */
  version(): Promise<string> {
    return this.run('GEN_VERSION', async () => (await this.link.exchange(VC0706_CMD.GEN_VERSION, [])).toString('latin1').trim());
  }

  /** The health check: the version answer (after looking for the camera at every rate if it went quiet). */
  async check(): Promise<string> {
    return `answers: ${await this.version()}`;
  }

  /**
   * Look for the camera at every VC0706 rate: the port's current rate first,
   * then the power-on rate, the transfer rate, and the rest. The port is left
   * at the rate it answered at. Throws a CameraError naming every rate tried
   * when none answers.
   */
  find(): Promise<{ baudRate: number; version: string }> {
    return this.run('find', () => this.doFind('asked'), { recover: false });
  }

  /**
   * Find the camera at whatever rate it talks (find()), give it the image size
   * (with the reset the part needs, only when it differs) and switch to the
   * transfer rate. The agent calls this once per camera at start.
   */
  connect(): Promise<Vc0706Ready> {
    return this.run(
      'connect',
      async () => {
        const found = await this.doFind('connect');
        const size = this.wantSize;
        const applied = size ? await this.applyImageSize(size, false) : false;
        await this.toTarget();
        if (size && !applied) await this.checkPendingSize(size);
        const baudRate = this.link.baudRate;
        return {
          version: found.version,
          foundAt: found.baudRate,
          baudRate,
          imageSize: size,
          summary: `found at ${found.baudRate} baud, talking at ${baudRate}`,
          fields: { port: this.path, version: found.version, imageSize: size, foundAt: found.baudRate, baudRate },
        };
      },
      { recover: false },
    );
  }

  /**
   * Reset the camera and wait until it has booted ("Init end"). The camera
   * comes back at its power-on rate (bootBaudRate); the port follows it, and
   * stays there.
   */
  reset(): Promise<void> {
    return this.run('RESET', async () => {
      await this.doReset();
      this.target = this.link.baudRate;
    });
  }

  /** Read the image size register. */
  getImageSize(): Promise<ImageSize> {
    return this.run('READ_DATA', () => readImageSize(this.link));
  }

  /**
   * Give the camera this image size: read the register and, only when it
   * differs, write it, read it back, reset the camera (the part applies a new
   * size only at reset), return to the rate it talked at, and check that a
   * frame has the new dimensions. The register lives in the camera's EEPROM
   * and survives power cycles. Resolves whether anything had to change.
   */
  setImageSize(size: ImageSize): Promise<boolean> {
    if (!(size in IMAGE_SIZE_CODES)) return Promise.reject(new RangeError(`camera ${this.path}: image size ${String(size)} is not one of ${IMAGE_SIZES.join(', ')}`));
    return this.run('WRITE_DATA', async () => {
      this.wantSize = size;
      return this.applyImageSize(size, true);
    });
  }

  /**
   * Switch the camera and the port to another rate (9600, 19200, 38400,
   * 57600 or 115200) and check that the camera answers at it. Not kept over a
   * reset or power cycle: the camera then comes back at bootBaudRate.
   */
  setBaudRate(baudRate: number): Promise<void> {
    if (!BAUD_DIVISORS.has(baudRate)) {
      return Promise.reject(new RangeError(`camera ${this.path}: baud rate ${baudRate} is not one the VC0706 knows (${VC0706_BAUD_RATES.join(', ')})`));
    }
    return this.run('SET_PORT', async () => {
      await switchBaud(this.link, baudRate);
      this.target = baudRate;
    });
  }

  /**
   * Take one picture: freeze the frame buffer, read its length, read it in
   * chunks, check it is a whole JPEG (FF D8 … FF D9), and resume the frame
   * buffer whatever happened. Bounded: each command has its timeout, each
   * chunk its timeout and retries, the chunks together the deadline, and the
   * resume at most 2 × (maxDrainMs + timeoutMs); a failure rejects with a
   * CameraError. Waits behind a command already under way. After a failed
   * command it first looks for the camera (see run()).
   */
  snapshot(opts: SnapshotOptions = {}): Promise<Buffer> {
    const chunkSize = opts.chunkSize ?? 4096;
    if (!Number.isInteger(chunkSize) || chunkSize < 8 || chunkSize % 8 !== 0 || chunkSize > 0xfff8) {
      return Promise.reject(new RangeError(`camera ${this.path}: chunk size ${chunkSize} must be a multiple of 8 between 8 and 65528`));
    }
    return this.run('snapshot', () => this.doSnapshot({ ...opts, chunkSize }));
  }

  /** Close the port. A command under way fails with 'io'. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.link.close('camera closed by the agent');
  }

  // ─────────────── finding the camera ───────────────

  /**
   * Look at every rate (link.find): where the port is, the power-on rate, the
   * transfer rate, then the rest. Found, the camera is no longer suspect.
   */
  private async doFind(why: string): Promise<{ baudRate: number; version: string }> {
    const order = [...new Set([this.link.baudRate, this.bootBaud, this.target, ...VC0706_BAUD_RATES])];
    try {
      const found = await findCamera(this.link, order, why);
      this.suspect = false;
      return found;
    } catch (err) {
      if (err instanceof CameraError && err.kind !== 'io') this.suspect = true;
      throw err;
    }
  }

  /**
   * The last command got no valid answer: ask again at the current rate (a
   * glitch: nothing else to do) and, failing that, at every other. Found
   * elsewhere, the camera has rebooted (power cycle, brown-out) or been
   * changed: it has forgotten SET_PORT and any frozen frame, so the image size
   * is checked and the transfer rate set again.
   */
  private async recover(): Promise<void> {
    const from = this.link.baudRate;
    const found = await this.doFind('recover');
    if (found.baudRate === from) return;
    this.log?.warn(
      { event: 'camera.rebooted', path: this.path, was: from, foundAt: found.baudRate, baudRate: this.target },
      `camera no longer answered at ${from} baud but does at ${found.baudRate}: it lost power or was reset; setting it up again`,
    );
    if (this.wantSize) await this.applyImageSize(this.wantSize, false);
    await this.toTarget();
  }

  /** Back to the rate the camera is meant to talk at (after a reset, or found elsewhere). */
  private async toTarget(): Promise<void> {
    if (this.link.baudRate !== this.target) await switchBaud(this.link, this.target);
  }

  private async doReset(): Promise<void> {
    await resetCamera(this.link, this.bootBaud, this.resetTimeoutMs, () => {
      this.frozen = false;
    });
  }

  // ─────────────── image size ───────────────

  /**
   * Read the register; only when it differs from `size`, write it, reset, go
   * back to the target rate and check a frame's dimensions. `strict`: a frame
   * of other dimensions is an error (else a warning: a picture of the wrong
   * size is still evidence). Whether it wrote the register.
   */
  private async applyImageSize(size: ImageSize, strict: boolean): Promise<boolean> {
    if (!(await writeImageSize(this.link, size))) return false;
    // The VC0706 applies a new image size only when it boots: the register
    // changes at once, but frames keep the old size until a reset or a power
    // cycle (VC0706 protocol sheet, LinkSprite LS-Y201 manual: the size is
    // applied at reset). Without this reset the register would read back
    // right and every picture would still have the old size. The reset brings
    // the camera back at its power-on rate.
    await this.doReset();
    await this.toTarget();
    checkFrameSize(this.link, size, await this.frameDimensions(), strict);
    return true;
  }

  /**
   * The register already holds `size`, but a writer that did not reset (an
   * older agent, another tool) may have left it pending: if a frame has other
   * dimensions, reset to apply it. Only at connect, never on the alarm path.
   */
  private async checkPendingSize(size: ImageSize): Promise<void> {
    const dims = await this.frameDimensions();
    if (dims === null || `${dims.width}x${dims.height}` === size) return;
    this.log?.warn(
      { event: 'camera.image-size.pending', path: this.path, size, frame: `${dims.width}x${dims.height}` },
      `the image size register says ${size} but frames are ${dims.width}x${dims.height} (written without a reset); resetting the camera to apply it`,
    );
    await this.doReset();
    await this.toTarget();
    checkFrameSize(this.link, size, await this.frameDimensions(), false);
  }

  /**
   * Freeze a frame, read only as much of it as it takes to find its JPEG
   * frame header, resume: the dimensions of what the camera serves now, in a
   * few hundred bytes rather than a whole picture. Null when no header shows.
   */
  private frameDimensions(): Promise<{ width: number; height: number } | null> {
    return this.frozenFrame((length) => readFrameDimensions(this.link, length));
  }

  // ─────────────── snapshot ───────────────

  /**
   * Freeze the frame buffer, read its length, run `read`, and resume the
   * frame buffer whatever happened (a failed resume is done before the next
   * snapshot).
   */
  private async frozenFrame<T>(read: (length: number) => Promise<T>): Promise<T> {
    let failure: unknown = null;
    try {
      this.frozen = true; // from here on the camera may be frozen, whatever the reply says
      await this.link.exchange(VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.STOP_CURRENT]);
      const length = (await this.link.exchange(VC0706_CMD.GET_FBUF_LEN, [0x00], 4)).readUInt32BE(0);
      return await read(length);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      await this.resumeAfterSnapshot(failure);
    }
  }

  private async doSnapshot(opts: SnapshotOptions & { chunkSize: number }): Promise<Buffer> {
    const started = performance.now();
    if (this.frozen) {
      // A freeze from an earlier, failed snapshot was never undone: without
      // this, the "new" picture would be that old frame.
      await this.link.exchange(VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.RESUME]);
      this.frozen = false;
      this.log?.info({ event: 'camera.resume.stale', path: this.path }, 'resumed a frame left frozen by an earlier failure');
    }
    return this.frozenFrame(async (length) => {
      const { jpeg, stats } = await readFrame(this.link, length, opts, started);
      this.last = stats;
      this.log?.info({ event: 'camera.snapshot', path: this.path, ...stats, chunkSize: opts.chunkSize });
      return jpeg;
    });
  }

  /** Resume the frame buffer; never throws. A failed resume is remembered and done before the next snapshot. */
  private async resumeAfterSnapshot(failure: unknown): Promise<void> {
    if (!this.link.isOpen) return; // port lost: frozen stays set, the next snapshot resumes first
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        if (failure !== null || attempt > 0) await this.link.drainQuiet();
        await this.link.exchange(VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.RESUME]);
        this.frozen = false;
        return;
      } catch (err) {
        this.log?.warn({ event: 'camera.resume.failed', path: this.path, attempt: attempt + 1, err: errText(err) });
        if (err instanceof CameraError && err.kind === 'io') return;
      }
    }
  }

  // ─────────────── one command at a time ───────────────

  /**
   * Commands run one at a time; each gets a port, reopened if it was lost.
   * After a command that got no valid answer (or a lost port) the camera is
   * looked for first (recover()): only then, so a healthy camera pays nothing.
   */
  private run<T>(what: string, fn: () => Promise<T>, opts: { recover?: boolean } = {}): Promise<T> {
    const result = this.queue.then(async () => {
      if (this.closed) throw this.link.error('io', what, 'camera closed by the agent');
      // Unplugged and back: if the camera lost power, it is at its power-on rate now.
      if (await this.link.ensureOpen(what)) this.suspect = true;
      if (this.link.dirty) await this.link.drainQuiet();
      if (this.suspect && opts.recover !== false) await this.recover();
      try {
        return await fn();
      } catch (err) {
        // No valid answer: the camera may have rebooted at another rate. A
        // truncated JPEG or a lost port says nothing of the kind (the port
        // sets `lost`).
        if (err instanceof CameraError && (err.kind === 'timeout' || err.kind === 'garbled')) this.suspect = true;
        throw err;
      }
    });
    this.queue = result.catch(() => undefined);
    return result;
  }
}
