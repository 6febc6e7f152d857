// The clip of an alarm: [press − pre, press + post] from one camera.
//
// The pre-roll is pinned before anything else happens, synchronously, so
// the ring cannot delete it while the post-roll is being recorded (Frigate's
// lesson: pre-roll that goes missing when segments are dropped). Then wait
// for the post-roll, pin again (the segments recorded since), and cut. A
// recorder that is down during the post-roll does not hold the clip up
// beyond a deadline: the clip is cut from what there is and its metadata
// states the gap.
//
// The press is an instant, not a UTC time: its window is read through the
// recorder's clock each time it is needed, so press and segments stay on one
// clock when GPS time is learned (or changes) during the post-roll.

import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { type ClipResult, type ClipSegment, cutClip } from './clip.ts';
import { type Instant, utcOf } from './clock.ts';
import type { MediaTools } from './ffprobe.ts';
import { type SegmentSource, mergePins, releasePins } from './footage.ts';
import type { PinnedSegment } from './recorder.ts';
import type { GeoPoint, TrackPoint } from './track-geojson.ts';

export const DEFAULT_PRE_S = 20;
export const DEFAULT_POST_S = 10;

export interface AlarmClipOptions {
  /**
   * The press: a monotonic reading of this process ({ mono: performance.now() at the press }),
   * or a UTC time ({ utc }) for a press of an earlier run (a clip resumed after a restart).
   */
  press: Instant;
  /** Seconds before the press. Default 20. */
  preS?: number;
  /** Seconds after the press. Default 10. */
  postS?: number;
  /** Where the segments are pinned (one folder per alarm; same filesystem as the ring). */
  pinDir: string;
  /** The MP4 to write; the sidecar goes beside it as .geojson. */
  out: string;
  /** The fix at the press. */
  location?: GeoPoint | null;
  /** The track, read once the post-roll is recorded. */
  track?: readonly TrackPoint[] | (() => readonly TrackPoint[]);
  /** Alarm id, vehicle…: into the clip's comment and sidecar. */
  meta?: Record<string, unknown>;
  /** Extra wait for the post-roll beyond its end. Default 2 segments + 2 keyframe intervals + 3 s. */
  graceMs?: number;
  /** Keep the pinned links after a successful cut. Default false (they are kept after a failed one, for a retry). */
  keepPinned?: boolean;
  /**
   * Aborted (the agent is stopping): the clip is not cut from what there is
   * so far; `done` rejects with an AbortError and the pins stay, for the
   * next run to cut it (see firmware/clip-jobs.ts).
   */
  signal?: AbortSignal;
  tools?: MediaTools & { ffmpegTimeoutMs?: number };
}

export interface AlarmClipJob {
  /** The segments pinned at once (the pre-roll, and whatever of the post-roll is being written). */
  pinned: PinnedSegment[];
  /** The clip, once the post-roll is recorded and cut. Rejects with ClipError if no video at all covers the window. */
  done: Promise<ClipResult>;
}

/** Pin the pre-roll now (before returning), then record, cut and tag the clip. */
export function captureAlarmClip(rec: SegmentSource, o: AlarmClipOptions): AlarmClipJob {
  const preS = o.preS ?? DEFAULT_PRE_S;
  const postS = o.postS ?? DEFAULT_POST_S;
  if (!(preS >= 0) || !(postS >= 0) || preS + postS <= 0) throw new Error(`alarm clip ${o.out}: pre ${preS} s and post ${postS} s must be ≥ 0 and not both 0`);
  const window = () => {
    const pressMs = utcOf(rec.clock, o.press);
    return { pressMs, fromMs: pressMs - preS * 1000, toMs: pressMs + postS * 1000 };
  };
  const first = window();
  const pinned = rec.pin(first.fromMs, first.toMs, o.pinDir);
  const done = (async () => {
    const grace = o.graceMs ?? (2 * rec.segmentS + 2 * rec.keyframeIntervalS) * 1000 + 3000;
    await rec.waitForRecording(() => window().toMs, Math.max(0, first.toMs - rec.now()) + grace);
    o.signal?.throwIfAborted();
    const w = window();
    const pins = mergePins(pinned, rec.pin(w.fromMs, w.toMs, o.pinDir));
    // Read the segments' times now, with the window: the clock may move while the cut runs.
    const all: ClipSegment[] = [
      ...pins.map((p) => ({ path: p.path, startMs: p.startMs, endMs: p.endMs })),
      // Links an earlier run left in the pin folder for segments the ring has since let go (a clip resumed after a restart).
      ...leftoverPins(o.pinDir, pins),
    ].sort((a, b) => a.startMs - b.startMs);
    const track = typeof o.track === 'function' ? o.track() : (o.track ?? []);
    const clip = await cutClip({
      segments: all,
      fromMs: w.fromMs,
      toMs: w.toMs,
      out: o.out,
      location: o.location ?? null,
      pressMs: w.pressMs,
      track,
      meta: { camera: rec.name, preS, postS, ...o.meta },
      outages: rec.gaps(),
      tools: o.tools,
    });
    if (!o.keepPinned) await releasePins(all, o.pinDir);
    return clip;
  })();
  // The caller awaits `done` when it wants the clip; an alarm path that
  // forgets to must not get an unhandled rejection.
  done.catch(() => undefined);
  return { pinned, done };
}

/**
 * Files in a pin folder that are none of `pins` (by inode: the same segment
 * may be linked under two names when the clock moved between two runs),
 * named "<startMs>-<segment name>" by pin(): their start from the name, their
 * end from their packets (cutClip probes them).
 */
export function leftoverPins(pinDir: string, pins: readonly { path: string }[]): ClipSegment[] {
  let names: string[];
  try {
    names = readdirSync(pinDir);
  } catch {
    return [];
  }
  const inodes = new Set<number>();
  for (const p of pins) {
    try {
      inodes.add(statSync(p.path).ino);
    } catch {
      // gone
    }
  }
  const out: ClipSegment[] = [];
  for (const name of names.sort()) {
    const m = /^(\d+)-seg\d+\.mkv$/.exec(name);
    if (!m) continue;
    const path = join(pinDir, name);
    let ino: number;
    try {
      ino = statSync(path).ino;
    } catch {
      continue;
    }
    if (inodes.has(ino)) continue;
    inodes.add(ino);
    out.push({ path, startMs: Number(m[1]), endMs: null });
  }
  return out;
}
