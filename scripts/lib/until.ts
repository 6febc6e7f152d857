// Wait for a condition with a deadline, never a blind sleep: the one helper
// every test, bench and the demo use to wait for something to become true.
// `what` names the wait in the timeout error; a function is called only then,
// so the error can say what was seen instead (the last state, the lines so far).

export async function until<T>(
  fn: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs: number,
  what: string | (() => string),
  pollMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}
