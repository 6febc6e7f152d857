// Waiting for a device's own event (NmeaReader, VideoRecorder: typed
// EventEmitters) rather than polling its state: the first payload that
// satisfies the test, with a deadline that names what was awaited and what
// the device looked like then.

import type { EventEmitter } from 'node:events';

/** The first `event` from `device` whose payload satisfies `pred`; after `timeoutMs`, a rejection naming `what` and `state()`. */
export function nextEvent<E extends Record<keyof E, unknown[]>, K extends keyof E & string>(
  device: EventEmitter<E>,
  event: K,
  pred: (payload: E[K][0]) => boolean,
  what: string,
  timeoutMs: number,
  state: () => string,
): Promise<E[K][0]> {
  // Typed on the way in and out; the listener itself is plain.
  const emitter = device as unknown as NodeJS.EventEmitter;
  return new Promise((resolve, reject) => {
    const listener = (payload: E[K][0]): void => {
      if (!pred(payload)) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(payload);
    };
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`no ${what} within ${timeoutMs} ms; ${state()}`));
    }, timeoutMs);
    emitter.on(event, listener);
  });
}
