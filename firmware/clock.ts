// The head unit's clock may be wrong: an RTC battery gone flat boots it in
// 1970 or in the firmware's build year, and NTP needs the 4G link. GPS time is
// right as soon as the receiver has a fix. This is the one clock of the
// agent: UTC = monotonic clock + an offset, the offset taken from GPS fixes
// once there are any (timeSource 'gps') and from the system clock before
// ('system'). Every instant the agent keeps (a press, a video segment, a track
// point) is a monotonic reading turned into UTC through this mapping when it
// is used, so all of them move together when the offset is learned or
// changes (hal/video/clock.ts). Anchoring to the monotonic clock, not the
// system clock, also keeps stamps steady when NTP steps the system clock.

import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { GpsFix } from '../hal/gps/types.ts';
import { type RecorderClock, SystemClock } from '../hal/video/clock.ts';
import type { TimeSource } from '../protocol/messages.ts';

export interface Stamp {
  /** UTC, ISO 8601. */
  iso: string;
  ms: number;
  timeSource: TimeSource;
}

export interface ClockChange {
  /** How far UTC readings of the same instants moved (new − old), ms. */
  deltaMs: number;
  timeSource: TimeSource;
}

/** Offsets below this are NMEA latency and jitter, not a wrong clock: not worth a log line. */
const REPORT_OFFSET_MS = 2_000;
/** The offset is the median of the last few fixes' (GPS time − arrival): one late burst does not move it. */
const MEDIAN_OF = 9;
/** A move of the mapping this large is announced ('change'), for whoever stored UTC times on disk. */
const ANNOUNCE_MS = 100;

export class GpsClock extends EventEmitter<{ change: [ClockChange] }> implements RecorderClock {
  private gpsBase: number | null = null;
  private readonly candidates: number[] = [];
  private readonly system: SystemClock;
  private reported: number | null = null;
  private announcedBase: number;

  constructor(
    private readonly log?: Logger,
    wallNow: () => number = Date.now,
    private readonly monoNow: () => number = () => performance.now(),
  ) {
    super();
    this.system = new SystemClock(wallNow, monoNow);
    this.announcedBase = this.system.offset();
  }

  /**
   * Learn the offset from a fix: its GPS time against the monotonic clock at
   * the moment the fix arrived. Only fixes with a position (mode ≥ 2) and a
   * time count: a receiver without a fix may repeat a stale or default time.
   */
  observe(fix: GpsFix): void {
    if (!fix.valid || !fix.time) return;
    this.candidates.push(fix.time.getTime() - fix.receivedAtMs);
    if (this.candidates.length > MEDIAN_OF) this.candidates.shift();
    const sorted = [...this.candidates].sort((a, b) => a - b);
    this.gpsBase = sorted[Math.floor(sorted.length / 2)]!;
    const offset = this.gpsBase - this.system.offset();
    if (Math.abs(offset) >= REPORT_OFFSET_MS && (this.reported === null || Math.abs(offset - this.reported) >= REPORT_OFFSET_MS)) {
      this.reported = offset;
      this.log?.warn(
        {
          event: 'clock.offset',
          offsetMs: Math.round(offset),
          system: new Date(fix.receivedAtMs + this.system.offset()).toISOString(),
          gps: fix.time.toISOString(),
        },
        'system clock differs from GPS time: records are stamped with GPS-corrected time',
      );
    }
    this.announceIfMoved();
  }

  /** The offset in use (GPS UTC − system clock), or null before the first timed fix. */
  offset(): number | null {
    return this.gpsBase === null ? null : this.gpsBase - this.system.offset();
  }

  get timeSource(): TimeSource {
    return this.gpsBase === null ? 'system' : 'gps';
  }

  utcAt(monoMs: number): number {
    return monoMs + (this.gpsBase ?? this.system.offset());
  }

  utcNow(): number {
    return this.utcAt(this.monoNow());
  }

  /** A monotonic reading as a record's time. */
  stampAt(monoMs: number): Stamp {
    const ms = this.utcAt(monoMs);
    return { iso: new Date(ms).toISOString(), ms, timeSource: this.timeSource };
  }

  now(): Stamp {
    return this.stampAt(this.monoNow());
  }

  private announceIfMoved(): void {
    const base = this.gpsBase ?? this.system.offset();
    const deltaMs = base - this.announcedBase;
    if (Math.abs(deltaMs) < ANNOUNCE_MS) return;
    this.announcedBase = base;
    this.emit('change', { deltaMs, timeSource: this.timeSource });
  }
}
