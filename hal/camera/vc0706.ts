// VC0706 serial JPEG camera (Adafruit's TTL serial camera, LinkSprite LS-Y201,
// the SC03MPD modules): freeze a frame, read its length, read the JPEG in
// chunks, resume. A snapshot is taken on every alarm, so nothing here may
// hang: every exchange has a deadline, the line is resynchronised after
// garbage, and a frame frozen by a failed snapshot is resumed before the next
// one (a camera left frozen serves the same old picture for every later alarm).
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
// Protocol (VC0706 protocol sheet, LinkSprite LS-Y201 manual, SC03MPD manual):
//   command  56 <serial> <cmd> <n> <n argument bytes>
//   reply    76 <serial> <cmd> <status> <n> <n data bytes>
//   READ_FBUF's reply is a header (76 ss 32 00 00), the JPEG bytes, then the
//   same five bytes again as a footer.

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { SerialPort } from 'serialport';
import { HANGUP_AWARE_BINDING } from '../serial/hangup-aware-binding.ts';
import { errText } from '../../common/errors.ts';

export const VC0706_REQUEST = 0x56;
export const VC0706_REPLY = 0x76;

export const VC0706_CMD = {
  GEN_VERSION: 0x11,
  SET_PORT: 0x24,
  RESET: 0x26,
  READ_DATA: 0x30,
  WRITE_DATA: 0x31,
  READ_FBUF: 0x32,
  GET_FBUF_LEN: 0x34,
  FBUF_CTRL: 0x36,
  DOWNSIZE_CTRL: 0x54,
  DOWNSIZE_STATUS: 0x55,
} as const;

const COMMAND_NAMES = new Map<number, string>(Object.entries(VC0706_CMD).map(([name, code]) => [code, name]));

export function commandName(cmd: number): string {
  return COMMAND_NAMES.get(cmd) ?? `command 0x${hex2(cmd)}`;
}

/** FBUF_CTRL argument: what to do with the frame buffer. */
export const FBUF_CTRL = { STOP_CURRENT: 0x00, STOP_NEXT: 0x01, STEP: 0x02, RESUME: 0x03 } as const;

/** Status byte of a reply, as the protocol sheet words them. */
export const VC0706_STATUS_TEXT = [
  'executed',
  "the camera did not receive the command",
  'the data length is wrong',
  'data format error',
  'the command cannot execute now',
  'command received but executed wrong',
] as const;

/** Image size register (0x0019 in the camera's EEPROM, device type 4) and its codes. */
export const IMAGE_SIZE_REGISTER = 0x0019;
export const IMAGE_SIZE_DEVICE = 0x04;
export const IMAGE_SIZE_CODES = { '640x480': 0x00, '320x240': 0x11, '160x120': 0x22 } as const;
export type ImageSize = keyof typeof IMAGE_SIZE_CODES;

/** SET_PORT divisors for the UART (protocol sheet, "UART baud rate setting"). */
export const BAUD_DIVISORS: ReadonlyMap<number, number> = new Map([
  [9600, 0xaec8],
  [19200, 0x56e4],
  [38400, 0x2af2],
  [57600, 0x1c4c],
  [115200, 0x0da6],
]);

/** Every rate a VC0706 can talk at. */
export const VC0706_BAUD_RATES: readonly number[] = [...BAUD_DIVISORS.keys()];

/** The line a VC0706 prints last after a reset, once it listens again. */
export const BOOT_DONE = 'Init end';
/** Replies carry at most 16 data bytes (GEN_VERSION: 11); more is not a reply. */
const MAX_REPLY_DATA = 32;
const MAX_STATUS = VC0706_STATUS_TEXT.length - 1;
/** How much of a frame to read looking for its dimensions, and in what steps (the header is in the first few hundred bytes). */
const FRAME_HEAD_MAX = 4096;
const FRAME_HEAD_CHUNK = 512;

// ───────────────────────────── reply parser ─────────────────────────────

export interface Vc0706Reply {
  /** Offset of the 0x76 that starts it. */
  start: number;
  /** Offset just past its last data byte. */
  end: number;
  status: number;
  data: Buffer;
}

/**
 * The first complete reply to `cmd` from camera `serial` in `buf`, skipping
 * whatever comes before it (boot text, line noise, late replies to earlier
 * commands). 'partial' when a reply to `cmd` has begun but not all of it is in
 * yet; null when nothing in `buf` can become one.
 */
