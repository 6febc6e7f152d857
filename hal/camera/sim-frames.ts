// The frame buffer of a simulated camera and the pictures behind it: real
// JPEG files, taken in turn, grouped by their own dimensions so that the
// image size the camera is set to decides which ones come out (as on the
// part, where the sensor's output is scaled to the register's size). A
// frozen frame stays the same until resumed, as on the module.

import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { jpegDimensions } from './jpeg.ts';

export class SimFrames {
  private frames: Buffer[] = [];
  private nextIndex = 0;
  private frozenFrame: Buffer | null = null;
  /** The frame served by the last freeze (after any truncation). */
  last: Buffer | null = null;

  /**
   * Load `images` and the .jpg/.jpeg files of `dir` (in name order). Throws,
   * naming `who`, if there is none or one is no JPEG with a frame header.
   */
  async load(who: string, images: readonly Buffer[] = [], dir?: string): Promise<void> {
    const all = [...images];
    if (dir) {
      const names = (await readdir(dir)).filter((n) => /\.jpe?g$/i.test(n)).sort();
      for (const n of names) all.push(await readFile(join(dir, n)));
    }
    if (all.length === 0) throw new Error(`${who}: no JPEG to serve; give images or a dir with .jpg files`);
    for (const [i, img] of all.entries()) {
      if (!jpegDimensions(img)) throw new Error(`${who}: image ${i} is not a JPEG with a frame header`);
    }
    this.frames = all;
  }

  /** The frame a freeze would capture now at `size` ("320x240"): the next image of that size (any image if none has it). */
  peek(size: string): Buffer {
    const [w, h] = size.split('x').map(Number);
    const sized = this.frames.filter((f) => {
      const d = jpegDimensions(f);
      return d?.width === w && d?.height === h;
    });
    const pool = sized.length > 0 ? sized : this.frames;
    return pool[this.nextIndex % pool.length] as Buffer;
  }

  get frozen(): boolean {
    return this.frozenFrame !== null;
  }

  /**
   * Freeze the frame peek() shows (the next freeze gets the one after it).
   * `truncate`: cut it well inside the entropy-coded data, with no FF D9.
   */
  freeze(size: string, truncate: boolean): void {
    let frame = this.peek(size);
    this.nextIndex++;
    if (truncate) frame = frame.subarray(0, Math.max(4, Math.floor(frame.length * 0.6)));
    this.frozenFrame = frame;
    this.last = frame;
  }

  resume(): void {
    this.frozenFrame = null;
  }

  /** What READ_FBUF reads: the frozen frame; a buffer that is not frozen gives whatever is being captured. */
  current(size: string): Buffer {
    return this.frozenFrame ?? this.peek(size);
  }
}
