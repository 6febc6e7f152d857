// A receiver played back from a capture: writes a corpus log's sentences to
// one end of a serial pair at the pace a real UART at `baudRate` would (10
// bits per byte), reopening its end when the pair comes back after socat was
// killed. With `peer` set it also behaves like a receiver on a wire read at
// the wrong speed: while the reader's end of the pair (peer) is not set to
// baudRate, what arrives is line noise, as on a real UART.

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { SerialPort } from 'serialport';

export interface NmeaStreamerOptions {
  path: string;
  /** Lines without their line ending. */
  lines: string[];
  baudRate: number;
  /** Start again from the first line at the end (default true). */
  loop?: boolean;
  /** The reader's tty: when its speed differs from baudRate, bytes arrive garbled. */
  peer?: string;
}

export class NmeaStreamer {
  private port: SerialPort | null = null;
  private stopped = false;
  private loopDone: Promise<void> | null = null;
  private peerSpeed: number | null = null;
  private peerTimer: NodeJS.Timeout | null = null;
  /** Lines written as themselves, and lines written as noise. */
  sent = 0;
  garbled = 0;

  constructor(private readonly o: NmeaStreamerOptions) {}

  async start(): Promise<void> {
    if (this.o.peer) {
      await this.readPeerSpeed();
      this.peerTimer = setInterval(() => void this.readPeerSpeed(), 100);
    }
    this.loopDone = this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.peerTimer) clearInterval(this.peerTimer);
    await this.loopDone;
    const port = this.port;
    this.port = null;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
  }

  private readPeerSpeed(): Promise<void> {
    const peer = this.o.peer;
    if (!peer) return Promise.resolve();
    return new Promise((resolve) =>
      execFile('stty', ['-F', peer, 'speed'], (err, out) => {
        if (!err) this.peerSpeed = Number(out.trim());
        resolve();
      }),
    );
  }

  private async ensureOpen(): Promise<SerialPort | null> {
    while (!this.stopped) {
      if (this.port?.isOpen) return this.port;
      const port = new SerialPort({ path: this.o.path, baudRate: this.o.baudRate, autoOpen: false });
      port.on('error', () => {});
      const ok = await new Promise<boolean>((r) => port.open((err) => r(!err)));
      if (ok) {
        this.port = port;
        return port;
      }
      await sleep(50);
    }
    return null;
  }

  private async loop(): Promise<void> {
    let i = 0;
    while (!this.stopped) {
      const line = this.o.lines[i];
      if (line === undefined) {
        if (this.o.loop === false) return;
        i = 0;
        continue;
      }
      const port = await this.ensureOpen();
      if (!port) return;
      const bytes = Buffer.from(`${line}\r\n`, 'latin1');
      const noisy = this.o.peer !== undefined && this.peerSpeed !== this.o.baudRate;
      const out = noisy ? noise(bytes.length) : bytes;
      const written = await new Promise<boolean>((r) => port.write(out, (err) => r(!err)));
      if (written) {
        if (noisy) this.garbled++;
        else this.sent++;
        i++;
      } else {
        await sleep(50); // the pair went away: reopen and write this line again
      }
      await sleep((bytes.length * 10 * 1000) / this.o.baudRate);
    }
  }
}

/** What a UART at the wrong speed makes of a line: bytes with no NMEA in them, newlines by chance. */
function noise(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < n; i++) if (b[i] === 0x24 /* $ */) b[i] = 0xa4;
  return b;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