export function findReply(buf: Buffer, serial: number, cmd: number): Vc0706Reply | 'partial' | null {
  let partial = false;
  for (let i = buf.indexOf(VC0706_REPLY); i !== -1; i = buf.indexOf(VC0706_REPLY, i + 1)) {
    const head = [VC0706_REPLY, serial, cmd];
    let prefixOk = true;
    for (let k = 1; k < 3 && i + k < buf.length; k++) if (buf[i + k] !== head[k]) prefixOk = false;
    if (!prefixOk) continue;
    const status = buf[i + 3];
    const n = buf[i + 4];
    if ((status !== undefined && status > MAX_STATUS) || (n !== undefined && n > MAX_REPLY_DATA)) continue;
    if (status === undefined || n === undefined || i + 5 + n > buf.length) {
      partial = true; // keep looking: a complete reply may follow a false start
      continue;
    }
    return { start: i, end: i + 5 + n, status, data: Buffer.from(buf.subarray(i + 5, i + 5 + n)) };
  }
  return partial ? 'partial' : null;
}

/** A command frame: 56 <serial> <cmd> <n> <args>. */
export function encodeCommand(serial: number, cmd: number, args: readonly number[] = []): Buffer {
  return Buffer.from([VC0706_REQUEST, serial, cmd, args.length, ...args]);
}

/** Where the JPEG in a frame buffer ends, or null if it has no end marker. */
export function jpegEnd(frame: Buffer): number | null {
  // The image must end with FF D9. Some modules pad the frame with zeros
  // after it; a few trailing zero bytes are tolerated and cut off.
  for (let end = frame.length; end >= 2 && frame.length - end <= 32; end--) {
    if (frame[end - 2] === 0xff && frame[end - 1] === 0xd9) return end;
    if (frame[end - 1] !== 0x00) return null;
  }
  return null;
}

/**
 * Width and height from a JPEG's SOFn segment, or null if it has none before
 * the scan (or none yet, in the first bytes of a frame).
 */
export function jpegDimensions(jpeg: Buffer): { width: number; height: number } | null {
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return null;
  let i = 2;
  while (i + 4 <= jpeg.length) {
    if (jpeg[i] !== 0xff) return null;
    const marker = jpeg[i + 1] ?? 0;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2; // no length
      continue;
    }
    if (marker === 0xda || marker === 0xd9) return null; // scan or end before any frame header
    const segLen = jpeg.readUInt16BE(i + 2);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && i + 9 <= jpeg.length) return { height: jpeg.readUInt16BE(i + 5), width: jpeg.readUInt16BE(i + 7) };
    i += 2 + segLen;
  }
  return null;
}

// ───────────────────────────── errors ─────────────────────────────

export type CameraErrorKind = 'timeout' | 'garbled' | 'truncated' | 'io';

export interface CameraErrorDetail {
  path: string;
  /** The protocol command, e.g. READ_FBUF, or the step (open, snapshot). */
  command: string;
  /** The bytes sent, hex. */
  sent?: string;
  /** What came back (the first bytes), hex. */
  received?: string;
  /** The reply's status byte when the camera answered with an error. */
  status?: number;
}

/**
 * Everything the driver throws at the camera's door. `kind`: 'timeout' (no or
 * incomplete reply in time), 'garbled' (bytes that are no valid reply, or an
 * error status), 'truncated' (a JPEG without its end), 'io' (the port itself).
 */
