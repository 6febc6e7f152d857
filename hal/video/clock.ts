// The recorder's time. Every instant this process observes (a segment
// opening or closing, a press, a gap starting) is kept as a reading of the
// monotonic clock, and turned into UTC only when it is read, through the best
// mapping known at that moment. The mapping changes: the head unit boots with
// a wrong clock, GPS time arrives later (seconds or hours later), NTP may
// step the system clock. A segment stamped once in UTC at the moment it
// opened would stay on the old mapping while a press made after the change is
// on the new one, and the clip of that press would miss its video. Instants
// from elsewhere (a ring index written by an earlier run, a footage window
// from dispatch) are UTC already and stay as they are.

import { performance } from 'node:perf_hooks';

/** UTC milliseconds for monotonic readings (performance.now()), by the best mapping known now. */
export interface RecorderClock {
  utcNow(): number;
  utcAt(monoMs: number): number;
}

/** An instant: a monotonic reading of this process, or a UTC time from elsewhere. */
export type Instant = { mono: number } | { utc: number };

export function utcOf(clock: RecorderClock, i: Instant): number {
  return 'mono' in i ? clock.utcAt(i.mono) : i.utc;
}

/** The same kind of instant, `ms` later. */
export function later(i: Instant, ms: number): Instant {
  return 'mono' in i ? { mono: i.mono + ms } : { utc: i.utc + ms };
}

export const monoNow = (): number => performance.now();

/** A step of the system clock bigger than this is a step (NTP, a user); smaller differences are the two clocks' granularity. */
const STEP_MS = 1000;

/**
 * The system clock as such a mapping: UTC = mono + base, with base read from
 * the system clock once and again only when the system clock has stepped.
 * Stable between steps, so the same instant reads the same UTC every time
 * (Date.now() − elapsed would wobble by a millisecond from call to call).
 */
export class SystemClock implements RecorderClock {
  private base: number;

  constructor(
    private readonly wallNow: () => number = Date.now,
    private readonly mono: () => number = monoNow,
  ) {
    this.base = wallNow() - mono();
  }

  /** UTC − monotonic, re-read if the system clock stepped. */
  offset(): number {
    const candidate = this.wallNow() - this.mono();
    if (Math.abs(candidate - this.base) > STEP_MS) this.base = candidate;
    return this.base;
  }

  utcNow(): number {
    return this.utcAt(this.mono());
  }

  utcAt(monoMs: number): number {
    return monoMs + this.offset();
  }
}
