// What the camera drivers need to know about a JPEG without decoding it:
// where it ends, whether it is whole, and its dimensions. Shared by every
// driver and the simulator; nothing here knows where the bytes came from.

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

/**
 * The length of the whole JPEG at the start of `buf` (SOI to EOI), or null
 * while it is not all there. Walks the segments and the entropy-coded data
 * rather than looking for the last FF D9, so a picture arriving on a pipe is
 * known to be complete the moment its end marker is in: inside a scan, a
 * 0xFF data byte is always followed by 0x00 (byte stuffing), so FF D9 there
 * is the end. Throws on bytes that are no JPEG.
 */
export function jpegLength(buf: Buffer): number | null {
  if (buf.length < 2) return null;
  if (buf[0] !== 0xff || buf[1] !== 0xd8) throw new Error(`not a JPEG: starts with ${buf.subarray(0, 4).toString('hex')}, not ffd8`);
  let i = 2;
  for (;;) {
    if (i + 2 > buf.length) return null;
    if (buf[i] !== 0xff) throw new Error(`not a JPEG: byte ${buf[i]} at ${i} where a marker belongs`);
    const marker = buf[i + 1] ?? 0;
    if (marker === 0xff) {
      i++; // fill byte
      continue;
    }
    if (marker === 0xd9) return i + 2;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      i += 2;
      continue;
    }
    if (i + 4 > buf.length) return null;
    i += 2 + buf.readUInt16BE(i + 2);
    if (marker !== 0xda) continue;
    // Entropy-coded data up to the next marker that is neither stuffing (FF 00) nor a restart (FF D0..D7).
    for (;;) {
      const ff = buf.indexOf(0xff, i);
      if (ff === -1 || ff + 1 >= buf.length) return null;
      const next = buf[ff + 1] ?? 0;
      if (next === 0x00 || (next >= 0xd0 && next <= 0xd7) || next === 0xff) {
        i = next === 0xff ? ff + 1 : ff + 2;
        continue;
      }
      i = ff;
      break;
    }
  }
}
