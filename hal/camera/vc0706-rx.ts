// The bytes a serial camera sent, waited on with a deadline, and the small
// timing helpers the line uses. Kept apart from the transport so the waiting
// rule is in one place: one waiter at a time (commands never overlap), woken
// by every byte, failed at once when the port goes away.

import { performance } from 'node:perf_hooks';

/** Bytes from the camera, and one waiter at a time (commands never overlap). */
export class RxBuffer {
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

export class TimeoutError extends Error {}
export class PortGone extends Error {}

/** `p`, or a TimeoutError after `ms`. */
export function bounded<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(`timed out after ${Math.round(ms)} ms`)), Math.max(0, ms));
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));
