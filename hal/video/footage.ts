// Footage on request: is [T1, T2] still in a camera's ring, all of it, part
// of it or none, and if any, the clip of it. The answer says which parts are
// missing and why (overwritten by the ring, not recorded, not yet recorded),
// in one sentence a dispatcher can read.

import { rmdir, unlink } from 'node:fs/promises';
import { type ClipResult, cutClip } from './clip.ts';
import type { RecorderClock } from './clock.ts';
import type { MediaTools } from './ffprobe.ts';
import type { PinnedSegment, RecordingGap, VideoSegment } from './recorder.ts';
import type { GeoPoint, TrackPoint } from './track-geojson.ts';

/** What footage.ts and alarm-clip.ts need of a recorder (VideoRecorder has it all). */
export interface SegmentSource {
  readonly name: string;
  readonly segmentS: number;
  readonly keyframeIntervalS: number;
  /** Turns the recorder's instants into UTC. */
  readonly clock: RecorderClock;
  now(): number;
  segments(): VideoSegment[];
  gaps(): RecordingGap[];
  /** UTC end of the newest segment deleted for space (footage at or before it was overwritten), null if none ever was. */
  overwrittenBefore(): number | null;
  pin(fromMs: number, toMs: number, pinDir: string): PinnedSegment[];
  /** `until` a UTC time, or a function read again at each check (an instant whose UTC follows the clock). */
  waitForRecording(until: number | (() => number), timeoutMs: number): Promise<boolean>;
}

/**
 * overwritten: recorded, then deleted by the ring to make room.
 * before-recording: older than anything this camera ever recorded into its ring (it was never recorded).
 * not-recorded: the recorder was not recording (an outage).
 * not-yet-recorded: after now.
 */
export type MissingReason = 'overwritten' | 'before-recording' | 'not-recorded' | 'not-yet-recorded';

export interface MissingFootage {
  fromMs: number;
  toMs: number;
  reason: MissingReason;
  /** The recorder's reason for an outage, when it knows one. */
  detail?: string;
}

export interface FootageCoverage {
  status: 'full' | 'partial' | 'none';
  fromMs: number;
  toMs: number;
  /** Parts of the window with video, merged, in time order. */
  available: [number, number][];
  missing: MissingFootage[];
  /** Start of the oldest footage in the ring, or null when the ring is empty. */
  oldestMs: number | null;
  /** One sentence for the requester. */
  message: string;
}

export interface CoverageOptions {
  nowMs: number;
  /** Holes shorter than this are not missing footage. Default 250 ms. */
  toleranceMs?: number;
  /** The recorder's outages, to say why a part was not recorded. */
  gaps?: readonly RecordingGap[];
  /** Oldest footage in the ring; default: the oldest of `segments`. */
  oldestMs?: number | null;
  /**
   * End of the newest footage the ring deleted for space (null: it never
   * deleted any). Before the oldest footage, only up to here was recorded
   * and overwritten; the rest was never recorded. Default null.
   */
  overwrittenBefore?: number | null;
}

/** How much of [fromMs, toMs] the segments hold. A segment still being written counts up to nowMs. */
export function footageCoverage(segments: readonly { startMs: number; endMs: number | null }[], fromMs: number, toMs: number, o: CoverageOptions): FootageCoverage {
  const tol = o.toleranceMs ?? 250;
  const spans = segments
    .map((s) => [s.startMs, s.endMs ?? o.nowMs] as [number, number])
    .filter(([a, b]) => b > a)
    .sort((x, y) => x[0] - y[0]);
  const oldestMs = o.oldestMs !== undefined ? o.oldestMs : (spans[0]?.[0] ?? null);

  const available: [number, number][] = [];
  for (const [a, b] of spans) {
    const lo = Math.max(a, fromMs);
    const hi = Math.min(b, toMs);
    if (hi <= lo) continue;
    const last = available.at(-1);
    if (last && lo - last[1] <= tol) last[1] = Math.max(last[1], hi);
    else available.push([lo, hi]);
  }

  const holes: [number, number][] = [];
  let cursor = fromMs;
  for (const [a, b] of available) {
    if (a - cursor > tol) holes.push([cursor, a]);
    cursor = Math.max(cursor, b);
  }
  if (toMs - cursor > tol) holes.push([cursor, toMs]);

  const overwritten = o.overwrittenBefore ?? null;
  const missing: MissingFootage[] = [];
  for (const [a, b] of holes) {
    // Split a hole where its reason changes: the end of what the ring overwrote, its oldest footage, now.
    const cuts = [a, ...[overwritten, oldestMs, o.nowMs].filter((c): c is number => c !== null && c > a && c < b).sort((x, y) => x - y), b];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const lo = cuts[i]!;
      const hi = cuts[i + 1]!;
      if (hi - lo <= tol) continue;
      const beforeRing = oldestMs === null || hi <= oldestMs;
      const reason: MissingReason =
        lo >= o.nowMs ? 'not-yet-recorded' : overwritten !== null && hi <= overwritten + tol ? 'overwritten' : beforeRing && (overwritten === null || lo >= overwritten) ? 'before-recording' : 'not-recorded';
      const outage = reason === 'not-recorded' ? o.gaps?.find((g) => g.fromMs < hi && (g.toMs ?? Infinity) > lo) : undefined;
      missing.push({ fromMs: lo, toMs: hi, reason, ...(outage ? { detail: outage.reason } : {}) });
    }
  }

  const status = available.length === 0 ? 'none' : missing.length === 0 ? 'full' : 'partial';
  return { status, fromMs, toMs, available, missing, oldestMs, message: coverageMessage(status, fromMs, toMs, missing, oldestMs, overwritten) };
}

