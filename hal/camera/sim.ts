// A simulated VC0706 camera on one end of a serial line (a socat pty pair in
// tests and benches): it parses the same command frames and answers with the
// same bytes as the module, serving real JPEG files as its frames. What a
// real one does that matters to the driver is kept: it stays frozen on the
// same frame until told to resume, reboots at its power-on rate after RESET
// and prints its boot text, ignores commands while booting, and (with `peer`)
// hears and speaks only noise when the other end's tty is set to another rate.
// A new image size is written to the register at once but, as on the part,
// only applied to frames at the next RESET or power-on. Its power can be cut
// and restored while the serial port stays open (a camera on its own supply,
// or a brown-out): it then comes back at its power-on rate, unfrozen, with
// SET_PORT forgotten. Faults can be switched on and off while it runs.

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { SerialPort } from 'serialport';
import { HANGUP_AWARE_BINDING } from '../serial/hangup-aware-binding.ts';
import { jpegDimensions } from './jpeg.ts';
import { SimFrames } from './sim-frames.ts';
import { SimUart, sleep, speedsMatch } from './sim-uart.ts';
import { BAUD_DIVISORS, FBUF_CTRL, IMAGE_SIZE_CODES, IMAGE_SIZE_REGISTER, type ImageSize, VC0706_CMD } from './vc0706-codec.ts';
import { commandName, encodeReply, imageSizeOf, takeCommand } from './vc0706-codec.ts';

type SerialPortOptions = ConstructorParameters<typeof SerialPort>[0];

// Kept here too: the tests and benches have always taken it from the sim.
export { jpegDimensions };

/**
 * silent: executes commands, sends nothing (a broken TX wire).
 * garbage: sends random bytes instead of every reply.
 * truncate: the next frozen frame is the JPEG cut before its FF D9.
 * slow: sends at slowBaud, far below the line's rate (a camera that stalls).
 */
export type SimFault = 'silent' | 'garbage' | 'truncate' | 'slow';

export interface SimVc0706Options {
  /** The device end of the serial pair. */
  path: string;
  /** JPEGs to serve as frames, in turn; grouped by their own dimensions for the image size register. */
  images?: Buffer[];
  /** Or a folder of .jpg/.jpeg files, read at start(). */
  dir?: string;
  /** The rate it talks at from start(). Default 38400. */
  baudRate?: number;
  /** The power-on rate it comes back at after RESET or a power cycle. Default 38400. */
  bootBaud?: number;
  /** Serial number it answers to. Default 0. */
  serial?: number;
  /** Image size register at start. Default 320x240 (the SC03MPD manual's default). */
  imageSize?: ImageSize;
  /** Send at the pace of a real UART at the current rate (10 bits a byte), for benches. Default false: as fast as the pty takes it. */
  pace?: boolean;
  /** The rate of the 'slow' fault. Default 1200. */
  slowBaud?: number;
  /** Reboot time after RESET or power-on before the boot text. Default 200 ms. */
  bootMs?: number;
  /** The driver's end of the pair: while its tty speed differs from ours, both directions are noise. */
  peer?: string;
  log?: Logger;
}

export interface SimCommand {
  cmd: number;
  name: string;
  args: Buffer;
  /** performance.now() when it was parsed. */
  at: number;
}

/** The boot text of a VC0706 after RESET (as reported in Adafruit-VC0706-Serial-Camera-Library#32). */
export const BOOT_TEXT = 'VC0703 1.00\r\nCtrl infr exist\r\nUser-defined sensor\r\n525\r\nInit end\r\n';
export const SIM_VERSION = 'VC0703 1.00';

export class SimVc0706 {
  private readonly o: SimVc0706Options;
  private port: SerialPort | null = null;
  private baud: number;
  private readonly serial: number;
  /** The size frames have now; the register may hold another until the next boot. */
  private size: ImageSize;
  private faultMode: SimFault | null = null;
  private readonly frames = new SimFrames();
  private readonly uart: SimUart;
  private booting = false;
  private bootTimer: NodeJS.Timeout | null = null;
  /** Resolves the promise of the boot under way (also when it is cut short). */
  private bootDone: (() => void) | null = null;
  private powered = true;
  /** Bumped at every power cut: work begun before it (a reply, a SET_PORT) must not finish after it. */
  private epoch = 0;
  private rx: Buffer = Buffer.alloc(0);
  private rxAt = 0;
  private inbox: Buffer[] = [];
  private processing: Promise<void> | null = null;
  /** Whether the driver's end ran at our rate when the command being answered arrived. */
  private lineOk = true;
  private stopped = false;
  private readonly registers = new Map<string, number>();
  /** Every command parsed, oldest first (the last 1000). */
  readonly commands: SimCommand[] = [];

