// How a long-lived busguard process (the agent, a receiver) ends: on SIGTERM
// or SIGINT, once, through its own clean stop. And when it was started
// through `npx busguard ... &` and npx is killed: npm exec does not pass the
// signal on, and the process would otherwise live on with init (PID 1) as its
// parent, holding the broker session and the serial ports. So under npm exec
// the parent is watched, and its disappearance counts as a SIGTERM.

import type { Logger } from 'pino';

const ORPHAN_CHECK_MS = 1000;

export function stopOnSignals(log: Logger, stop: () => Promise<void>): void {
  let stopping = false;
  const end = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ event: 'process.signal', signal }, 'stopping');
    stop().finally(() => process.exit(0));
  };
  process.on('SIGTERM', () => end('SIGTERM'));
  process.on('SIGINT', () => end('SIGINT'));
  if (process.env.npm_command === 'exec') {
    const parent = process.ppid;
    const timer = setInterval(() => {
      if (process.ppid === parent) return;
      clearInterval(timer);
      log.warn({ event: 'process.orphaned', parent, now: process.ppid }, 'npx, which started this process, is gone: stopping as on SIGTERM');
      end('parent gone');
    }, ORPHAN_CHECK_MS);
    timer.unref();
  }
}
