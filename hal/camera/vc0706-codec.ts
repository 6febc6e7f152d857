// The VC0706 serial camera protocol as bytes (Adafruit's TTL serial camera,
// LinkSprite LS-Y201, the SC03MPD modules): command frames, replies, the
// registers and rates the part knows. No port and no timing here: the
// driver (vc0706.ts, over vc0706-transport.ts) and the simulator (sim.ts)
// both speak through this file, so they cannot drift apart.
//
// Protocol (VC0706 protocol sheet, LinkSprite LS-Y201 manual, SC03MPD manual):
//   command  56 <serial> <cmd> <n> <n argument bytes>
//   reply    76 <serial> <cmd> <status> <n> <n data bytes>
//   READ_FBUF's reply is a header (76 ss 32 00 00), the JPEG bytes, then the
//   same five bytes again as a footer.

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
export const IMAGE_SIZES = Object.keys(IMAGE_SIZE_CODES) as [ImageSize, ...ImageSize[]];

/** The image size a register code stands for, or undefined for a code the part does not know. */
export function imageSizeOf(code: number): ImageSize | undefined {
  return IMAGE_SIZES.find((s) => IMAGE_SIZE_CODES[s] === code);
}

/** READ_DATA / WRITE_DATA arguments addressing the image size register (one byte). */
export const IMAGE_SIZE_ARGS = [IMAGE_SIZE_DEVICE, 0x01, IMAGE_SIZE_REGISTER >> 8, IMAGE_SIZE_REGISTER & 0xff] as const;

/** SET_PORT divisors for the UART (protocol sheet, "UART baud rate setting"). */
export const BAUD_DIVISORS: ReadonlyMap<number, number> = new Map([
  [9600, 0xaec8],
  [19200, 0x56e4],
  [38400, 0x2af2],
  [57600, 0x1c4c],
  [115200, 0x0da6],
]);

/** Every rate a VC0706 can talk at. */
export const VC0706_BAUD_RATES = [9600, 19200, 38400, 57600, 115200] as const;
export type Vc0706BaudRate = (typeof VC0706_BAUD_RATES)[number];

/** The rate a VC0706 talks at after power-on or RESET. */
export const VC0706_POWER_ON_BAUD = 38400;

/** The line a VC0706 prints last after a reset, once it listens again. */
export const BOOT_DONE = 'Init end';
/** Replies carry at most 16 data bytes (GEN_VERSION: 11), commands at most 16 arguments; more is neither. */
const MAX_REPLY_DATA = 32;
const MAX_STATUS = VC0706_STATUS_TEXT.length - 1;
/** Bytes of a READ_FBUF reply around the data: header and footer, five each. */
export const READ_FBUF_OVERHEAD = 10;

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

/**
 * The first whole command to camera `serial` in `buf` (what the camera
 * hears), and the bytes after it; skips noise, stray 0x56 bytes and commands
 * to other serial numbers. `command` null: none complete yet (`rest` keeps
 * the start of one).
 */
export function takeCommand(buf: Buffer, serial: number): { command: { cmd: number; args: Buffer } | null; rest: Buffer } {
  let rx = buf;
  for (;;) {
    const i = rx.indexOf(VC0706_REQUEST);
    if (i === -1) return { command: null, rest: Buffer.alloc(0) };
    rx = rx.subarray(i);
    if (rx.length < 4) return { command: null, rest: rx };
    const len = rx[3] ?? 0;
    if (len > MAX_REPLY_DATA) {
      rx = rx.subarray(1); // no command is that long: a stray 0x56
      continue;
    }
    if (rx.length < 4 + len) return { command: null, rest: rx };
    const to = rx[1];
    const cmd = rx[2] ?? 0;
    const args = Buffer.from(rx.subarray(4, 4 + len));
    rx = rx.subarray(4 + len);
    if (to !== serial) continue; // addressed to another camera on the bus
    return { command: { cmd, args }, rest: rx };
  }
}

/** A reply frame: 76 <serial> <cmd> <status> <n> <data>. */
export function encodeReply(serial: number, cmd: number, status: number, data: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([Buffer.from([VC0706_REPLY, serial, cmd, status, data.length]), data]);
}

/** READ_FBUF arguments: current frame, the control mode every manual uses (0A), address, length, delay in 0.01 ms. */
export function readFbufArgs(addr: number, length: number, delay: number): number[] {
  return [0x00, 0x0a, ...u32(addr), ...u32(length), (delay >> 8) & 0xff, delay & 0xff];
}

/** The command byte of a command frame. */
export function frameCmd(frame: Buffer): number {
  return frame[2] ?? 0;
}

// ───────────────────────────── helpers ─────────────────────────────

/** Time `bytes` take on a UART at `baud` (8N1: 10 bits a byte). */
export function wireMs(bytes: number, baud: number): number {
  return (bytes * 10 * 1000) / baud;
}

/** `baud`, or a RangeError naming the key and the rates the part knows. */
export function checkBaud(path: string, baud: number, key: string): number {
  if (!BAUD_DIVISORS.has(baud)) throw new RangeError(`camera ${path}: ${key} ${String(baud)} is not one the VC0706 knows (${VC0706_BAUD_RATES.join(', ')}); it starts at ${VC0706_POWER_ON_BAUD}`);
  return baud;
}

function u32(n: number): number[] {
  return [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
}

export function hex2(n: number): string {
  return n.toString(16).padStart(2, '0').toUpperCase();
}

export function hex(buf: Buffer | Uint8Array): string {
  return Array.from(buf, hex2).join(' ');
}
