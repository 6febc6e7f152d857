// The ring of segment files one camera records into: an index of what each
// file holds in wall-clock time, kept within a count and a byte budget, and
// saved beside the files so that an agent restarted after a crash still
// finds its pre-roll.
//
// splitmuxsink's max-files alone is no ring for evidence: it wraps the file
// numbers and reopens an old name with fopen("wb"), which truncates the same
// inode, so a hard link made to pin that segment would be overwritten too
// (seen here: a pinned seg00000.mkv came back holding the next lap's video).
// So splitmuxsink cycles through more numbers than the ring keeps, and this
// module unlinks the oldest files itself, long before their number comes
// round again; a pinned hard link then keeps the old inode whole.
//
// Times: a segment recorded by this process keeps its start and end as
// monotonic instants, read out in UTC through the agent's clock at the
// moment they are asked for (clock.ts), so they move with the clock when GPS
// time arrives. The index on disk holds UTC as read when it was saved; a
// segment loaded from it keeps that UTC.

import { existsSync, statSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { type Instant, type RecorderClock, SystemClock, later, utcOf } from './clock.ts';
import { type MediaTools, probeVideoPackets } from './ffprobe.ts';
import { SEGMENT_NAME } from './gst-launch.ts';
import { errText } from '../../common/errors.ts';

/** open: being written. closed: finalised by the muxer. cut-off: the recorder died while writing it; readable up to its last written frame. */
export type SegmentState = 'open' | 'closed' | 'cut-off';

export interface VideoSegment {
  /** File name in the ring folder, e.g. seg00042.mkv. Numbers wrap: order by startMs, never by name. */
  name: string;
  path: string;
  number: number;
  /** Wall-clock UTC ms of its first frame. */
  startMs: number;
  /** Wall-clock UTC ms just past its last frame; null while it is being written. */
  endMs: number | null;
  bytes: number;
  state: SegmentState;
  /** Which run of gst-launch-1.0 wrote it; the segments of one run follow each other without a hole. */
  run: number;
  /**
   * pipeline: from the running times in splitmuxsink's fragment messages and
   * the run's clock anchor (exact within a run). file: found on disk without
   * an index entry; end from its mtime, start from its packets (about one
   * GOP late, since splitmuxsink writes a GOP after it has seen the next one).
   */
  timeSource: 'pipeline' | 'file';
}

/** A stretch of time with no recording, and why. toMs is null while it lasts. */
export interface RecordingGap {
  fromMs: number;
  toMs: number | null;
  reason: string;
}

/** A segment as the ring keeps it: its instants, read out in UTC on demand. */
export interface SegmentRecord {
  name: string;
  path: string;
  number: number;
  start: Instant;
  end: Instant | null;
  /** UTC ms of the start as first read: fixed for the life of the record, for names that must not change (pins). */
  key: number;
  bytes: number;
  state: SegmentState;
  run: number;
  timeSource: 'pipeline' | 'file';
}

/** An outage as the ring keeps it. */
export interface GapRecord {
  from: Instant;
  to: Instant | null;
  reason: string;
}

export interface SegmentRingOptions {
  camera: string;
  dir: string;
  maxSegments: number;
  maxBytes: number;
  fileNumbers: number;
  /** Turns this process's monotonic instants into UTC. Default: the system clock. */
  clock?: RecorderClock;
  tools?: MediaTools;
  log?: Logger;
}

const INDEX_FILE = 'index.json';
const INDEX_VERSION = 1;

/** A record read out in UTC. */
export function segmentView(clock: RecorderClock, r: SegmentRecord): VideoSegment {
  return {
    name: r.name,
    path: r.path,
    number: r.number,
    startMs: utcOf(clock, r.start),
    endMs: r.end === null ? null : utcOf(clock, r.end),
    bytes: r.bytes,
    state: r.state,
    run: r.run,
    timeSource: r.timeSource,
  };
}

export class SegmentRing {
  readonly dir: string;
  readonly clock: RecorderClock;
  private readonly byName = new Map<string, SegmentRecord>();
  private gapList: GapRecord[] = [];
  private runCounter = 0;
  /**
   * UTC end of the newest segment the ring has deleted to stay within its
   * bounds (null: it never deleted one). Footage before the oldest segment
   * and after this was never recorded; at or before it, it was overwritten.
   */
  private overwrittenUntil: number | null = null;
  private saving: Promise<void> = Promise.resolve();
  private saveAgain = false;
  private saveRunning = false;

  constructor(private readonly o: SegmentRingOptions) {
    this.dir = o.dir;
    this.clock = o.clock ?? new SystemClock();
  }

  private utc(i: Instant): number {
    return utcOf(this.clock, i);
  }

  private byTime = (a: SegmentRecord, b: SegmentRecord): number => this.utc(a.start) - this.utc(b.start) || a.run - b.run;

  /** Read the saved index and the folder; index files it does not know, delete files nothing can be read from. */
  async load(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const saved = await this.readIndex();
    this.runCounter = saved.lastRun;
    this.gapList = saved.gaps.map((g) => ({ from: { utc: g.fromMs }, to: g.toMs === null ? null : { utc: g.toMs }, reason: g.reason }));
    this.overwrittenUntil = saved.overwrittenUntil ?? null;
    const onDisk = new Set((await readdir(this.dir)).filter((n) => SEGMENT_NAME.test(n)));
    for (const seg of saved.segments) {
      if (!onDisk.has(seg.name)) continue;
      onDisk.delete(seg.name);
      const st = await stat(seg.path);
      const rec: SegmentRecord = {
        name: seg.name,
        path: seg.path,
        number: seg.number,
        start: { utc: seg.startMs },
        end: seg.endMs === null ? null : { utc: seg.endMs },
        key: Math.round(seg.startMs),
        bytes: st.size,
        state: seg.state,
        run: seg.run,
        timeSource: seg.timeSource,
      };
      if (rec.state === 'open') {
        // The agent died while this one was being written.
        const end = await this.probeEnd(rec);
        if (end === null) {
          await this.discard(rec.path, 'no readable video in a segment left open by the last run');
          continue;
        }
        rec.end = end;
        rec.state = 'cut-off';
      }
      this.byName.set(rec.name, rec);
    }
    for (const name of onDisk) {
      const path = join(this.dir, name);
      const [st, packets] = await Promise.all([stat(path), probeVideoPackets(path, this.o.tools)]);
      if (!packets) {
        await this.discard(path, 'no readable video in a segment the index does not know');
        continue;
      }
      const endMs = st.mtimeMs;
      const startMs = endMs - (packets.endPtsS - packets.firstPtsS) * 1000;
      this.byName.set(name, {
        name,
        path,
        number: Number(SEGMENT_NAME.exec(name)![1]),
        start: { utc: startMs },
        end: { utc: endMs },
        key: Math.round(startMs),
        bytes: st.size,
        state: 'cut-off',
        run: 0,
        timeSource: 'file',
      });
    }
    // An index written before it said what the ring overwrote: a ring that had filled had overwritten up to its oldest segment.
    const oldest = this.records()[0];
    if (saved.overwrittenUntil === undefined && oldest && (this.byName.size >= this.o.maxSegments - 1 || this.totalBytes() >= this.o.maxBytes * 0.9)) {
      this.overwrittenUntil = this.utc(oldest.start);
    }
    this.prune();
    await this.save();
  }

  /** A new run number for the next gst-launch-1.0 process. */
  nextRun(): number {
    return ++this.runCounter;
  }

  /** Segments, oldest first by wall-clock time, in UTC as of now. Copies. */
  list(): VideoSegment[] {
    return this.records().map((r) => segmentView(this.clock, r));
  }

  /** The records themselves, oldest first (a pin keeps a reference: the record outlives its place in the ring). */
  records(): SegmentRecord[] {
    return [...this.byName.values()].sort(this.byTime);
  }

  get(name: string): SegmentRecord | undefined {
    return this.byName.get(name);
  }

  /** Segments being written (with async finalisation, one may still be closing while the next is open). */
  openSegments(): SegmentRecord[] {
    return this.records().filter((s) => s.state === 'open');
  }

  /** UTC end of the newest segment deleted to keep the ring's bounds, or null if none ever was. */
  overwrittenBefore(): number | null {
    return this.overwrittenUntil;
  }

  totalBytes(): number {
    let n = 0;
    for (const s of this.byName.values()) n += s.bytes;
    return n;
  }

  gaps(): RecordingGap[] {
    return this.gapList.map((g) => this.gapView(g));
  }

  private gapView(g: GapRecord): RecordingGap {
    const fromMs = this.utc(g.from);
    return { fromMs, toMs: g.to === null ? null : Math.max(fromMs, this.utc(g.to)), reason: g.reason };
  }

  /** Start an outage; if one is already under way it stands (its reason came first) and is returned. */
  openGap(gap: { from: Instant; reason: string }): GapRecord {
    const open = this.gapList.find((g) => g.to === null);
    if (open) return open;
    const g: GapRecord = { from: gap.from, to: null, reason: gap.reason };
    this.gapList.push(g);
    return g;
  }

  /** End the outage under way at `to`; returns it (in UTC), or null if none was open. */
  closeGap(to: Instant): RecordingGap | null {
    const g = this.gapList.find((x) => x.to === null);
    if (!g) return null;
    g.to = to;
    return this.gapView(g);
  }

  /** Move the start of an outage back to where the video really ends (known once cut-off segments are probed). */
  refineGapStart(gap: GapRecord, from: Instant): void {
    if (this.utc(from) < this.utc(gap.from)) gap.from = from;
  }

  /** The number splitmuxsink should start at: after the newest segment, skipping numbers still in use. */
  nextStartIndex(): number {
    const newest = this.records().at(-1);
    let n = newest ? (newest.number + 1) % this.o.fileNumbers : 0;
    const used = new Set([...this.byName.values()].map((s) => s.number));
    for (let i = 0; i < this.o.fileNumbers && used.has(n); i++) n = (n + 1) % this.o.fileNumbers;
    return n;
  }

  /** splitmuxsink opened a file. */
  open(name: string, number: number, start: Instant, run: number): SegmentRecord {
    const old = this.byName.get(name);
    if (old) {
      // Only if the ring fell fileNumbers − maxSegments segments behind: the
      // old file has been truncated in place, pins of it included.
      this.o.log?.error({ event: 'video.ring.reused', camera: this.o.camera, name, oldStartMs: this.utc(old.start) }, `segment ${name} was reopened before the ring removed it`);
    }
    const seg: SegmentRecord = { name, path: join(this.dir, name), number, start, end: null, key: Math.round(this.utc(start)), bytes: 0, state: 'open', run, timeSource: 'pipeline' };
    this.byName.set(name, seg);
    return seg;
  }

  /** Set end, size and state of a segment; returns the record, or null if the ring no longer has it. */
  settle(name: string, end: Instant, state: 'closed' | 'cut-off'): SegmentRecord | null {
    const seg = this.byName.get(name);
    if (!seg) return null;
    settleRecord(this.clock, seg, end, state);
    return seg;
  }

  /** Record the current size of a file being written (for the byte budget and the stall watchdog). */
  setBytes(name: string, bytes: number): void {
    const seg = this.byName.get(name);
    if (seg) seg.bytes = bytes;
  }

  /** Forget a segment and delete its file (pins keep their own link). */
  remove(name: string, why: string): void {
    const seg = this.byName.get(name);
    if (!seg) return;
    this.byName.delete(name);
    void this.discard(seg.path, why);
  }

  /**
   * Delete the oldest segments until at most maxSegments files and maxBytes
   * bytes remain. A segment being written is never deleted. The index entry
   * goes at once, the file a moment later: pin() works from the index with
   * synchronous links, so it never links a file that is about to vanish.
   */
  prune(): VideoSegment[] {
    const removed: VideoSegment[] = [];
    const ordered = this.records();
    let count = ordered.length;
    let bytes = this.totalBytes();
    for (const seg of ordered) {
      if (count <= this.o.maxSegments && bytes <= this.o.maxBytes) break;
      if (seg.state === 'open') continue;
      this.byName.delete(seg.name);
      count--;
      bytes -= seg.bytes;
      const view = segmentView(this.clock, seg);
      removed.push(view);
      const end = view.endMs ?? view.startMs;
      if (this.overwrittenUntil === null || end > this.overwrittenUntil) this.overwrittenUntil = end;
      void this.discard(seg.path, 'ring full');
    }
    const oldest = this.records()[0];
    if (oldest) {
      const oldestMs = this.utc(oldest.start);
      this.gapList = this.gapList.filter((g) => g.to === null || this.utc(g.to) >= oldestMs);
    }
    return removed;
  }

  /** Write the index (temp file + rename). Calls made while a write runs coalesce into one more write. */
  save(): Promise<void> {
    if (this.saveRunning) {
      this.saveAgain = true;
      return this.saving;
    }
    this.saveRunning = true;
    this.saving = (async () => {
      try {
        do {
          this.saveAgain = false;
          const body = JSON.stringify({ version: INDEX_VERSION, lastRun: this.runCounter, segments: this.list(), gaps: this.gaps(), overwrittenUntil: this.overwrittenUntil });
          const tmp = join(this.dir, `${INDEX_FILE}.tmp`);
          await writeFile(tmp, body);
          await rename(tmp, join(this.dir, INDEX_FILE));
        } while (this.saveAgain);
      } catch (err) {
        this.o.log?.warn({ event: 'video.ring.index-save-failed', camera: this.o.camera, err: errText(err) });
      } finally {
        this.saveRunning = false;
      }
    })();
    return this.saving;
  }

  /** End of a segment from its packets (an instant of the same kind as its start); null if nothing is readable. */
  async probeEnd(seg: SegmentRecord): Promise<Instant | null> {
    const p = await probeVideoPackets(seg.path, this.o.tools);
    return p ? later(seg.start, (p.endPtsS - p.firstPtsS) * 1000) : null;
  }

  private async discard(path: string, why: string): Promise<void> {
    try {
      await unlink(path);
      this.o.log?.debug({ event: 'video.ring.deleted', camera: this.o.camera, path, why });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.o.log?.warn({ event: 'video.ring.delete-failed', camera: this.o.camera, path, err: errText(err) });
      }
    }
  }

  private async readIndex(): Promise<{ lastRun: number; segments: VideoSegment[]; gaps: RecordingGap[]; overwrittenUntil: number | null | undefined }> {
    const path = join(this.dir, INDEX_FILE);
    const empty = { lastRun: 0, segments: [], gaps: [], overwrittenUntil: null };
    if (!existsSync(path)) return empty;
    let raw: unknown;
    try {
      raw = JSON.parse(await readFile(path, 'utf8'));
    } catch (err) {
      this.o.log?.warn({ event: 'video.ring.index-unreadable', camera: this.o.camera, path, err: errText(err) }, 'segment index unreadable; rebuilding it from the files');
      return empty;
    }
    const r = raw as { version?: unknown; lastRun?: unknown; segments?: unknown; gaps?: unknown; overwrittenUntil?: unknown };
    if (r.version !== INDEX_VERSION || !Array.isArray(r.segments)) return empty;
    const segments = r.segments.filter(isSegment).map((s) => ({ ...s, path: join(this.dir, s.name) }));
    const gaps = Array.isArray(r.gaps) ? r.gaps.filter(isGap) : [];
    const overwrittenUntil = typeof r.overwrittenUntil === 'number' && Number.isFinite(r.overwrittenUntil) ? r.overwrittenUntil : r.overwrittenUntil === null ? null : undefined;
    return { lastRun: typeof r.lastRun === 'number' ? r.lastRun : 0, segments, gaps, overwrittenUntil };
  }
}

