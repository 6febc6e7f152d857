// What a test opens (a driver, a simulator, a panel), closed once the test
// has finished, passed or failed, without a `let` and an afterEach for each:
// `const reader = closeAfterTest(new NmeaReader(...))`. Things are closed
// last opened first, after the afterEach hooks, so a driver goes before the
// simulator or pair it talks to. Their close()/stop() must be safe to call
// again: a test may close a thing itself to see what closing does.

import { onTestFinished } from 'vitest';

type Closable = { close(): unknown } | { stop(): unknown };

/** Call in a test or a beforeEach; returns `thing`. */
export function closeAfterTest<T extends Closable>(thing: T): T {
  onTestFinished(async () => {
    await ('close' in thing ? thing.close() : thing.stop());
  });
  return thing;
}
