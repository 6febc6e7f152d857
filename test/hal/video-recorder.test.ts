// VideoRecorder against real gst-launch-1.0 pipelines (videotestsrc, live,
// 160x120 at 10 fps, 1 s segments, a keyframe every second). Every wait has
// a deadline; the only processes signalled are the recorder's own children,
// by PID, and each test stops its recorders.

import { execFile } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { cutClip } from '../../hal/video/clip.ts';
import { alive } from '../helpers/process.ts';
import { nextEvent } from '../helpers/device-events.ts';
import { SIM_VIDEO_CAMERA } from '../helpers/media.ts';
import { splitGstDescription } from '../../hal/video/gst-launch.ts';
import {
  type PinnedSegment,
  VideoRecorder,
  type VideoRecorderEvents,
  type VideoRecorderOptions,
  type VideoRecorderStatus,
  type VideoSegment,
} from '../../hal/video/recorder.ts';
import { until } from '../../scripts/lib/until.ts';

const run = promisify(execFile);
const SIM = SIM_VIDEO_CAMERA.source;

/** The first `event` whose payload satisfies `pred`, or a rejection naming `what` and the recorder's status after `timeoutMs`. */
const next = <K extends keyof VideoRecorderEvents>(rec: VideoRecorder, event: K, pred: (payload: VideoRecorderEvents[K][0]) => boolean, what: string, timeoutMs = 15_000) =>
  nextEvent(rec, event, pred, what, timeoutMs, () => `status ${JSON.stringify(rec.status)}`);

function ringFiles(dir: string): string[] {
  return readdirSync(dir).filter((n) => /^seg\d+\.mkv$/.test(n));
}

async function firstPts(path: string): Promise<number> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time', '-of', 'csv=p=0', '-read_intervals', '%+#1', path], { timeout: 10_000 });
  return Number(stdout.trim().split('\n')[0]);
}

