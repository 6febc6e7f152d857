// Finding and setting up a VC0706 on its serial line: looking for it at
// each rate it knows, moving it (SET_PORT) and the port together, the
// reboot after RESET, which brings it back at its power-on rate, and its
// image size register. A module may be left at any rate by SET_PORT,
// another tool or its EEPROM, and one that lost power behind a live port is
// back at its power-on rate: the driver (vc0706.ts) calls these when it
// connects and when a command got no valid answer.

import { performance } from 'node:perf_hooks';
import { CameraError } from './types.ts';
import type { Vc0706Link } from './vc0706-transport.ts';
import { FRAME_HEAD_MAX } from './vc0706-frame.ts';
import { BAUD_DIVISORS, BOOT_DONE, IMAGE_SIZE_ARGS, IMAGE_SIZE_CODES, IMAGE_SIZES, type ImageSize, VC0706_BAUD_RATES, VC0706_CMD } from './vc0706-codec.ts';
import { hex, hex2, imageSizeOf } from './vc0706-codec.ts';

/**
 * GEN_VERSION at each rate in turn until one answers; the port is left
 * there. `why` says what sent us looking, for the log. Throws a CameraError
 * naming every rate tried, and what to check, when none answers.
 */
export async function findCamera(link: Vc0706Link, order: readonly number[], why: string): Promise<{ baudRate: number; version: string }> {
  const from = link.baudRate;
  const tried: string[] = [];
  const triedRates: number[] = [];
  let noise = false;
  for (const rate of order) {
    if (link.baudRate !== rate) await link.setPortBaud(rate);
    await link.drainQuiet();
    try {
      const version = (await link.exchange(VC0706_CMD.GEN_VERSION, [])).toString('latin1').trim();
      if (why !== 'recover' || rate !== from) {
        link.log?.info({ event: 'camera.found', path: link.path, baudRate: rate, version, tried: [...triedRates, rate], why }, `camera answers at ${rate} baud`);
      }
      return { baudRate: rate, version };
    } catch (err) {
      if (!(err instanceof CameraError) || err.kind === 'io') throw err;
      noise ||= err.detail.received !== undefined;
      triedRates.push(rate);
      tried.push(`${rate} (${err.detail.received !== undefined ? 'bytes, no reply' : 'silent'})`);
    }
  }
  link.dirty = true;
  throw link.error(
    noise ? 'garbled' : 'timeout',
    'find',
    `no answer to GEN_VERSION at any VC0706 rate; tried ${tried.join(', ')} baud, ${Math.round(link.timeoutMs)} ms each; ` +
      `check the camera's power (5 V, about 100 mA), that its TX goes to the adapter's RX and its RX to TX, the port in the config, and its serial number (${link.serial})`,
  );
}

/** SET_PORT and follow it with the port; check the camera answers at the new rate. */
export async function switchBaud(link: Vc0706Link, baudRate: number): Promise<void> {
  const divisor = BAUD_DIVISORS.get(baudRate);
  if (divisor === undefined) throw new RangeError(`camera ${link.path}: baud rate ${baudRate} is not one the VC0706 knows (${VC0706_BAUD_RATES.join(', ')})`);
  const from = link.baudRate;
  let acked = true;
  try {
    await link.exchange(VC0706_CMD.SET_PORT, [0x01, divisor >> 8, divisor & 0xff]);
  } catch (err) {
    // A refusal (error status) stands; a lost ack may have come at the new rate already: ask there.
    if (!(err instanceof CameraError) || err.kind === 'io' || err.detail.status !== undefined) throw err;
    acked = false;
  }
  await link.setPortBaud(baudRate);
  try {
    await link.exchange(VC0706_CMD.GEN_VERSION, []);
  } catch (err) {
    if (err instanceof CameraError && err.kind === 'io') throw err;
    await link.setPortBaud(from);
    const stillOld = await link.answers();
    throw link.error(
      'garbled',
      'SET_PORT',
      `camera does not answer at ${baudRate} baud after SET_PORT (${acked ? 'acknowledged' : 'not acknowledged'}); ` +
        (stillOld ? `it still answers at ${from} baud, the port is back at ${from}` : `nor at ${from} baud; check the wiring, or reset the camera`),
      { cause: err },
    );
  }
  link.log?.info({ event: 'camera.baud.changed', path: link.path, from, to: baudRate });
}