  constructor(opts: SimVc0706Options) {
    this.o = opts;
    this.baud = opts.baudRate ?? 38400;
    this.serial = opts.serial ?? 0;
    this.size = opts.imageSize ?? '320x240';
    this.registers.set(regKey(IMAGE_SIZE_REGISTER), IMAGE_SIZE_CODES[this.size]);
    this.uart = new SimUart(() => this.port, opts.path, opts.log);
  }

  /** Open the device end. Throws if it cannot be opened or there is no image to serve. */
  async start(): Promise<void> {
    await this.frames.load(`SimVc0706 ${this.o.path}`, this.o.images, this.o.dir);
    const port = new SerialPort({ path: this.o.path, baudRate: this.baud, autoOpen: false, binding: HANGUP_AWARE_BINDING } as SerialPortOptions);
    port.on('error', (err) => this.o.log?.debug({ event: 'camsim.port.error', path: this.o.path, err: err.message }));
    port.on('data', (d: Buffer) => this.onData(d));
    await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
    this.port = port;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelBoot();
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((resolve) => port.close(() => resolve()));
    await this.processing;
  }

  setFault(fault: SimFault | null): void {
    this.faultMode = fault;
    this.o.log?.info({ event: 'camsim.fault', path: this.o.path, fault });
  }

  get fault(): SimFault | null {
    return this.faultMode;
  }

  get baudRate(): number {
    return this.baud;
  }

  /** The size of the frames it serves now (applied at the last boot). */
  get imageSize(): ImageSize {
    return this.size;
  }

  /** The image size register: what READ_DATA returns, and what the next RESET or power-on applies. */
  get imageSizeRegister(): ImageSize {
    return this.registerSize() ?? this.size;
  }

  get poweredOn(): boolean {
    return this.powered;
  }

  /**
   * Cut the camera's power; the serial port stays open, as with a camera on
   * its own supply. Until powerOn() it hears nothing and says nothing (a reply
   * under way stops mid-byte-stream), and it forgets SET_PORT and any frozen
   * frame. The EEPROM (the image size register) is kept.
   */
  powerOff(): void {
    if (!this.powered) return;
    this.powered = false;
    this.epoch++;
    this.cancelBoot();
    this.booting = false;
    this.frames.resume();
    this.rx = Buffer.alloc(0);
    this.inbox = [];
    this.o.log?.info({ event: 'camsim.power', path: this.o.path, on: false });
  }

  /**
   * Restore power: it boots at its power-on rate (bootBaud) with the image
   * size from its register, deaf for bootMs, then prints its boot text.
   * Resolves once the boot text is out (or the boot was cut short).
   */
  powerOn(): Promise<void> {
    if (this.powered || this.stopped) return Promise.resolve();
    this.powered = true;
    this.o.log?.info({ event: 'camsim.power', path: this.o.path, on: true });
    return this.boot();
  }

  /** powerOff(), `offMs` without power, powerOn(); resolves once it has booted. */
  async powerCycle(offMs = 0): Promise<void> {
    this.powerOff();
    if (offMs > 0) await sleep(offMs);
    await this.powerOn();
  }

  /** Frozen on a frame (after FBUF_CTRL stop, until resume). */
  get frozen(): boolean {
    return this.frames.frozen;
  }

  /** The frame served by the last freeze (after any truncation). */
  get lastFrame(): Buffer | null {
    return this.frames.last;
  }

  /** Commands with this code received so far. */
  count(cmd: number, arg0?: number): number {
    return this.commands.filter((c) => c.cmd === cmd && (arg0 === undefined || c.args[0] === arg0)).length;
  }

  // ─────────────── receiving ───────────────

  private onData(d: Buffer): void {
    if (this.stopped || !this.powered) return; // no power: the bytes fall on a dead UART
    this.inbox.push(d);
    this.kick();
  }

  private kick(): void {
    if (this.processing || this.stopped) return;
    this.processing = this.process().finally(() => {
      this.processing = null;
      if (this.inbox.length > 0) this.kick();
    });
  }