describe('VideoRecorder on real gst-launch-1.0 pipelines', () => {
  let dir: string;
  let recorders: VideoRecorder[];
  /** Children this test signalled (SIGSTOP/SIGKILL): made sure to be gone afterwards. */
  let signalled: number[];

  const make = (o: Partial<VideoRecorderOptions> = {}): VideoRecorder => {
    const rec = new VideoRecorder({ name: 'test', source: SIM, dir: join(dir, 'ring'), segmentS: 1, keyframeIntervalS: 1, stallMs: 8000, ...o });
    rec.on('error', () => {}); // asserted through 'status' where it matters
    recorders.push(rec);
    return rec;
  };

  const signal = (rec: VideoRecorder, sig: NodeJS.Signals): number => {
    const pid = rec.pid;
    if (pid === null) throw new Error(`recorder has no child to send ${sig} to`);
    signalled.push(pid);
    process.kill(pid, sig);
    return pid;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'busguard-video-rec-'));
    recorders = [];
    signalled = [];
  });

  afterEach(async () => {
    await Promise.all(recorders.map((r) => r.stop()));
    for (const pid of signalled) {
      if (!alive(pid)) continue;
      process.kill(pid, 'SIGCONT');
      process.kill(pid, 'SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('keeps a ring bounded by count, in time order while file numbers wrap, and pinned segments survive the reuse of their names', async () => {
    const rec = make({ maxSegments: 3, fileNumbers: 5 });
    const closed: VideoSegment[] = [];
    const nameOrderDiffered: boolean[] = [];
    rec.on('segment', (s) => {
      closed.push(s);
      const list = rec.segments();
      const byName = [...list].sort((a, b) => a.name.localeCompare(b.name)).map((s) => s.name);
      nameOrderDiffered.push(byName.join() !== list.map((s) => s.name).join());
    });
    const t0 = Date.now();
    await rec.start();
    await next(rec, 'segment', () => closed.length >= 2, '2 closed segments');
    const pinDir = join(dir, 'pins');
    const pinned: PinnedSegment[] = rec.pin(closed[0]!.startMs, closed[1]!.endMs!, pinDir);
    expect(pinned.map((p) => p.name)).toEqual([closed[0]!.name, closed[1]!.name]);
    const pinnedPts = await Promise.all(pinned.map((p) => firstPts(p.path)));

    // fileNumbers 5: the seventh segment reuses a number, the eighth the pinned ones' numbers.
    await next(rec, 'segment', () => closed.length >= 8, '8 closed segments', 25_000);

    const names = closed.map((s) => s.name);
    expect(new Set(names).size).toBeLessThan(names.length); // numbers came round
    for (let i = 0; i < closed.length; i++) {
      const s = closed[i]!;
      expect(s.state).toBe('closed');
      expect(s.startMs).toBeGreaterThan(t0 - 1000);
      // At least the segment length; at most one keyframe interval more (the split waits for a keyframe).
      expect(s.endMs! - s.startMs).toBeGreaterThan(900);
      expect(s.endMs! - s.startMs).toBeLessThan(2000);
      // One run: each segment starts exactly where the one before ends.
      if (i > 0) expect(Math.abs(s.startMs - closed[i - 1]!.endMs!)).toBeLessThan(1);
    }
    const list = rec.segments();
    expect(list.length).toBeLessThanOrEqual(3);
    for (let i = 1; i < list.length; i++) expect(list[i]!.startMs).toBeGreaterThan(list[i - 1]!.startMs);
    expect(nameOrderDiffered).toContain(true); // time order was not name order, and segments() kept time order
    await until(() => ringFiles(rec.dir).length <= 3, 5000, 'at most 3 segment files on disk');

    // The ring deleted the pinned names and splitmuxsink wrote new files under
    // them; the pinned links still hold the original video.
    for (let i = 0; i < pinned.length; i++) {
      expect(names.lastIndexOf(pinned[i]!.name)).toBeGreaterThan(i);
      expect(await firstPts(pinned[i]!.path)).toBeCloseTo(pinnedPts[i]!, 3);
      expect(await firstPts(pinned[i]!.path)).toBeLessThan(2.5);
    }
  });

  it('keeps a ring bounded by bytes', async () => {
    const maxBytes = 30_000; // about four segments of this test picture
    const rec = make({ maxSegments: 50, maxBytes });
    const closed: VideoSegment[] = [];
    let overBudget = 0;
    rec.on('segment', (s) => {
      closed.push(s);
      const finished = rec.segments().filter((x) => x.state !== 'open');
      if (finished.reduce((n, x) => n + x.bytes, 0) > maxBytes) overBudget++;
    });
    await rec.start();
    await next(rec, 'segment', () => closed.length >= 7, '7 closed segments', 20_000);
    const recorded = closed.reduce((n, s) => n + s.bytes, 0);
    expect(recorded, 'the test picture must make more than maxBytes in 7 segments').toBeGreaterThan(maxBytes * 1.3);
    expect(overBudget).toBe(0);
    const list = rec.segments();
    expect(list.length).toBeLessThan(7);
    expect(list[0]!.startMs).toBeGreaterThan(closed[0]!.startMs); // the oldest went first
    await until(() => !existsSync(closed[0]!.path), 5000, 'the oldest file deleted');
    // What is on disk against the ring as it is at the same moment: the
    // closed segments stay within maxBytes; the file being written may carry
    // the total over for a moment (it is never deleted), and splitmuxsink may
    // have opened the next file an instant before the ring hears of it.
    const now = new Map(rec.segments().map((s) => [basename(s.path), s]));
    const files = ringFiles(rec.dir);
    const closedOnDisk = files.filter((f) => now.has(f) && now.get(f)!.state !== 'open').reduce((n, f) => n + (existsSync(join(rec.dir, f)) ? statSync(join(rec.dir, f)).size : 0), 0);
    expect(closedOnDisk).toBeLessThanOrEqual(maxBytes);
    expect(files.filter((f) => !now.has(f)).length, 'files on disk the ring does not know').toBeLessThanOrEqual(1);
  });

  it('restarts a SIGKILLed gst-launch-1.0 with growing backoff, records the gap, and a clip across it says so', async () => {
    const rec = make({ restartMinMs: 400, restartMaxMs: 5000, random: () => 1 });
    const statuses: (VideoRecorderStatus & { at: number })[] = [];
    rec.on('status', (s) => statuses.push({ ...s, at: performance.now() }));
    await rec.start();
    await next(rec, 'segment', (s) => s.run === 1 && rec.segments().filter((x) => x.state === 'closed').length >= 2, '2 closed segments');

    const killedAtMs = Date.now();
    const killedAt = performance.now();
    const pid1 = signal(rec, 'SIGKILL');
    const restarting = await next(rec, 'status', (s) => s.state === 'restarting', 'restarting status');
    expect(restarting.restartInMs).toBe(400);
    expect(restarting.detail).toMatch(/killed by SIGKILL; restarting in 0\.4 s/);
    const started = await next(rec, 'status', (s) => s.state === 'starting', 'second run');
    expect(started.pid).not.toBe(pid1);
    expect(statuses.at(-1)!.at - killedAt).toBeGreaterThanOrEqual(390);
    expect(alive(pid1)).toBe(false);

    // Killed again before it finished a segment: the next delay doubles.
    signal(rec, 'SIGKILL');
    const again = await next(rec, 'status', (s) => s.state === 'restarting', 'second restarting status');
    expect(again.restartInMs).toBe(800);

    const gap = await next(rec, 'gap', () => true, 'the gap to close when video resumes');
    expect(gap.fromMs).toBeLessThanOrEqual(killedAtMs);
    expect(gap.toMs!).toBeGreaterThan(killedAtMs + 1000); // 400 + 800 ms of backoff at least
    expect(gap.reason).toMatch(/SIGKILL/);
    await next(rec, 'segment', (s) => s.state === 'closed' && s.startMs > gap.toMs! + 500, 'a segment after the restart');

    const pinDir = join(dir, 'pins');
    const from = gap.fromMs - 1500;
    const to = gap.toMs! + 1000;
    const out = join(dir, 'across-gap.mp4');
    const clip = await cutClip({ segments: rec.pin(from, to, pinDir), fromMs: from, toMs: to, out });
    expect(clip.gaps.length).toBe(1);
    const [gFrom, gTo] = clip.gaps[0]!;
    expect(gFrom).toBeLessThanOrEqual(killedAtMs);
    expect(gTo).toBeGreaterThan(killedAtMs);
    expect(Math.abs(gTo - gap.toMs!)).toBeLessThan(5);
    const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'format_tags=comment,description', '-of', 'json', out], { timeout: 10_000 });
    const tags = (JSON.parse(stdout) as { format: { tags: { comment: string; description: string } } }).format.tags;
    expect((JSON.parse(tags.comment) as Record<string, unknown>)['busguard:gaps']).toEqual(clip.gaps);
    expect(tags.description).toMatch(/NO VIDEO .* \(\d+\.\d s\)/);
  });

  it('kills and restarts a pipeline that stalls (SIGSTOP)', async () => {
    const rec = make({ stallMs: 2500, restartMinMs: 200 });
    await rec.start();
    await next(rec, 'segment', (s) => s.state === 'closed', 'a closed segment');
    const pid = signal(rec, 'SIGSTOP');
    const restarting = await next(rec, 'status', (s) => s.state === 'restarting', 'the watchdog to act', 15_000);
    expect(restarting.detail).toMatch(/stalled: no new segment and no file growth in 2\.5 s/);
    await until(() => !alive(pid), 5000, 'the stalled child gone');
    const seg = await next(rec, 'segment', (s) => s.state === 'closed' && s.run > 1, 'a segment from the new run');
    expect(rec.gaps().some((g) => /stalled/.test(g.reason) && g.toMs !== null && g.toMs <= seg.startMs)).toBe(true);
  });

  it('stops with EOS, saves its index, and a new recorder on the folder finds the ring with a gap between', async () => {
    const rec = make();
    await rec.start();
    await next(rec, 'segment', () => rec.segments().filter((s) => s.state === 'closed').length >= 2, '2 closed segments');
    const pid = rec.pid!;
    await rec.stop();
    expect(rec.pid).toBeNull();
    expect(alive(pid)).toBe(false);
    const before = rec.segments();
    expect(before.every((s) => s.state === 'closed')).toBe(true);
    expect(existsSync(join(rec.dir, 'index.json'))).toBe(true);

    const rec2 = make();
    await rec2.start();
    const first = await next(rec2, 'segment', () => true, 'a segment from the new recorder');
    const after = rec2.segments();
    for (const s of before) expect(after.find((x) => x.name === s.name && x.startMs === s.startMs)).toBeDefined();
    for (let i = 1; i < after.length; i++) expect(after[i]!.startMs).toBeGreaterThan(after[i - 1]!.startMs);
    const gap = rec2.gaps().find((g) => g.reason === 'recorder stopped');
    expect(gap?.fromMs).toBeCloseTo(before.at(-1)!.endMs!, 0);
    expect(gap?.toMs).toBeLessThanOrEqual(first.startMs);
  });

  it('restarts a source that ends its stream (EOS), whether gst-launch-1.0 exits or hangs after it', async () => {
    // 15 buffers at 10 fps: the source sends EOS after 1.5 s.
    const rec = make({ source: 'videotestsrc is-live=true num-buffers=15 ! video/x-raw,width=160,height=120,framerate=10/1', restartMinMs: 200 });
    await rec.start();
    const restarting = await next(rec, 'status', (s) => s.state === 'restarting', 'a restart after EOS');
    expect(restarting.detail).toMatch(/exited with code 0|did not exit within 2000 ms/);
    const seg = await next(rec, 'segment', (s) => s.run === 2, 'a segment from the second run');
    expect(rec.segments().filter((s) => s.run === 1).map((s) => s.state)).toEqual(['closed', 'closed']);
    expect(seg.startMs).toBeGreaterThan(rec.segments()[1]!.endMs!);
  });

  it('reports a source that cannot start, and backs off', async () => {
    const rec = make({ source: 'v4l2src device=/dev/busguard-no-such-camera', restartMinMs: 200, random: () => 1 });
    const errors: Error[] = [];
    rec.on('error', (e) => errors.push(e));
    await rec.start();
    const first = await next(rec, 'status', (s) => s.state === 'restarting', 'a failed start');
    const second = await next(rec, 'status', (s) => s.state === 'restarting', 'a second failed start');
    expect([first.restartInMs, second.restartInMs]).toEqual([200, 400]);
    expect(errors[0]?.message).toMatch(/video camera test: gst-launch-1.0 exited with code \d+: ERROR: .*\/dev\/busguard-no-such-camera.*restarting in 0\.2 s/);
  });

  it('rejects sources it cannot record from, with what to change', () => {
    expect(() => make({ source: 'videotestsrc pattern=ball' })).toThrow(/is-live=true/);
    expect(() => make({ source: `${SIM} ! filesink location=/tmp/x` })).toThrow(/contains a sink/);
    expect(() => make({ source: `${SIM} !` })).toThrow(/starts or ends with "!"/);
    expect(() => make({ maxSegments: 5, fileNumbers: 6 })).toThrow(/fileNumbers 6 must be/);
    expect(() => make({ segmentS: 1, keyframeIntervalS: 2 })).toThrow(/keyframeIntervalS 2 exceeds segmentS 1/);
  });

  it('splits a source fragment as a shell would', () => {
    expect(splitGstDescription(`rtspsrc location="rtsp://cam/a b" latency=200 ! rtph264depay`)).toEqual(['rtspsrc', 'location=rtsp://cam/a b', 'latency=200', '!', 'rtph264depay']);
    expect(splitGstDescription(`v4l2src device='/dev/video 0' ! video/x-raw,width=640`)).toEqual(['v4l2src', 'device=/dev/video 0', '!', 'video/x-raw,width=640']);
    expect(() => splitGstDescription('v4l2src device="/dev/video0')).toThrow(/unbalanced/);
  });
});
