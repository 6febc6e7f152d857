// One JSON line per event on stdout, for the bus and dispatch alike. Every
// line carries `monoMs`, CLOCK_MONOTONIC in milliseconds: the same clock in
// every process on a machine, so the alarm-latency bench can line up the
// agent's and dispatch's lines without trusting wall clocks.

import pino, { type Logger } from 'pino';

export type { Logger };

export function monoMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** `stderr`: for commands whose stdout is what they tell a person (the agent and the receiver log to stdout). */
export function createLogger(name: string, level: string, base: Record<string, unknown> = {}, opts: { stderr?: boolean } = {}): Logger {
  return pino(
    {
      name,
      level,
      base: { pid: process.pid, ...base },
      timestamp: pino.stdTimeFunctions.isoTime,
      mixin: () => ({ monoMs: monoMs() }),
    },
    opts.stderr ? pino.destination(2) : undefined,
  );
}
