// When each segment of a camera's ring starts and ends, and where the
// recording has holes.
//
// Segment times come from splitmuxsink's fragment-opened/closed messages
// (gst-launch-1.0 -m): each carries the running time of the split, exact to
// the frame and free of the lag with which the messages arrive (a fragment is
// closed about one GOP after its end, when splitmuxsink has seen the next
// keyframe). Running time 0 is pinned to the monotonic clock once per run,
// when the pipeline picks its clock on the way to PLAYING; UTC comes from the
// agent's clock when a time is read (clock.ts), so segments recorded before
// GPS time was known move with it once it is. File mtimes would be a GOP late
// and ffprobe per segment costs a process every few seconds; they are used
// only for files found on disk without an index entry, and for the ends of
// segments the muxer never finalised (cut off by the child's death) or closed
// at EOS.
//
// Every outage is a gap in the ring, from where the video stops to where the
// next run's video starts, so a clip across it can say so.

import { statSync } from 'node:fs';
import type { Logger } from 'pino';
import { type Instant, type RecorderClock, monoNow, utcOf } from './clock.ts';
import { type GapRecord, type RecordingGap, type SegmentRecord, type SegmentRing, type VideoSegment, segmentView, settleRecord } from './segment-ring.ts';
import { errText } from '../../common/errors.ts';

/** What the timing tells the recorder. All calls are synchronous. */
export interface SegmentTimingHost {
  /** Video flows (a fragment message, a file that grew): the stall watchdog starts over. */
  progress(): void;
  /** A segment of the run opened: the recording is under way. */
  recording(run: number): void;
  /** splitmuxsink finalised a segment: the pipeline works. */
  proven(): void;
  /** A segment was finalised (closed) or found cut off after the child died; the ring is within its bounds. */
  segment(seg: VideoSegment): void;
  /** An outage ended: recording resumed after it. */
  gap(gap: RecordingGap): void;
}

export interface SegmentTimingOptions {
  camera: string;
  ring: SegmentRing;
  clock: RecorderClock;
  log?: Logger;
}

export class SegmentTiming {
  private readonly camera: string;
  private readonly ring: SegmentRing;
  private readonly clock: RecorderClock;
  private readonly log: Logger | undefined;
  private readonly settling = new Set<Promise<void>>();

  // Per run (monotonic ms):
  private run = 0;
  private anchorMono: number | null = null;
  private clockSeenMono: number | null = null;
  private lastOpenSize = -1;

  constructor(
    o: SegmentTimingOptions,
    private readonly host: SegmentTimingHost,
  ) {
    this.camera = o.camera;
    this.ring = o.ring;
    this.clock = o.clock;
    this.log = o.log;
  }

  /** The recorder starts: the time since the ring's newest segment was not recorded. */
  starting(): void {
    const newest = this.ring.records().at(-1);
    if (newest?.end) this.ring.openGap({ from: newest.end, reason: 'recorder not running (the agent was stopped or restarting)' });
  }

  /** A new gst-launch-1.0 run: its running times get their own anchor. */
  beginRun(run: number): void {
    this.run = run;
    this.anchorMono = null;
    this.clockSeenMono = null;
    this.lastOpenSize = -1;
  }

  /** The pipeline took its clock: running time 0 is at most now. */
  clockSeen(): void {
    this.clockSeenMono ??= monoNow();
  }

  /** splitmuxsink opened a file at this running time. */
  opened(name: string, number: number, runningTimeNs: number): void {
    const rtMs = runningTimeNs / 1e6;
    if (this.anchorMono === null) {
      // Both are upper bounds of the monotonic time at running time 0: the
      // clock message is printed just after the base time is taken, a
      // fragment message some time after its running time. Take the tighter one.
      this.anchorMono = Math.min(this.clockSeenMono ?? Infinity, monoNow() - rtMs);
    }
    const start: Instant = { mono: this.anchorMono + rtMs };
    this.ring.open(name, number, start, this.run);
    this.host.progress();
    const gap = this.ring.closeGap(start);
    if (gap) {
      this.log?.warn({ event: 'video.gap', camera: this.camera, ...gap, seconds: (gap.toMs! - gap.fromMs) / 1000 });
      this.host.gap(gap);
    }
    this.host.recording(this.run);
    this.ring.prune();
    void this.ring.save();
  }

