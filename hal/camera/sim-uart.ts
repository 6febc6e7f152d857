// The sending side of a simulated serial camera: bytes out at the pace of a
// real UART when asked (10 bits a byte at the current rate, or the crawl of
// a stalling camera), turned to noise when the two ends disagree on the rate
// or the camera is failing, and never a byte of a reply the power was cut
// under. What to send, and when, is the simulator's (sim.ts).

import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { SerialPort } from 'serialport';
import { VC0706_REPLY } from './vc0706-codec.ts';

export interface SimSend {
  /** Send noise of the same length instead of the bytes. */
  noisy: boolean;
  /** Bytes a second × 10 to pace at now, or 0 for as fast as the line takes them; looked at again every slice. */
  rate: () => number;
  /** False once the bytes must stop: the sim stopped or its power was cut since the reply began. */
  live: () => boolean;
}

export class SimUart {
  constructor(
    private readonly port: () => SerialPort | null,
    private readonly path: string,
    private readonly log?: Logger,
  ) {}

  /** Parts are bytes or pauses (ms). Paced when `rate()` is not 0; pauses only count when paced. */
  async transmit(parts: Array<Buffer | number>, s: SimSend): Promise<void> {
    const bufs = parts.map((p) => (typeof p === 'number' ? p : s.noisy ? noise(p.length) : p));
    if (s.rate() === 0) {
      await this.write(Buffer.concat(bufs.filter((p): p is Buffer => typeof p !== 'number')), s.live);
      return;
    }
    for (const p of bufs) {
      if (!s.live()) return;
      if (typeof p === 'number') await sleep(p);
      else await this.paced(p, s);
    }
  }

  /** Write in ~10 ms slices on a schedule of 10 bits a byte; the rate is looked at again every slice (a fault may clear). */
  private async paced(buf: Buffer, s: SimSend): Promise<void> {
    let rate = s.rate();
    let t0 = performance.now();
    let sent = 0;
    for (let i = 0; i < buf.length && s.live(); ) {
      const now = s.rate();
      if (now !== rate) {
        rate = now;
        t0 = performance.now();
        sent = 0;
      }
      if (rate === 0) {
        await this.write(buf.subarray(i), s.live);
        return;
      }
      // 10 ms of bytes, or what is left: a 5-byte reply takes 5 bytes' time, not a slice's.
      const n = Math.min(Math.max(1, Math.floor(rate / 1000)), buf.length - i);
      await this.write(buf.subarray(i, i + n), s.live);
      i += n;
      sent += n;
      const wait = t0 + (sent * 10 * 1000) / rate - performance.now();
      if (wait > 0) await sleep(wait);
    }
  }

  /** Write unless the bytes must stop (the bytes of a cut reply are never sent). */
  private write(buf: Buffer, live: () => boolean): Promise<void> {
    const port = this.port();
    if (!port?.isOpen || buf.length === 0 || !live()) return Promise.resolve();
    return new Promise((resolve) =>
      port.write(buf, (err) => {
        if (err) this.log?.debug({ event: 'camsim.write.failed', path: this.path, err: err.message });
        resolve();
      }),
    );
  }
}

/** Does the driver's end (`peer`) run at `baud`? Unknown (no peer, or stty failed) counts as yes. */
export function speedsMatch(peer: string | undefined, baud: number): Promise<boolean> {
  if (!peer) return Promise.resolve(true);
  return new Promise((resolve) => execFile('stty', ['-F', peer, 'speed'], (err, out) => resolve(err ? true : Number(out.trim()) === baud)));
}

/** What a reply looks like to a UART at the wrong speed, or from a failing camera: bytes with no reply sign in them. */
function noise(n: number): Buffer {
  const b = randomBytes(n);
  for (let i = 0; i < n; i++) if (b[i] === VC0706_REPLY) b[i] = 0x67;
  return b;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