/**
 * RESET, then follow the camera to `bootBaud`, where it reboots and prints
 * its boot text, and wait for "Init end" (at most `timeoutMs`). A module
 * that prints nothing is asked at bootBaud and at the rate it was at.
 * `onResetSent` runs once the RESET is acknowledged.
 */
export async function resetCamera(link: Vc0706Link, bootBaud: number, timeoutMs: number, onResetSent: () => void): Promise<void> {
  const from = link.baudRate;
  await link.exchange(VC0706_CMD.RESET, []);
  onResetSent(); // it reboots now, whatever follows: a frozen frame is gone
  if (link.baudRate !== bootBaud) await link.setPortBaud(bootBaud);
  const boot = await link.waitForText('RESET', BOOT_DONE, performance.now() + timeoutMs);
  if (boot.found) {
    link.log?.info({ event: 'camera.reset', path: link.path, baudRate: link.baudRate });
    return;
  }
  // No boot text: maybe this module keeps the rate over a reset, or prints nothing.
  const rates = [...new Set([bootBaud, from])];
  for (const rate of rates) {
    await link.setPortBaud(rate);
    if (await link.answers()) {
      link.log?.warn({ event: 'camera.reset.no-boot-text', path: link.path, baudRate: rate }, `no "${BOOT_DONE}" after reset, but the camera answers at ${rate} baud`);
      return;
    }
  }
  link.dirty = true;
  throw link.error(
    'timeout',
    'RESET',
    `no "${BOOT_DONE}" within ${timeoutMs} ms of the reset, and no answer at ${rates.join(' or ')} baud` +
      (boot.seen.length ? ` (got ${boot.seen.length} bytes: ${hex(boot.seen.subarray(0, 24))})` : '') +
      `; check the camera's power supply (it needs ~100 mA at 5 V) and its TX wire`,
  );
}

// ─────────────── image size ───────────────

/** The image size register's code (READ_DATA). */
export async function readImageSizeCode(link: Vc0706Link): Promise<number> {
  return (await link.exchange(VC0706_CMD.READ_DATA, IMAGE_SIZE_ARGS, 1))[0] ?? -1;
}

/** The image size the register holds; 'garbled' for a code the part does not know. */
export async function readImageSize(link: Vc0706Link): Promise<ImageSize> {
  const code = await readImageSizeCode(link);
  const size = imageSizeOf(code);
  if (size) return size;
  throw link.error('garbled', 'READ_DATA', `image size code 0x${hex2(code)} is none of ${IMAGE_SIZES.join(', ')}; is this a VC0706 camera?`);
}

/**
 * Read the register; only when it differs from `size`, write it and read it
 * back. Whether it wrote: the part then needs a reset to apply it.
 */
export async function writeImageSize(link: Vc0706Link, size: ImageSize): Promise<boolean> {
  const code = IMAGE_SIZE_CODES[size];
  const was = await readImageSizeCode(link);
  if (was === code) return false;
  await link.exchange(VC0706_CMD.WRITE_DATA, [...IMAGE_SIZE_ARGS, code]);
  const back = await readImageSizeCode(link);
  if (back !== code) {
    throw link.error('garbled', 'WRITE_DATA', `image size register reads 0x${hex2(back)} after writing 0x${hex2(code)} (${size}); check that this is a VC0706 camera`);
  }
  link.log?.info({ event: 'camera.image-size', path: link.path, size, was: `0x${hex2(was)}` });
  return true;
}

/**
 * After the reset that applies `size`: do frames (`dims`, from a frame's
 * head) have it? `strict`: if not, an error; else a warning (a picture of
 * the wrong size is still evidence).
 */
export function checkFrameSize(link: Vc0706Link, size: ImageSize, dims: { width: number; height: number } | null, strict: boolean): void {
  const got = dims ? `${dims.width}x${dims.height}` : null;
  if (got === size) {
    link.log?.info({ event: 'camera.image-size.applied', path: link.path, size });
    return;
  }
  const what = got
    ? `frames are ${got} after the reset, not ${size}, though the register reads ${size}; this module does not apply the image size, or applies it only at power-on: power-cycle it, or set imageSize to ${got}`
    : `no JPEG frame header in the first ${FRAME_HEAD_MAX} bytes of a frame after the reset, so ${size} cannot be checked; check that this is a VC0706 JPEG camera`;
  if (strict) throw link.error('garbled', 'WRITE_DATA', what);
  link.log?.warn({ event: 'camera.image-size.mismatch', path: link.path, size, frame: got }, what);
}
