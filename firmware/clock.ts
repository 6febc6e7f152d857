// The head unit's clock may be wrong: an RTC battery gone flat boots it in
// 1970 or in the firmware's build year, and NTP needs the 4G link. GPS time is
// right as soon as the receiver has a fix, so the agent keeps the offset
// between the two and stamps every record with the corrected time, saying
// whether it could correct it ('gps') or not yet ('system').

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { GpsFix } from '../hal/gps/types.ts';
import type { TimeSource } from '../protocol/messages.ts';

export interface Stamp {
  /** UTC, ISO 8601. */
  iso: string;
  ms: number;
  timeSource: TimeSource;
}

/** Offsets below this are NMEA latency and jitter, not a wrong clock: not worth a log line. */
const REPORT_OFFSET_MS = 2_000;

export class GpsClock {
  private offsetMs: number | null = null;
  private reported: number | null = null;

  constructor(
    private readonly log?: Logger,
    private readonly wallNow: () => number = Date.now,
    private readonly monoNow: () => number = () => performance.now(),
  ) {}

  /**
   * Learn the offset from a fix: its GPS time against the system clock at
   * the moment the fix arrived. Only fixes with a position (mode ≥ 2) and a
   * time count: a receiver without a fix may repeat a stale or default time.
   */
  observe(fix: GpsFix): void {
    if (!fix.valid || !fix.time) return;
    const systemAtFix = this.wallNow() - (this.monoNow() - fix.receivedAtMs);
    const offset = fix.time.getTime() - systemAtFix;
    this.offsetMs = offset;
    if (Math.abs(offset) >= REPORT_OFFSET_MS && (this.reported === null || Math.abs(offset - this.reported) >= REPORT_OFFSET_MS)) {
      this.reported = offset;
      this.log?.warn(
        { event: 'clock.offset', offsetMs: Math.round(offset), system: new Date(systemAtFix).toISOString(), gps: fix.time.toISOString() },
        'system clock differs from GPS time: records are stamped with GPS-corrected time',
      );
    }
  }

  /** The offset in use (GPS UTC − system clock), or null before the first timed fix. */
  offset(): number | null {
    return this.offsetMs;
  }

  now(): Stamp {
    const system = this.wallNow();
    const ms = this.offsetMs === null ? system : system + this.offsetMs;
    return { iso: new Date(ms).toISOString(), ms, timeSource: this.offsetMs === null ? 'system' : 'gps' };
  }
}