  /** splitmuxsink finalised a file at this running time; `afterEos`: the source had ended its stream. */
  closed(name: string, runningTimeNs: number, afterEos: boolean): void {
    if (this.anchorMono === null) return;
    const seg = this.ring.settle(name, { mono: this.anchorMono + runningTimeNs / 1e6 }, 'closed');
    this.host.progress();
    if (!seg) return;
    this.host.proven();
    if (afterEos) {
      // At EOS the message carries the last frame's start, not its end.
      this.track(this.refineEnd(seg));
    } else {
      this.segmentDone(seg);
    }
  }

  /** A watchdog tick: the file being written grew (progress), and its size counts against the ring's bytes. */
  poll(): void {
    const open = this.ring.openSegments().filter((s) => s.run === this.run).at(-1);
    if (!open) return;
    try {
      const size = statSync(open.path).size;
      if (size !== this.lastOpenSize) {
        this.lastOpenSize = size;
        this.ring.setBytes(open.name, size);
        this.host.progress();
      }
    } catch {
      // not created yet, or gone: no progress
    }
  }

  /**
   * The run's child is gone. Segments it left open were never finalised by
   * the muxer: their ends are where their readable packets end. Unless the
   * recorder is stopping, an outage starts: at the exit, moved back to where
   * this run's video really ends once its cut-off segments are probed.
   */
  runEnded(run: number, why: string, stopping: boolean): void {
    const exitedAt: Instant = { mono: monoNow() };
    const leftOpen = this.ring.openSegments().filter((s) => s.run === run);
    this.track(Promise.all(leftOpen.map((s) => this.settleCutOff(s))).then(() => undefined));
    if (stopping) return;
    const gap: GapRecord = this.ring.openGap({ from: exitedAt, reason: why });
    this.track(
      Promise.all([...this.settling]).then(() => {
        const end = this.lastMediaEnd(run);
        if (end !== null) this.ring.refineGapStart(gap, end);
        void this.ring.save();
      }),
    );
  }

  /** The recorder stopped (its child is gone): once every segment is settled, the outage starts where the video ends; the index is saved. */
  async stopped(): Promise<void> {
    await Promise.all([...this.settling]);
    const lastEnd = this.lastMediaEnd();
    if (lastEnd !== null) this.ring.openGap({ from: lastEnd, reason: 'recorder stopped' });
    await this.ring.save();
  }

  private async refineEnd(seg: SegmentRecord): Promise<void> {
    const end = await this.ring.probeEnd(seg);
    // Settled on the record itself: a pin holding it sees the end even if the ring has let it go.
    if (end !== null) settleRecord(this.clock, seg, end, 'closed');
    this.segmentDone(seg);
  }

  private segmentDone(rec: SegmentRecord): void {
    const seg = segmentView(this.clock, rec);
    this.log?.debug({ event: 'video.segment', camera: this.camera, name: seg.name, startMs: seg.startMs, endMs: seg.endMs, bytes: seg.bytes, state: seg.state });
    // Prune first: listeners see the ring within its bounds.
    this.ring.prune();
    void this.ring.save();
    this.host.segment(seg);
  }

  /** A segment the muxer never finalised: its end is where its readable packets end. */
  private async settleCutOff(seg: SegmentRecord): Promise<void> {
    const end = await this.ring.probeEnd(seg);
    if (end === null) {
      this.ring.remove(seg.name, 'no readable video in a segment cut off by the child’s death');
      // A pin of it holds an empty span.
      settleRecord(this.clock, seg, seg.start, 'cut-off');
      return;
    }
    settleRecord(this.clock, seg, end, 'cut-off');
    this.segmentDone(seg);
  }

  /** Where the recorded video ends (of runs up to `run`). */
  private lastMediaEnd(run = Infinity): Instant | null {
    let end: Instant | null = null;
    for (const s of this.ring.records()) {
      if (s.run <= run && s.end !== null && (end === null || utcOf(this.clock, s.end) > utcOf(this.clock, end))) end = s.end;
    }
    return end;
  }

  private track(p: Promise<void>): void {
    const guarded = p.catch((err) => this.log?.error({ event: 'video.settle.failed', camera: this.camera, err: errText(err) }));
    this.settling.add(guarded);
    void guarded.finally(() => this.settling.delete(guarded));
  }
}