export class CameraError extends Error {
  override readonly name = 'CameraError';
  constructor(
    readonly kind: CameraErrorKind,
    message: string,
    readonly detail: CameraErrorDetail,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

// ───────────────────────────── the driver ─────────────────────────────

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

export interface SnapshotOptions {
  /** Bytes per READ_FBUF. A multiple of 8 (LinkSprite's rule). Default 4096. */
  chunkSize?: number;
  /** Timeout of one chunk. Default: timeoutMs + twice the chunk's wire time at the port's baud rate. */
  chunkTimeoutMs?: number;
  /** Further attempts at a chunk that timed out or came back garbled. Default 2. */
  chunkRetries?: number;
  /** Give up the whole capture after this long. Default: twice the image's wire time + 5 s. */
  deadlineMs?: number;
  /** The camera's pause between header, data and footer, in 0.01 ms. Default 10 (0.1 ms), as the manuals suggest. */
  transferDelay?: number;
  /** A frame length above this is taken for garbage. Default 1 MiB. */
  maxFrameBytes?: number;
}

export interface SnapshotStats {
  bytes: number;
  ms: number;
  chunks: number;
  retries: number;
  baudRate: number;
  /** Time the JPEG bytes alone need on the wire: bytes × 10 / baud. */
  floorMs: number;
}

type SerialPortOptions = ConstructorParameters<typeof SerialPort>[0];

export class Vc0706Camera {
  readonly path: string;
  readonly serial: number;
  private baud: number;
  private readonly bootBaud: number;
  /** The rate the camera is meant to talk at; restored after it rebooted behind our back. */
  private target: number;
  /** The image size it is meant to have; checked again after it rebooted. */
  private wantSize: ImageSize | null;
  private readonly timeoutMs: number;
  private readonly resetTimeoutMs: number;
  private readonly maxDrainMs: number;
  private readonly log: Logger | undefined;
  private port: SerialPort | null = null;
  private readonly rx = new RxBuffer();
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  /** The last exchange failed: bytes of it may still be on the way. */
  private dirty = false;
  /** A freeze was sent and no resume acknowledged since. */
  private frozen = false;
  /** The last drain gave up with the camera still sending. */
  private busyLine = false;
  /** The port was lost since it was last opened: the camera may have rebooted. */
  private lost = false;
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
    this.baud = checkBaud(opts.path, opts.baudRate ?? 38400, 'baudRate');
    this.bootBaud = checkBaud(opts.path, opts.bootBaudRate ?? 38400, 'bootBaudRate');
    this.target = checkBaud(opts.path, opts.transferBaudRate ?? this.baud, 'transferBaudRate');
    if (opts.imageSize !== undefined && !(opts.imageSize in IMAGE_SIZE_CODES)) {
      throw new RangeError(`camera ${opts.path}: image size ${String(opts.imageSize)} is not one of ${Object.keys(IMAGE_SIZE_CODES).join(', ')}`);
    }
    this.wantSize = opts.imageSize ?? null;
    this.serial = opts.serial ?? 0;
    if (!Number.isInteger(this.serial) || this.serial < 0 || this.serial > 255) {
      throw new Error(`camera ${opts.path}: serial number ${String(opts.serial)} is not 0..255; it is 0 unless someone changed it`);
    }
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.resetTimeoutMs = opts.resetTimeoutMs ?? 3000;
    this.maxDrainMs = opts.maxDrainMs ?? 500;
    this.log = opts.log;
  }

  /** Open the port. Throws CameraError 'io' when it cannot be opened; does not talk to the camera yet. */
  static async open(opts: Vc0706Options): Promise<Vc0706Camera> {
    const cam = new Vc0706Camera(opts);
    await cam.openPort();
    return cam;
  }

  /** The rate the port (and, as far as we know, the camera) is set to. */
  get baudRate(): number {
    return this.baud;
  }

  /** Figures of the last successful snapshot. */
  get lastSnapshot(): SnapshotStats | null {
    return this.last;
  }

  /** The camera's version string, e.g. "VC0703 1.00". */
  version(): Promise<string> {
    return this.run('GEN_VERSION', async () => {
      const data = await this.exchange(VC0706_CMD.GEN_VERSION, []);
      return data.toString('latin1').trim();
    });
  }

  /**
   * Look for the camera at every VC0706 rate: the port's current rate first,
   * then the power-on rate, the transfer rate, and the rest. The port is left
   * at the rate it answered at. Throws a CameraError naming every rate tried
   * when none answers.
   */
  find(): Promise<{ baudRate: number; version: string }> {
    return this.run('find', () => this.doFind(this.probeOrder(), 'asked'), { recover: false });
  }

  /**
   * Find the camera at whatever rate it talks (find()), give it the image size
   * (with the reset the part needs, only when it differs) and switch to the
   * transfer rate. The agent calls this once per camera at start.
   */
  connect(): Promise<{ version: string; foundAt: number; baudRate: number; imageSize: ImageSize | null }> {
    return this.run(
      'connect',
      async () => {
        const found = await this.doFind(this.probeOrder(), 'connect');
        const size = this.wantSize;
        const applied = size ? await this.applyImageSize(size, false) : false;
        if (this.baud !== this.target) await this.switchBaud(this.target);
        if (size && !applied) await this.checkPendingSize(size);
        return { version: found.version, foundAt: found.baudRate, baudRate: this.baud, imageSize: size };
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
      this.target = this.baud;
    });
  }

  /** Read the image size register. */
  getImageSize(): Promise<ImageSize> {
    return this.run('READ_DATA', async () => {
      const data = await this.exchange(VC0706_CMD.READ_DATA, [IMAGE_SIZE_DEVICE, 0x01, IMAGE_SIZE_REGISTER >> 8, IMAGE_SIZE_REGISTER & 0xff], 1);
      return this.sizeOf(data[0] ?? -1);
    });
  }

  /**
   * Give the camera this image size: read the register and, only when it
   * differs, write it, read it back, reset the camera (the part applies a new
   * size only at reset), return to the rate it talked at, and check that a
   * frame has the new dimensions. The register lives in the camera's EEPROM
   * and survives power cycles. Resolves whether anything had to change.
   */
  setImageSize(size: ImageSize): Promise<boolean> {
    if (!(size in IMAGE_SIZE_CODES)) return Promise.reject(new RangeError(`camera ${this.path}: image size ${String(size)} is not one of ${Object.keys(IMAGE_SIZE_CODES).join(', ')}`));
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
    const divisor = BAUD_DIVISORS.get(baudRate);
    if (divisor === undefined) {
      return Promise.reject(new RangeError(`camera ${this.path}: baud rate ${baudRate} is not one the VC0706 knows (${[...BAUD_DIVISORS.keys()].join(', ')})`));
    }
    return this.run('SET_PORT', async () => {
      await this.switchBaud(baudRate);
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
    const port = this.port;
    this.port = null;
    this.rx.fail('camera closed by the agent');
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    this.log?.info({ event: 'camera.port.closed', path: this.path });
  }

  // ─────────────── finding the camera ───────────────

  /** Where to look: the rate the port is at, the power-on rate, the transfer rate, then the rest. */
  private probeOrder(): number[] {
    return [...new Set([this.baud, this.bootBaud, this.target, ...VC0706_BAUD_RATES])];
  }

  /**
   * GEN_VERSION at each rate in turn until one answers; the port is left
   * there. `why` says what sent us looking, for the log.
   */
  private async doFind(order: readonly number[], why: string): Promise<{ baudRate: number; version: string }> {
    const from = this.baud;
    const tried: string[] = [];
    const triedRates: number[] = [];
    let noise = false;
    for (const rate of order) {
      if (this.baud !== rate) await this.setPortBaud(rate);
      await this.drainQuiet();
      try {
        const data = await this.exchange(VC0706_CMD.GEN_VERSION, []);
        const version = data.toString('latin1').trim();
        this.suspect = false;
        if (why !== 'recover' || rate !== from) {
          this.log?.info(
            { event: 'camera.found', path: this.path, baudRate: rate, version, tried: [...triedRates, rate], why },
            `camera answers at ${rate} baud`,
          );
        }
        return { baudRate: rate, version };
      } catch (err) {
        if (!(err instanceof CameraError) || err.kind === 'io') throw err;
        noise ||= err.detail.received !== undefined;
        triedRates.push(rate);
        tried.push(`${rate} (${err.detail.received !== undefined ? 'bytes, no reply' : 'silent'})`);
      }
    }
    this.suspect = true;
    this.dirty = true;
    throw this.error(
      noise ? 'garbled' : 'timeout',
      'find',
      `no answer to GEN_VERSION at any VC0706 rate; tried ${tried.join(', ')} baud, ${Math.round(this.timeoutMs)} ms each; ` +
        `check the camera's power (5 V, about 100 mA), that its TX goes to the adapter's RX and its RX to TX, the port in the config, and its serial number (${this.serial})`,
    );
  }

  /**
   * The last command got no valid answer: ask again at the current rate (a
   * glitch: nothing else to do) and, failing that, at every other. Found
   * elsewhere, the camera has rebooted (power cycle, brown-out) or been
   * changed: it has forgotten SET_PORT and any frozen frame, so the image size
   * is checked and the transfer rate set again.
   */
  private async recover(): Promise<void> {
    const from = this.baud;
    const found = await this.doFind(this.probeOrder(), 'recover');
    if (found.baudRate === from) return;
    this.log?.warn(
      { event: 'camera.rebooted', path: this.path, was: from, foundAt: found.baudRate, baudRate: this.target },
      `camera no longer answered at ${from} baud but does at ${found.baudRate}: it lost power or was reset; setting it up again`,
    );
    if (this.wantSize) await this.applyImageSize(this.wantSize, false);
    if (this.baud !== this.target) await this.switchBaud(this.target);
  }

  // ─────────────── image size ───────────────

  private readSizeCode(): Promise<number> {
    return this.exchange(VC0706_CMD.READ_DATA, [IMAGE_SIZE_DEVICE, 0x01, IMAGE_SIZE_REGISTER >> 8, IMAGE_SIZE_REGISTER & 0xff], 1).then((d) => d[0] ?? -1);
  }

  /**
   * Read the register; only when it differs from `size`, write it, reset, go
   * back to the target rate and check a frame's dimensions. `strict`: a frame
   * of other dimensions is an error (else a warning: a picture of the wrong
   * size is still evidence). Whether it wrote the register.
   */
  private async applyImageSize(size: ImageSize, strict: boolean): Promise<boolean> {
    const code = IMAGE_SIZE_CODES[size];
    const was = await this.readSizeCode();
    if (was === code) return false;
    const args = [IMAGE_SIZE_DEVICE, 0x01, IMAGE_SIZE_REGISTER >> 8, IMAGE_SIZE_REGISTER & 0xff];
    await this.exchange(VC0706_CMD.WRITE_DATA, [...args, code]);
    const back = await this.readSizeCode();
    if (back !== code) {
      throw this.error('garbled', 'WRITE_DATA', `image size register reads 0x${hex2(back)} after writing 0x${hex2(code)} (${size}); check that this is a VC0706 camera`);
    }
    this.log?.info({ event: 'camera.image-size', path: this.path, size, was: `0x${hex2(was)}` });
    // The VC0706 applies a new image size only when it boots: the register
    // changes at once, but frames keep the old size until a reset or a power
    // cycle (VC0706 protocol sheet, LinkSprite LS-Y201 manual: the size is
    // applied at reset). Without this reset the register would read back
    // right and every picture would still have the old size. The reset brings
    // the camera back at its power-on rate.
    await this.doReset();
    if (this.baud !== this.target) await this.switchBaud(this.target);
    await this.checkFrameSize(size, strict);
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
    if (this.baud !== this.target) await this.switchBaud(this.target);
    await this.checkFrameSize(size, false);
  }

  private async checkFrameSize(size: ImageSize, strict: boolean): Promise<void> {
    const dims = await this.frameDimensions();
    const got = dims ? `${dims.width}x${dims.height}` : null;
    if (got === size) {
      this.log?.info({ event: 'camera.image-size.applied', path: this.path, size });
      return;
    }
    const what = got
      ? `frames are ${got} after the reset, not ${size}, though the register reads ${size}; this module does not apply the image size, or applies it only at power-on: power-cycle it, or set imageSize to ${got}`
      : `no JPEG frame header in the first ${FRAME_HEAD_MAX} bytes of a frame after the reset, so ${size} cannot be checked; check that this is a VC0706 JPEG camera`;
    if (strict) throw this.error('garbled', 'WRITE_DATA', what);
    this.log?.warn({ event: 'camera.image-size.mismatch', path: this.path, size, frame: got }, what);
  }

  /**
   * Freeze a frame, read only as much of it as it takes to find its JPEG
   * frame header, resume: the dimensions of what the camera serves now, in a
   * few hundred bytes rather than a whole picture. Null when no header shows.
   */
  private async frameDimensions(): Promise<{ width: number; height: number } | null> {
    const delay = 10;
    let failure: unknown = null;
    try {
      this.frozen = true;
      await this.exchange(VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.STOP_CURRENT]);
      const length = (await this.exchange(VC0706_CMD.GET_FBUF_LEN, [0x00], 4)).readUInt32BE(0);
      let head = Buffer.alloc(0);
      for (let addr = 0; addr < Math.min(length, FRAME_HEAD_MAX); addr += FRAME_HEAD_CHUNK) {
        const n = Math.min(FRAME_HEAD_CHUNK, length - addr);
        const timeout = this.timeoutMs + 2 * wireMs(n + 26, this.baud);
        head = Buffer.concat([head, await this.readChunk(addr, n, delay, timeout, performance.now() + timeout, length)]);
        const dims = jpegDimensions(head);
        if (dims) return dims;
      }
      return null;
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      await this.resumeAfterSnapshot(failure);
    }
  }

  // ─────────────── baud rate ───────────────

  /** SET_PORT and follow it with the port; check the camera answers at the new rate. */
  private async switchBaud(baudRate: number): Promise<void> {
    const divisor = BAUD_DIVISORS.get(baudRate);
    if (divisor === undefined) throw new RangeError(`camera ${this.path}: baud rate ${baudRate} is not one the VC0706 knows (${VC0706_BAUD_RATES.join(', ')})`);
    const from = this.baud;
    let acked = true;
    try {
      await this.exchange(VC0706_CMD.SET_PORT, [0x01, divisor >> 8, divisor & 0xff]);
    } catch (err) {
      // A refusal (error status) stands; a lost ack may have come at the new rate already: ask there.
      if (!(err instanceof CameraError) || err.kind === 'io' || err.detail.status !== undefined) throw err;
      acked = false;
    }
    await this.setPortBaud(baudRate);
    try {
      await this.exchange(VC0706_CMD.GEN_VERSION, []);
    } catch (err) {
      if (err instanceof CameraError && err.kind === 'io') throw err;
      await this.setPortBaud(from);
      const stillOld = await this.answers();
      throw this.error(
        'garbled',
        'SET_PORT',
        `camera does not answer at ${baudRate} baud after SET_PORT (${acked ? 'acknowledged' : 'not acknowledged'}); ` +
          (stillOld ? `it still answers at ${from} baud, the port is back at ${from}` : `nor at ${from} baud; check the wiring, or reset the camera`),
        { cause: err },
      );
    }
    this.log?.info({ event: 'camera.baud.changed', path: this.path, from, to: baudRate });
  }

  // ─────────────── snapshot ───────────────

  private async doSnapshot(opts: SnapshotOptions & { chunkSize: number }): Promise<Buffer> {
    const started = performance.now();
    const retries = opts.chunkRetries ?? 2;
    const delay = opts.transferDelay ?? 10;
    const maxFrame = opts.maxFrameBytes ?? 1 << 20;
    if (this.frozen) {
      // A freeze from an earlier, failed snapshot was never undone: without
      // this, the "new" picture would be that old frame.
      await this.exchange(VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.RESUME]);
      this.frozen = false;
      this.log?.info({ event: 'camera.resume.stale', path: this.path }, 'resumed a frame left frozen by an earlier failure');
    }
    let failure: unknown = null;
    let retried = 0;
    try {
      this.frozen = true; // from here on the camera may be frozen, whatever the reply says
      await this.exchange(VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.STOP_CURRENT]);
      const lenData = await this.exchange(VC0706_CMD.GET_FBUF_LEN, [0x00], 4);
      const length = lenData.readUInt32BE(0);
      if (length === 0) throw this.error('truncated', 'GET_FBUF_LEN', 'frame length 0: the frame buffer holds no picture; check the camera (lens cap, sensor) and try again');
      if (length > maxFrame) {
        throw this.error('garbled', 'GET_FBUF_LEN', `frame length ${length} is beyond ${maxFrame} bytes, not a VC0706 picture; check the baud rate and the line`);
      }
      const chunks = Math.ceil(length / opts.chunkSize);
      const deadline = opts.deadlineMs !== undefined ? started + opts.deadlineMs : performance.now() + 2 * wireMs(length + chunks * 26, this.baud) + 5000;
      const image = Buffer.alloc(length);
      for (let addr = 0; addr < length; addr += opts.chunkSize) {
        const n = Math.min(opts.chunkSize, length - addr);
        const chunkTimeout = opts.chunkTimeoutMs ?? this.timeoutMs + 2 * wireMs(n + 26, this.baud) + (2 * delay) / 100;
        let first: CameraError | null = null;
        for (let attempt = 0; ; attempt++) {
          try {
            const data = await this.readChunk(addr, n, delay, chunkTimeout, deadline, length);
            data.copy(image, addr);
            break;
          } catch (err) {
            const retriable = err instanceof CameraError && (err.kind === 'timeout' || err.kind === 'garbled');
            if (!retriable || attempt >= retries || performance.now() >= deadline) {
              // The first failure is the cause; a retry mostly meets its leftovers.
              if (!first || !(err instanceof CameraError) || err.kind === 'io') throw err;
              throw new CameraError(first.kind, `${first.message}; ${attempt} ${attempt === 1 ? 'retry' : 'retries'} failed too (last: ${err.kind})`, first.detail, { cause: err });
            }
            first ??= err;
            retried++;
            this.log?.warn({ event: 'camera.chunk.retry', path: this.path, addr, bytes: n, attempt: attempt + 1, err: err.message });
            await this.drainQuiet();
          }
        }
      }
      if (image[0] !== 0xff || image[1] !== 0xd8) {
        throw this.error('garbled', 'READ_FBUF', `the frame does not start with FF D8 but ${hex(image.subarray(0, 4))}: not a JPEG; check that this is a VC0706 JPEG camera`);
      }
      const end = jpegEnd(image);
      if (end === null) {
        throw this.error(
          'truncated',
          'READ_FBUF',
          `the ${length}-byte frame ends with ${hex(image.subarray(Math.max(0, length - 4)))}, not FF D9: the JPEG is cut short; take another snapshot, or lower the image size`,
        );
      }
      const ms = performance.now() - started;
      this.last = { bytes: end, ms, chunks, retries: retried, baudRate: this.baud, floorMs: wireMs(end, this.baud) };
      this.log?.info({ event: 'camera.snapshot', path: this.path, ...this.last, chunkSize: opts.chunkSize });
      return end === length ? image : image.subarray(0, end);
    } catch (err) {
      failure = err;
      throw err;
    } finally {
      await this.resumeAfterSnapshot(failure);
    }
  }