  /** One command at a time, like the module's MCU: the next is parsed when the last reply is out. */
  private async process(): Promise<void> {
    while (this.inbox.length > 0 && !this.stopped) {
      const chunk = Buffer.concat(this.inbox.splice(0));
      if (this.booting || !this.powered) continue; // rebooting or off: not listening
      const epoch = this.epoch;
      this.lineOk = await this.speedsMatch();
      if (epoch !== this.epoch || !this.powered) continue; // power cut meanwhile
      if (!this.lineOk) {
        this.rx = Buffer.alloc(0); // heard as noise at the wrong rate
        continue;
      }
      const now = performance.now();
      // A half command followed by a pause is line noise, not the start of one.
      if (this.rx.length > 0 && now - this.rxAt > 100) this.rx = this.rx.subarray(1);
      this.rx = Buffer.concat([this.rx, chunk]);
      this.rxAt = now;
      for (let c = this.nextCommand(); c && !this.stopped && this.powered && !this.booting; c = this.nextCommand()) {
        this.commands.push(c);
        if (this.commands.length > 1000) this.commands.shift();
        if (this.o.pace) await sleep(this.wireMs(4 + c.args.length));
        try {
          await this.handle(c);
        } catch (err) {
          this.o.log?.warn({ event: 'camsim.handle.failed', command: c.name, err: (err as Error).message });
        }
      }
    }
  }

  private nextCommand(): SimCommand | null {
    const { command, rest } = takeCommand(this.rx, this.serial);
    this.rx = rest;
    return command && { ...command, name: commandName(command.cmd), at: performance.now() };
  }

  // ─────────────── the camera ───────────────

  private async handle(c: SimCommand): Promise<void> {
    const a = c.args;
    const epoch = this.epoch;
    switch (c.cmd) {
      case VC0706_CMD.GEN_VERSION:
        return this.reply(c.cmd, 0, Buffer.from(SIM_VERSION, 'latin1'));
      case VC0706_CMD.RESET:
        await this.reply(c.cmd, 0);
        if (epoch === this.epoch) void this.boot();
        return;
      case VC0706_CMD.SET_PORT: {
        if (a.length !== 3 || a[0] !== 0x01) return this.reply(c.cmd, 2);
        const divisor = ((a[1] ?? 0) << 8) | (a[2] ?? 0);
        const rate = [...BAUD_DIVISORS].find(([, d]) => d === divisor)?.[0];
        if (rate === undefined) return this.reply(c.cmd, 3);
        await this.reply(c.cmd, 0); // acknowledged at the old rate, then switched
        if (epoch === this.epoch) this.baud = rate; // unless the power went meanwhile: it boots at bootBaud
        return;
      }
      case VC0706_CMD.WRITE_DATA: {
        // device type, count, address (2), data (count)
        const count = a[1] ?? 0;
        if (a.length !== 4 + count || count === 0) return this.reply(c.cmd, 2);
        const addr = ((a[2] ?? 0) << 8) | (a[3] ?? 0);
        if (addr === IMAGE_SIZE_REGISTER) {
          const code = a[4] ?? -1;
          const size = imageSizeOf(code);
          if (!size || count !== 1) return this.reply(c.cmd, 3);
          // Only the register changes: the part applies a new size at its
          // next reset or power-on; until then frames keep the old size.
        }
        for (let k = 0; k < count; k++) this.registers.set(regKey(addr + k), a[4 + k] ?? 0);
        return this.reply(c.cmd, 0);
      }
      case VC0706_CMD.READ_DATA: {
        const count = a[1] ?? 0;
        if (a.length !== 4 || count === 0 || count > 16) return this.reply(c.cmd, 2);
        const addr = ((a[2] ?? 0) << 8) | (a[3] ?? 0);
        const data = Buffer.alloc(count);
        for (let k = 0; k < count; k++) data[k] = this.registers.get(regKey(addr + k)) ?? 0;
        return this.reply(c.cmd, 0, data);
      }
      case VC0706_CMD.FBUF_CTRL: {
        if (a.length !== 1) return this.reply(c.cmd, 2);
        const ctrl = a[0];
        if (ctrl === FBUF_CTRL.STOP_CURRENT || ctrl === FBUF_CTRL.STOP_NEXT) {
          // Already frozen: it stays on the same frame, as the module does.
          if (!this.frames.frozen) this.freeze();
        } else if (ctrl === FBUF_CTRL.STEP) {
          this.freeze();
        } else if (ctrl === FBUF_CTRL.RESUME) {
          this.frames.resume();
        } else {
          return this.reply(c.cmd, 3);
        }
        return this.reply(c.cmd, 0);
      }
      case VC0706_CMD.GET_FBUF_LEN: {
        if (a.length !== 1) return this.reply(c.cmd, 2);
        const len = Buffer.alloc(4);
        len.writeUInt32BE(this.frames.current(this.size).length);
        return this.reply(c.cmd, 0, len);
      }
      case VC0706_CMD.READ_FBUF:
        return this.readFbuf(c.cmd, a);
      case VC0706_CMD.DOWNSIZE_CTRL:
        if (a.length !== 1) return this.reply(c.cmd, 2);
        this.registers.set('downsize', a[0] ?? 0);
        return this.reply(c.cmd, 0);
      case VC0706_CMD.DOWNSIZE_STATUS:
        return this.reply(c.cmd, 0, Buffer.from([this.registers.get('downsize') ?? 0]));
      default:
        return this.reply(c.cmd, 3);
    }
  }

