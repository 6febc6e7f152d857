// The clip of an alarm: [press − pre, press + post] from one camera.
//
// The pre-roll is pinned before anything else happens, synchronously, so
// the ring cannot delete it while the post-roll is being recorded (Frigate's
// lesson: pre-roll that goes missing when segments are dropped). Then wait
// for the post-roll, pin again (the segments recorded since), and cut. A
// recorder that is down during the post-roll does not hold the clip up
// beyond a deadline: the clip is cut from what there is and its metadata
// states the gap.

import { type ClipResult, cutClip } from './clip.ts';
import type { MediaTools } from './ffprobe.ts';
import { type SegmentSource, mergePins, releasePins } from './footage.ts';
import type { PinnedSegment } from './recorder.ts';
import type { GeoPoint, TrackPoint } from './track-geojson.ts';

export const DEFAULT_PRE_S = 20;
export const DEFAULT_POST_S = 10;

export interface AlarmClipOptions {
  /** Wall-clock UTC ms of the press, by the recorder's clock. */
  pressMs: number;
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
  const fromMs = o.pressMs - preS * 1000;
  const toMs = o.pressMs + postS * 1000;
  const pinned = rec.pin(fromMs, toMs, o.pinDir);
  const done = (async () => {
    const grace = o.graceMs ?? (2 * rec.segmentS + 2 * rec.keyframeIntervalS) * 1000 + 3000;
    await rec.waitForRecording(toMs, Math.max(0, toMs - rec.now()) + grace);
    const all = mergePins(pinned, rec.pin(fromMs, toMs, o.pinDir));
    const track = typeof o.track === 'function' ? o.track() : (o.track ?? []);
    const clip = await cutClip({
      segments: all,
      fromMs,
      toMs,
      out: o.out,
      location: o.location ?? null,
      pressMs: o.pressMs,
      track,
      meta: { camera: rec.name, preS, postS, ...o.meta },
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
