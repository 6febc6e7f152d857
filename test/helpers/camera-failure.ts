// A camera call that must fail: the CameraError it failed with and how long
// that took, for tests that bound the time a fault takes to come back.

import { performance } from 'node:perf_hooks';
import { CameraError } from '../../hal/camera/types.ts';

/** Resolves with the CameraError `p` rejects with and the ms it took; anything else (success, another error) fails the test. */
export async function cameraFailure(p: Promise<unknown>): Promise<{ err: CameraError; ms: number }> {
  const t0 = performance.now();
  try {
    await p;
  } catch (err) {
    if (!(err instanceof CameraError)) throw err;
    return { err, ms: performance.now() - t0 };
  }
  throw new Error('expected a CameraError, the call succeeded');
}