  private async readFbuf(cmd: number, a: Buffer): Promise<void> {
    if (a.length !== 12) return this.reply(cmd, 2);
    const addr = a.readUInt32BE(2);
    const len = a.readUInt32BE(6);
    const pauseMs = a.readUInt16BE(10) / 100; // 0.01 ms units
    const frame = this.frames.current(this.size);
    const data = Buffer.alloc(len); // past the end of the frame: zeros
    if (addr < frame.length) frame.copy(data, 0, addr, Math.min(frame.length, addr + len));
    const head = this.frameOf(cmd, 0);
    await this.transmit([head, pauseMs, data, pauseMs, head]);
  }

  private freeze(): void {
    this.frames.freeze(this.size, this.faultMode === 'truncate');
  }

  /**
   * RESET or power-on: deaf for bootMs, unfrozen, at the power-on rate (a
   * SET_PORT is forgotten), frames at the size in the register; then the boot
   * text, after which it listens again. Resolves when that is done or cut short.
   */
  private boot(): Promise<void> {
    this.cancelBoot();
    const epoch = this.epoch;
    this.booting = true;
    this.frames.resume();
    this.rx = Buffer.alloc(0);
    this.baud = this.o.bootBaud ?? 38400;
    return new Promise<void>((resolve) => {
      this.bootDone = resolve;
      this.bootTimer = setTimeout(() => {
        this.bootTimer = null;
        if (epoch !== this.epoch || this.stopped) return this.finishBoot(resolve);
        this.size = this.registerSize() ?? this.size;
        void this.transmit([Buffer.from(BOOT_TEXT, 'latin1')], true).finally(() => {
          if (epoch === this.epoch) this.booting = false;
          this.finishBoot(resolve);
        });
      }, this.o.bootMs ?? 200);
    });
  }

  private finishBoot(resolve: () => void): void {
    if (this.bootDone === resolve) this.bootDone = null;
    resolve();
  }

  /** Stop a boot under way (power cut, stop); whoever waits for it is let go. */
  private cancelBoot(): void {
    if (this.bootTimer) clearTimeout(this.bootTimer);
    this.bootTimer = null;
    const done = this.bootDone;
    this.bootDone = null;
    done?.();
  }

  private registerSize(): ImageSize | undefined {
    return imageSizeOf(this.registers.get(regKey(IMAGE_SIZE_REGISTER)) ?? -1);
  }

  // ─────────────── sending ───────────────

  private frameOf(cmd: number, status: number, data?: Buffer): Buffer {
    return encodeReply(this.serial, cmd, status, data);
  }

  private reply(cmd: number, status: number, data?: Buffer): Promise<void> {
    return this.transmit([this.frameOf(cmd, status, data)]);
  }

  /** Parts are bytes or pauses (ms): see SimUart. Nothing while silent, stopped or off. */
  private async transmit(parts: Array<Buffer | number>, unprompted = false): Promise<void> {
    if (this.faultMode === 'silent' || this.stopped || !this.powered) return;
    const epoch = this.epoch;
    // A reply goes out at the rate its command came in at; only unprompted text (boot) needs a fresh look.
    const noisy = this.faultMode === 'garbage' || !(unprompted ? await this.speedsMatch() : this.lineOk);
    await this.uart.transmit(parts, { noisy, rate: () => this.rate(), live: () => !this.stopped && epoch === this.epoch && this.powered });
  }

  /** Pace: the slow fault's crawl, the line's rate when asked to pace, else 0 (as fast as the pty takes it). */
  private rate(): number {
    if (this.faultMode === 'slow') return this.o.slowBaud ?? 1200;
    return this.o.pace ? this.baud : 0;
  }

  private wireMs(bytes: number): number {
    return (bytes * 10 * 1000) / this.baud;
  }

  /** Does the driver's end run at our rate? Unknown (no peer, or stty failed) counts as yes. */
  private speedsMatch(): Promise<boolean> {
    return speedsMatch(this.o.peer, this.baud);
  }
}

function regKey(addr: number): string {
  return `0x${addr.toString(16)}`;
}