  /** Resume the frame buffer; never throws. A failed resume is remembered and done before the next snapshot. */
  private async resumeAfterSnapshot(failure: unknown): Promise<void> {
    if (!this.port?.isOpen) return; // port lost: frozen stays set, the next snapshot resumes first
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        if (failure !== null || attempt > 0) await this.drainQuiet();
        await this.exchange(VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.RESUME]);
        this.frozen = false;
        return;
      } catch (err) {
        this.log?.warn({ event: 'camera.resume.failed', path: this.path, attempt: attempt + 1, err: errText(err) });
        if (err instanceof CameraError && err.kind === 'io') return;
      }
    }
  }

  private async readChunk(addr: number, n: number, delay: number, timeoutMs: number, deadline: number, length: number): Promise<Buffer> {
    const cmd = VC0706_CMD.READ_FBUF;
    // 00: current frame; 0A: the control mode every manual uses; then address, length, delay.
    const args = [0x00, 0x0a, ...u32(addr), ...u32(n), (delay >> 8) & 0xff, delay & 0xff];
    const frame = encodeCommand(this.serial, cmd, args);
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
          `${where}: ${have} of ${n} bytes in ${Math.round(ms)} ms, where ${this.baud} baud needs ${Math.round(wireMs(n + 10, this.baud))} ms: ` +
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
    if (!footer.equals(Buffer.from([VC0706_REPLY, this.serial, cmd, 0x00, 0x00]))) {
      this.dirty = true;
      throw this.error('garbled', 'READ_FBUF', `${where}: no reply footer after the data (got ${hex(footer)}): bytes lost or stale data on the line; check the baud rate and the wiring`, {
        sent: frame,
        received: buf.subarray(got.start, got.start + 24),
      });
    }
    return data;
  }

  // ─────────────── reset, baud ───────────────

  private async doReset(): Promise<void> {
    const from = this.baud;
    await this.exchange(VC0706_CMD.RESET, []);
    this.frozen = false;
    // The camera reboots at its power-on rate and prints its boot text there.
    if (this.baud !== this.bootBaud) await this.setPortBaud(this.bootBaud);
    const deadline = performance.now() + this.resetTimeoutMs;
    const done = await this.wait('RESET', null, (buf) => {
      const i = buf.indexOf(BOOT_DONE, 0, 'latin1');
      return i === -1 ? undefined : i;
    }, deadline);
    if (done !== undefined) {
      await sleep(20); // the rest of the line ("\r\n")
      this.rx.clear();
      this.log?.info({ event: 'camera.reset', path: this.path, baudRate: this.baud });
      return;
    }
    // No boot text: maybe this module keeps the rate over a reset, or prints nothing.
    const seen = this.rx.bytes;
    for (const rate of new Set([this.bootBaud, from])) {
      await this.setPortBaud(rate);
      if (await this.answers()) {
        this.log?.warn({ event: 'camera.reset.no-boot-text', path: this.path, baudRate: rate }, `no "${BOOT_DONE}" after reset, but the camera answers at ${rate} baud`);
        return;
      }
    }
    this.dirty = true;
    throw this.error(
      'timeout',
      'RESET',
      `no "${BOOT_DONE}" within ${this.resetTimeoutMs} ms of the reset, and no answer at ${[...new Set([this.bootBaud, from])].join(' or ')} baud` +
        (seen.length ? ` (got ${seen.length} bytes: ${hex(seen.subarray(0, 24))})` : '') +
        `; check the camera's power supply (it needs ~100 mA at 5 V) and its TX wire`,
    );
  }

  /** Does the camera answer GEN_VERSION at the port's current rate? */
  private async answers(): Promise<boolean> {
    try {
      await this.drainQuiet();
      await this.exchange(VC0706_CMD.GEN_VERSION, []);
      return true;
    } catch (err) {
      if (err instanceof CameraError && err.kind === 'io') throw err;
      return false;
    }
  }

  private async setPortBaud(baudRate: number): Promise<void> {
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
  private async exchange(cmd: number, args: readonly number[], dataLength?: number): Promise<Buffer> {
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
  private async drainQuiet(): Promise<void> {
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

  /**
   * Commands run one at a time; each gets a port, reopened if it was lost.
   * After a command that got no valid answer (or a lost port) the camera is
   * looked for first (recover()): only then, so a healthy camera pays nothing.
   */
  private run<T>(what: string, fn: () => Promise<T>, opts: { recover?: boolean } = {}): Promise<T> {
    const result = this.queue.then(async () => {
      if (this.closed) throw this.error('io', what, 'camera closed by the agent');
      await this.ensurePort(what);
      if (this.dirty) await this.drainQuiet();
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

  private async ensurePort(what: string): Promise<void> {
    if (this.port?.isOpen) return;
    await this.openPort(what);
    // Unplugged and back: if the camera lost power, it is at its power-on rate now.
    if (this.lost) this.suspect = true;
    this.lost = false;
  }

  private async openPort(what = 'open'): Promise<void> {
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

  private requirePort(name: string): SerialPort {
    const port = this.port;
    if (!port?.isOpen) throw this.error('io', name, 'the port is not open; check that the camera is plugged in');
    return port;
  }

  // ─────────────── errors ───────────────

  private sizeOf(code: number): ImageSize {
    for (const [size, c] of Object.entries(IMAGE_SIZE_CODES)) if (c === code) return size as ImageSize;
    throw this.error('garbled', 'READ_DATA', `image size code 0x${hex2(code)} is none of ${Object.keys(IMAGE_SIZE_CODES).join(', ')}; is this a VC0706 camera?`);
  }

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
      { sent: frame, received: Buffer.concat([Buffer.from([VC0706_REPLY, this.serial, frameCmd(frame), reply.status, reply.data.length]), reply.data]), status: reply.status },
    );
  }

  private error(
    kind: CameraErrorKind,
    command: string,
    what: string,
    extra: { sent?: Buffer; received?: Buffer; status?: number; cause?: unknown } = {},
  ): CameraError {
    const detail: CameraErrorDetail = { path: this.path, command };
    if (extra.sent) detail.sent = hex(extra.sent);
    if (extra.received) detail.received = hex(extra.received.subarray(0, 32)) + (extra.received.length > 32 ? ` …(${extra.received.length} bytes)` : '');
    if (extra.status !== undefined) detail.status = extra.status;
    const sent = detail.sent ? ` [sent ${detail.sent}]` : '';
    const got = detail.received ? ` [got ${detail.received}]` : '';
    return new CameraError(kind, `camera ${this.path}: ${command}: ${what}${sent}${got}`, detail, extra.cause === undefined ? undefined : { cause: extra.cause });
  }
}

// ───────────────────────────── receive buffer ─────────────────────────────

/** Bytes from the camera, and one waiter at a time (commands never overlap). */
class RxBuffer {
  private buf: Buffer = Buffer.alloc(0);
  private wake: (() => void) | null = null;
  private failure: string | null = null;
  /** performance.now() of the last byte received. */
  lastByteAt = 0;

  get bytes(): Buffer {
    return this.buf;
  }

  push(data: Buffer): void {
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
    // A babbling line must not grow memory without end; a chunk is at most 64 KiB.
    if (this.buf.length > 256 * 1024) this.buf = this.buf.subarray(this.buf.length - 128 * 1024);
    this.lastByteAt = performance.now();
    this.wake?.();
  }

  consume(n: number): void {
    this.buf = this.buf.subarray(n);
  }

  clear(): void {
    this.buf = Buffer.alloc(0);
  }

  /** The port is gone: the waiter (and every later one until reset) throws PortGone with this reason. */
  fail(reason: string): void {
    this.failure = reason;
    this.wake?.();
  }

  reset(): void {
    this.failure = null;
    this.clear();
  }

  /** Wait until `scan` finds something in the buffer; undefined at the deadline; throws PortGone when the port went away. */
  async until<T>(scan: (buf: Buffer) => T | undefined, deadline: number): Promise<T | undefined> {
    for (;;) {
      if (this.failure !== null) throw new PortGone(this.failure);
      const hit = scan(this.buf);
      if (hit !== undefined) return hit;
      const left = deadline - performance.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, left);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.wake = done;
      });
      this.wake = null;
    }
  }
}

// ───────────────────────────── helpers ─────────────────────────────

class TimeoutError extends Error {}
class PortGone extends Error {}

function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${Math.round(ms)} ms`)), Math.max(0, ms));
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function checkBaud(path: string, baud: number, key: string): number {
  if (!BAUD_DIVISORS.has(baud)) throw new RangeError(`camera ${path}: ${key} ${String(baud)} is not one the VC0706 knows (${[...BAUD_DIVISORS.keys()].join(', ')}); it starts at 38400`);
  return baud;
}

/** Time `bytes` take on a UART at `baud` (8N1: 10 bits a byte). */
export function wireMs(bytes: number, baud: number): number {
  return (bytes * 10 * 1000) / baud;
}

function frameCmd(frame: Buffer): number {
  return frame[2] ?? 0;
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0').toUpperCase();
}

export function hex(buf: Buffer | Uint8Array): string {
  return Array.from(buf, hex2).join(' ');
}


const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

export type { SerialPortOptions };