/** Set the end, state and size of a record (in the ring or held by a pin). */
export function settleRecord(clock: RecorderClock, seg: SegmentRecord, end: Instant, state: 'closed' | 'cut-off'): void {
  seg.end = utcOf(clock, end) < utcOf(clock, seg.start) ? seg.start : end;
  seg.state = state;
  try {
    seg.bytes = statSync(seg.path).size;
  } catch {
    // gone already: leave the last size
  }
}

function isSegment(x: unknown): x is VideoSegment {
  const s = x as Partial<VideoSegment> | null;
  return (
    !!s &&
    typeof s.name === 'string' &&
    SEGMENT_NAME.test(s.name) &&
    typeof s.number === 'number' &&
    Number.isFinite(s.startMs) &&
    (s.endMs === null || Number.isFinite(s.endMs)) &&
    (s.state === 'open' || s.state === 'closed' || s.state === 'cut-off') &&
    typeof s.run === 'number' &&
    (s.timeSource === 'pipeline' || s.timeSource === 'file')
  );
}

function isGap(x: unknown): x is RecordingGap {
  const g = x as Partial<RecordingGap> | null;
  return !!g && Number.isFinite(g.fromMs) && (g.toMs === null || Number.isFinite(g.toMs)) && typeof g.reason === 'string';
}