function coverageMessage(status: FootageCoverage['status'], fromMs: number, toMs: number, missing: readonly MissingFootage[], oldestMs: number | null, overwritten: number | null): string {
  const window = `${iso(fromMs)} to ${iso(toMs)}`;
  if (status === 'full') return `footage ${window} is in the ring`;
  const why = (m: MissingFootage) => {
    switch (m.reason) {
      case 'overwritten':
        return `no longer in the ring (overwritten; the oldest footage in the ring starts at ${oldestMs === null ? 'nothing: the ring is empty' : iso(oldestMs)})`;
      case 'before-recording':
        return oldestMs === null
          ? 'not recorded (this camera has recorded nothing into its ring yet)'
          : `not recorded (before this camera's earliest recording in its ring, which starts at ${iso(oldestMs)}; nothing was overwritten${overwritten === null ? '' : ` after ${iso(overwritten)}`})`;
      case 'not-yet-recorded':
        return 'not recorded yet';
      case 'not-recorded':
        return `not recorded${m.detail ? ` (${m.detail})` : ' (the recorder was not recording)'}`;
    }
  };
  if (status === 'none') {
    if (missing.length === 1) return `footage ${window} is ${why(missing[0]!)}`;
    return `footage ${window} is not in the ring: ${missing.map((m) => `${iso(m.fromMs)} to ${iso(m.toMs)} ${why(m)}`).join('; ')}`;
  }
  return `footage ${window} is only partly in the ring: ${missing.map((m) => `${iso(m.fromMs)} to ${iso(m.toMs)} is ${why(m)}`).join('; ')}`;
}

export interface FootageRequest {
  fromMs: number;
  toMs: number;
  /** The MP4 to write. */
  out: string;
  /** Where to pin the segments while cutting; same filesystem as the ring. */
  pinDir: string;
  location?: GeoPoint | null;
  track?: readonly TrackPoint[];
  meta?: Record<string, unknown>;
  /** A window ending in the future is waited for, at most this far ahead. Default 60 s. */
  maxWaitAheadMs?: number;
  /** Keep the pinned links after a successful cut. Default false (they are kept after a failed one). */
  keepPinned?: boolean;
  tools?: MediaTools & { ffmpegTimeoutMs?: number };
}

export interface FootageAnswer {
  coverage: FootageCoverage;
  /** The clip, when any of the window is in the ring. */
  clip: ClipResult | null;
}

/**
 * Answer a footage request: pin what the ring holds of the window at once,
 * wait (boundedly) for a window that ends in the future or in a segment
 * still being written, then cut. status 'none' comes with no clip and a
 * message saying the window is no longer in the ring (or why else not).
 */
export async function cutFootage(rec: SegmentSource, req: FootageRequest): Promise<FootageAnswer> {
  if (!Number.isFinite(req.fromMs) || !Number.isFinite(req.toMs) || req.toMs <= req.fromMs) {
    throw new Error(`footage request for camera ${rec.name}: window [${req.fromMs}, ${req.toMs}] is empty or not a number; T1 must be before T2`);
  }
  const first = rec.pin(req.fromMs, req.toMs, req.pinDir);
  const now = rec.now();
  const ahead = req.toMs - now;
  const maxAhead = req.maxWaitAheadMs ?? 60_000;
  if (ahead <= maxAhead && rec.segments().some((s) => (s.endMs ?? Infinity) > req.fromMs)) {
    // Until a finished segment reaches T2: a segment open now ends within a segment length and a GOP.
    await rec.waitForRecording(req.toMs, Math.max(0, ahead) + (2 * rec.segmentS + 2 * rec.keyframeIntervalS) * 1000 + 3000);
  }
  const pinned = mergePins(first, rec.pin(req.fromMs, req.toMs, req.pinDir));
  const oldest = rec.segments()[0]?.startMs ?? null;
  const coverage = footageCoverage(pinned, req.fromMs, req.toMs, {
    nowMs: rec.now(),
    gaps: rec.gaps(),
    oldestMs: oldest === null ? (pinned[0]?.startMs ?? null) : Math.min(oldest, pinned[0]?.startMs ?? Infinity),
    overwrittenBefore: rec.overwrittenBefore(),
  });
  if (coverage.status === 'none') {
    await releasePins(pinned, req.pinDir);
    return { coverage, clip: null };
  }
  const clip = await cutClip({
    // Times read now: the clock may move while the cut runs.
    segments: pinned.map((p) => ({ path: p.path, startMs: p.startMs, endMs: p.endMs })),
    fromMs: req.fromMs,
    toMs: req.toMs,
    out: req.out,
    location: req.location ?? null,
    track: req.track ?? [],
    meta: { camera: rec.name, request: true, ...req.meta },
    tools: req.tools,
  });
  if (!req.keepPinned) await releasePins(pinned, req.pinDir);
  return { coverage, clip };
}

/** One entry per pinned file, the later (more complete) one winning, in time order. */
export function mergePins(...lists: readonly PinnedSegment[][]): PinnedSegment[] {
  const byPath = new Map<string, PinnedSegment>();
  for (const list of lists) for (const p of list) byPath.set(p.path, p.endMs === null && byPath.get(p.path)?.endMs != null ? byPath.get(p.path)! : p);
  return [...byPath.values()].sort((a, b) => a.startMs - b.startMs);
}

/** Remove the pinned links (the ring's own files are not touched), and the pin folder if it is empty then. */
export async function releasePins(pinned: readonly { path: string }[], pinDir: string): Promise<void> {
  for (const p of pinned) await unlink(p.path).catch(() => undefined);
  await rmdir(pinDir).catch(() => undefined);
}

function iso(ms: number): string {
  return new Date(Math.round(ms)).toISOString();
}
