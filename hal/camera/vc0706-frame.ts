// Reading a frozen VC0706 frame over the serial line: the whole JPEG in
// chunks (each with its timeout and retries, all of them within a deadline),
// or just enough of its head to learn its dimensions. The freeze and the
// resume around it are the driver's (vc0706.ts); the single READ_FBUF is
// the transport's.

import { performance } from 'node:perf_hooks';
import { jpegDimensions, jpegEnd } from './jpeg.ts';
import { CameraError } from './types.ts';
import type { Vc0706Link } from './vc0706-transport.ts';
import { hex, wireMs } from './vc0706-codec.ts';

/** How much of a frame to read looking for its dimensions, and in what steps (the header is in the first few hundred bytes). */
export const FRAME_HEAD_MAX = 4096;
const FRAME_HEAD_CHUNK = 512;
/** Bytes a READ_FBUF costs beyond the data, for timeouts: command, header, footer, and slack. */
const CHUNK_WIRE_EXTRA = 26;

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

/**
 * Read the frozen frame of `length` bytes and check it is a whole JPEG
 * (FF D8 … FF D9, zero padding cut off). `started`: when the snapshot began,
 * for the deadline and the figures.
 */
export async function readFrame(
  link: Vc0706Link,
  length: number,
  opts: SnapshotOptions & { chunkSize: number },
  started: number,
): Promise<{ jpeg: Buffer; stats: SnapshotStats }> {
  const retries = opts.chunkRetries ?? 2;
  const delay = opts.transferDelay ?? 10;
  const maxFrame = opts.maxFrameBytes ?? 1 << 20;
  if (length === 0) throw link.error('truncated', 'GET_FBUF_LEN', 'frame length 0: the frame buffer holds no picture; check the camera (lens cap, sensor) and try again');
  if (length > maxFrame) {
    throw link.error('garbled', 'GET_FBUF_LEN', `frame length ${length} is beyond ${maxFrame} bytes, not a VC0706 picture; check the baud rate and the line`);
  }
  const baud = link.baudRate;
  const chunks = Math.ceil(length / opts.chunkSize);
  const deadline = opts.deadlineMs !== undefined ? started + opts.deadlineMs : performance.now() + 2 * wireMs(length + chunks * CHUNK_WIRE_EXTRA, baud) + 5000;
  const image = Buffer.alloc(length);
  let retried = 0;
  for (let addr = 0; addr < length; addr += opts.chunkSize) {
    const n = Math.min(opts.chunkSize, length - addr);
    const chunkTimeout = opts.chunkTimeoutMs ?? link.timeoutMs + 2 * wireMs(n + CHUNK_WIRE_EXTRA, baud) + (2 * delay) / 100;
    let first: CameraError | null = null;
    for (let attempt = 0; ; attempt++) {
      try {
        (await link.readChunk(addr, n, delay, chunkTimeout, deadline, length)).copy(image, addr);
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
        link.log?.warn({ event: 'camera.chunk.retry', path: link.path, addr, bytes: n, attempt: attempt + 1, err: err.message });
        await link.drainQuiet();
      }
    }
  }
  if (image[0] !== 0xff || image[1] !== 0xd8) {
    throw link.error('garbled', 'READ_FBUF', `the frame does not start with FF D8 but ${hex(image.subarray(0, 4))}: not a JPEG; check that this is a VC0706 JPEG camera`);
  }
  const end = jpegEnd(image);
  if (end === null) {
    throw link.error(
      'truncated',
      'READ_FBUF',
      `the ${length}-byte frame ends with ${hex(image.subarray(Math.max(0, length - 4)))}, not FF D9: the JPEG is cut short; take another snapshot, or lower the image size`,
    );
  }
  const stats = { bytes: end, ms: performance.now() - started, chunks, retries: retried, baudRate: baud, floorMs: wireMs(end, baud) };
  return { jpeg: end === length ? image : image.subarray(0, end), stats };
}

/**
 * Read only as much of the frozen frame as it takes to find its JPEG frame
 * header: the dimensions of what the camera serves now, in a few hundred
 * bytes rather than a whole picture. Null when no header shows.
 */
export async function readFrameDimensions(link: Vc0706Link, length: number): Promise<{ width: number; height: number } | null> {
  let head = Buffer.alloc(0);
  for (let addr = 0; addr < Math.min(length, FRAME_HEAD_MAX); addr += FRAME_HEAD_CHUNK) {
    const n = Math.min(FRAME_HEAD_CHUNK, length - addr);
    const timeout = link.timeoutMs + 2 * wireMs(n + CHUNK_WIRE_EXTRA, link.baudRate);
    head = Buffer.concat([head, await link.readChunk(addr, n, 10, timeout, performance.now() + timeout, length)]);
    const dims = jpegDimensions(head);
    if (dims) return dims;
  }
  return null;
}
