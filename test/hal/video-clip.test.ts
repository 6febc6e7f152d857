// Clips and footage requests: cut from a real recorder's ring (gst-launch-1.0
// videotestsrc), checked with ffprobe and exiftool as a receiver would; and
// cutClip on segments made with ffmpeg, where the colour of each segment
// shows the order they were joined in.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureAlarmClip } from '../../hal/video/alarm-clip.ts';
import { ClipError, type TrackPoint, cutClip, iso6709, parseIso6709 } from '../../hal/video/clip.ts';
import { cutFootage, footageCoverage } from '../../hal/video/footage.ts';
import type { VideoRecorder } from '../../hal/video/recorder.ts';
import { until } from '../../scripts/lib/until.ts';
import { recordingRing } from '../helpers/video-ring.ts';

const run = promisify(execFile);
const KEYFRAME_MS = 1000;
const FRAME_MS = 100;
/** A fix in Xi'an, with altitude. */
const FIX = { lat: 34.26101, lon: 108.94202, altM: 405.5 };

async function formatTags(file: string): Promise<{ durationS: number; tags: Record<string, string> }> {
  const { stdout } = await run('ffprobe', ['-v', 'error', '-show_entries', 'format=duration:format_tags', '-of', 'json', file], { timeout: 10_000 });
  const f = (JSON.parse(stdout) as { format: { duration: string; tags: Record<string, string> } }).format;
  return { durationS: Number(f.duration), tags: f.tags };
}

async function exifGps(file: string): Promise<{ GPSLatitude?: number; GPSLongitude?: number }> {
  const { stdout } = await run('exiftool', ['-n', '-j', '-GPSLatitude', '-GPSLongitude', file], { timeout: 10_000 });
  return (JSON.parse(stdout) as { GPSLatitude?: number; GPSLongitude?: number }[])[0]!;
}

/** A track along a straight line, one fix a second. */
function trackAround(fromMs: number, toMs: number): TrackPoint[] {
  const pts: TrackPoint[] = [];
  for (let t = fromMs - 3000, i = 0; t <= toMs + 3000; t += 1000, i++) pts.push({ t, lat: FIX.lat + i * 1e-4, lon: FIX.lon + i * 1e-4 });
  return pts;
}

type Geo = {
  type: string;
  features: { type: string; geometry: { type: string; coordinates: unknown }; properties: Record<string, unknown> }[];
};

/** The checks of RFC 7946 a reader relies on. */
function expectValidGeoJson(geo: Geo): void {
  expect(geo.type).toBe('FeatureCollection');
  const isPosition = (p: unknown) =>
    Array.isArray(p) && (p.length === 2 || p.length === 3) && p.every((x) => typeof x === 'number') && Math.abs(p[0] as number) <= 180 && Math.abs(p[1] as number) <= 90;
  for (const f of geo.features) {
    expect(f.type).toBe('Feature');
    expect(f.properties).toBeTypeOf('object');
    if (f.geometry.type === 'Point') expect(isPosition(f.geometry.coordinates)).toBe(true);
    else if (f.geometry.type === 'LineString') {
      const coords = f.geometry.coordinates as unknown[];
      expect(coords.length).toBeGreaterThanOrEqual(2);
      for (const p of coords) expect(isPosition(p)).toBe(true);
    } else throw new Error(`unexpected geometry ${f.geometry.type}`);
  }
}

describe('clips and footage requests from a live ring', () => {
  let dir: string;
  let rec: VideoRecorder;
  let firstStartMs: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'busguard-video-clip-'));
    // 8 one-second segments: about 7 s of footage, so the first seconds are overwritten during the file.
    rec = await recordingRing({ name: 'front', dir: join(dir, 'ring'), maxSegments: 8 }, 4);
    firstStartMs = rec.segments()[0]!.startMs;
  });

  afterAll(async () => {
    await rec?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('cuts an alarm clip over [press − pre, press + post] within one keyframe interval, geotagged, with a GeoJSON sidecar', async () => {
    const pressMs = rec.now();
    const preS = 2.5;
    const postS = 2;
    const pinDir = join(dir, 'pins-alarm');
    const out = join(dir, 'alarm.mp4');
    const track = trackAround(pressMs - preS * 1000, pressMs + postS * 1000);
    const job = captureAlarmClip(rec, { press: { utc: pressMs }, preS, postS, pinDir, out, location: FIX, track: () => track, meta: { alarmId: 'a-1' } });
    // The pre-roll is pinned before captureAlarmClip returns.
    expect(job.pinned.length).toBeGreaterThanOrEqual(3);
    expect(job.pinned[0]!.startMs).toBeLessThanOrEqual(pressMs - preS * 1000);
    for (const p of job.pinned) expect(existsSync(p.path)).toBe(true);
    const clip = await job.done;

    const fromMs = pressMs - preS * 1000;
    const toMs = pressMs + postS * 1000;
    expect(clip.gaps).toEqual([]);
    expect(clip.coveredFromMs).toBeLessThanOrEqual(fromMs + 1);
    expect(clip.coveredFromMs).toBeGreaterThanOrEqual(fromMs - KEYFRAME_MS - 1);
    expect(Math.abs(clip.coveredToMs - toMs)).toBeLessThan(FRAME_MS + 1);
    const { durationS, tags } = await formatTags(out);
    expect(clip.durationS).toBe(durationS);
    expect(durationS).toBeGreaterThanOrEqual(preS + postS - FRAME_MS / 1000);
    expect(durationS).toBeLessThanOrEqual(preS + postS + (KEYFRAME_MS + FRAME_MS) / 1000);

    // The location as ffprobe and exiftool read it: the fix to the tag's 4 decimals.
    const loc = parseIso6709(tags.location ?? '');
    expect(loc).not.toBeNull();
    expect(loc!.lat).toBeCloseTo(FIX.lat, 4);
    expect(loc!.lon).toBeCloseTo(FIX.lon, 4);
    expect(loc!.altM).toBeCloseTo(FIX.altM, 1);
    const exif = await exifGps(out);
    expect(Math.abs(exif.GPSLatitude! - FIX.lat)).toBeLessThan(1e-4);
    expect(Math.abs(exif.GPSLongitude! - FIX.lon)).toBeLessThan(1e-4);
    const comment = JSON.parse(tags.comment!) as Record<string, unknown>;
    expect(comment['busguard:gaps']).toEqual([]);
    expect(comment['busguard:press']).toBe(pressMs);
    expect(comment['busguard:meta']).toMatchObject({ alarmId: 'a-1', camera: 'front' });

    expect(clip.sha256).toBe(createHash('sha256').update(readFileSync(out)).digest('hex'));
    const geo = JSON.parse(readFileSync(clip.sidecar, 'utf8')) as Geo;
    expectValidGeoJson(geo);
    const line = geo.features.find((f) => f.geometry.type === 'LineString')!;
    expect((line.properties.coordTimes as string[]).length).toBe((line.geometry.coordinates as unknown[]).length);
    const press = geo.features.find((f) => f.properties.role === 'press')!;
    expect(press.geometry.coordinates).toEqual([FIX.lon, FIX.lat, FIX.altM]);
    expect(press.properties.time).toBe(new Date(pressMs).toISOString());
    // Pins are released once the clip is cut.
    await until(() => !existsSync(pinDir), 5000, 'the pin folder removed');
  });

  it('answers a footage request inside the ring with a clip', async () => {
    const toMs = rec.now() - 1500;
    const fromMs = toMs - 2500;
    const answer = await cutFootage(rec, { fromMs, toMs, out: join(dir, 'request.mp4'), pinDir: join(dir, 'pins-req'), location: FIX });
    expect(answer.coverage.status).toBe('full');
    expect(answer.coverage.message).toMatch(/is in the ring/);
    expect(answer.clip!.gaps).toEqual([]);
    const { durationS } = await formatTags(answer.clip!.file);
    expect(durationS).toBeGreaterThanOrEqual(2.5 - FRAME_MS / 1000);
    expect(durationS).toBeLessThanOrEqual(2.5 + (KEYFRAME_MS + FRAME_MS) / 1000);
  });

  it('answers "no longer in the ring" for a window already overwritten, and cuts what is left of one partly overwritten', async () => {
    await until(() => rec.segments()[0]!.startMs > firstStartMs + 2000, 20_000, 'the first segments overwritten');
    const gone = await cutFootage(rec, { fromMs: firstStartMs, toMs: firstStartMs + 1500, out: join(dir, 'gone.mp4'), pinDir: join(dir, 'pins-gone') });
    expect(gone.coverage.status).toBe('none');
    expect(gone.clip).toBeNull();
    expect(gone.coverage.missing).toEqual([{ fromMs: firstStartMs, toMs: firstStartMs + 1500, reason: 'overwritten' }]);
    expect(gone.coverage.message).toMatch(/^footage .* is no longer in the ring \(overwritten; the oldest footage in the ring starts at /);
    expect(existsSync(join(dir, 'gone.mp4'))).toBe(false);

    const oldest = rec.segments()[0]!.startMs;
    const part = await cutFootage(rec, { fromMs: oldest - 3000, toMs: oldest + 1500, out: join(dir, 'part.mp4'), pinDir: join(dir, 'pins-part') });
    expect(part.coverage.status).toBe('partial');
    expect(part.coverage.missing[0]).toMatchObject({ fromMs: oldest - 3000, reason: 'overwritten' });
    expect(part.coverage.message).toMatch(/only partly in the ring: .* is no longer in the ring/);
    expect(part.clip!.gaps[0]![0]).toBeCloseTo(oldest - 3000, 2);
    expect(part.clip!.gaps[0]![1]).toBeGreaterThanOrEqual(oldest - 1);
    const comment = JSON.parse((await formatTags(part.clip!.file)).tags.comment!) as Record<string, unknown>;
    expect(comment['busguard:gaps']).toEqual(part.clip!.gaps);
  });
});

describe('cutClip on prepared segments', () => {
  let dir: string;
  const t0 = Date.UTC(2026, 4, 1, 8, 0, 0);

  /** A 1 s segment of one colour, its timestamps starting at `ptsS` (as splitmuxsink's do: running time). */
  async function segment(name: string, colour: string, ptsS: number): Promise<string> {
    const path = join(dir, name);
    await run(
      'ffmpeg',
      ['-v', 'error', '-y', '-f', 'lavfi', '-i', `color=c=${colour}:s=64x48:r=10:d=1`, '-c:v', 'libx264', '-g', '10', '-pix_fmt', 'yuv420p', '-output_ts_offset', String(ptsS), '-f', 'matroska', path],
      { timeout: 20_000 },
    );
    return path;
  }

  async function colourAt(file: string, s: number): Promise<number[]> {
    const { stdout } = await run('ffmpeg', ['-v', 'error', '-ss', String(s), '-i', file, '-frames:v', '1', '-vf', 'scale=1:1', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'], {
      encoding: 'buffer',
      timeout: 10_000,
    });
    return [...stdout.subarray(0, 3)];
  }

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'busguard-video-cut-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('joins segments in time order, not by name, and states the gap between them', async () => {
    // Names as after a ring wrap: the newest has the lowest number.
    const red = await segment('seg00007.mkv', 'red', 12);
    const green = await segment('seg00008.mkv', 'green', 13);
    const blue = await segment('seg00000.mkv', 'blue', 20);
    const segments = [
      { path: blue, startMs: t0 + 3500, endMs: t0 + 4500 },
      { path: red, startMs: t0, endMs: t0 + 1000 },
      { path: green, startMs: t0 + 1000, endMs: t0 + 2000 },
    ];
    const out = join(dir, 'ordered.mp4');
    const where = { lat: -33.8688, lon: 151.2093 };
    const clip = await cutClip({ segments, fromMs: t0, toMs: t0 + 4500, out, location: where });
    expect(clip.gaps).toEqual([[t0 + 2000, t0 + 3500]]);
    expect(clip.timeline).toEqual([
      [t0, t0 + 1000, 0],
      [t0 + 1000, t0 + 2000, 1],
      [t0 + 3500, t0 + 4500, 2],
    ]);
    expect(clip.durationS).toBeCloseTo(3, 1);
    const [r, g, b] = await Promise.all([colourAt(out, 0.5), colourAt(out, 1.5), colourAt(out, 2.5)]);
    expect(r![0]).toBeGreaterThan(150);
    expect(g![1]).toBeGreaterThan(80);
    expect(g![0]).toBeLessThan(80);
    expect(b![2]).toBeGreaterThan(150);
    const { tags } = await formatTags(out);
    expect(tags.description).toMatch(/NO VIDEO 2026-05-01T08:00:02\.000Z to 2026-05-01T08:00:03\.500Z \(1\.5 s\)/);
    expect(tags.location).toMatch(/^-33\.8688\+151\.2093/);
    const exif = await exifGps(out);
    expect(Math.abs(exif.GPSLatitude! - where.lat)).toBeLessThan(1e-4);
    expect(Math.abs(exif.GPSLongitude! - where.lon)).toBeLessThan(1e-4);
  });

  it('starts a cut between keyframes on the keyframe before it', async () => {
    const seg = await segment('seg00001.mkv', 'white', 5);
    // -g 10 at 10 fps: one keyframe, at the start. A cut from 0.45 s starts there.
    const clip = await cutClip({ segments: [{ path: seg, startMs: t0, endMs: t0 + 1000 }], fromMs: t0 + 450, toMs: t0 + 800, out: join(dir, 'kf.mp4') });
    expect(clip.coveredFromMs).toBe(t0);
    expect(clip.coveredToMs).toBeCloseTo(t0 + 800, 0);
  });

  it('refuses a window no segment covers', async () => {
    const seg = await segment('seg00002.mkv', 'black', 0);
    const attempt = cutClip({ segments: [{ path: seg, startMs: t0, endMs: t0 + 1000 }], fromMs: t0 + 5000, toMs: t0 + 6000, out: join(dir, 'none.mp4') });
    await expect(attempt).rejects.toThrow(ClipError);
    await expect(attempt).rejects.toThrow(/no recorded video between 2026-05-01T08:00:05.000Z and 2026-05-01T08:00:06.000Z/);
  });

  it('writes ISO 6709 as ffmpeg reads it, and parses it back', () => {
    expect(iso6709({ lat: 5.1, lon: 8.2 })).toBe('+05.1000+008.2000/');
    expect(iso6709({ lat: -33.8688, lon: -151.2093, altM: -2.25 })).toBe('-33.8688-151.2093-2.3/');
    expect(parseIso6709('+34.2610+108.9420+420.500000/')).toEqual({ lat: 34.261, lon: 108.942, altM: 420.5 });
    expect(parseIso6709('+95.0000+008.0000/')).toBeNull();
  });

  it('reports coverage of a window with reasons for each missing part', () => {
    const now = t0 + 10_000;
    const c = footageCoverage(
      [
        { startMs: t0 + 2000, endMs: t0 + 4000 },
        { startMs: t0 + 6000, endMs: null },
      ],
      t0,
      t0 + 12_000,
      { nowMs: now, gaps: [{ fromMs: t0 + 4000, toMs: t0 + 6000, reason: 'gst-launch-1.0 killed by SIGKILL' }], overwrittenBefore: t0 + 2000 },
    );
    expect(c.status).toBe('partial');
    expect(c.available).toEqual([
      [t0 + 2000, t0 + 4000],
      [t0 + 6000, now],
    ]);
    expect(c.missing).toEqual([
      { fromMs: t0, toMs: t0 + 2000, reason: 'overwritten' },
      { fromMs: t0 + 4000, toMs: t0 + 6000, reason: 'not-recorded', detail: 'gst-launch-1.0 killed by SIGKILL' },
      { fromMs: now, toMs: t0 + 12_000, reason: 'not-yet-recorded' },
    ]);
  });

  it('a window from before the recorder ever recorded is "not recorded", never "overwritten"; one the ring overwrote in part says both', () => {
    const segs = [{ startMs: t0 + 5000, endMs: t0 + 9000 }];
    // The ring has never deleted anything: what is before its oldest footage was never recorded.
    const never = footageCoverage(segs, t0, t0 + 3000, { nowMs: t0 + 10_000 });
    expect(never.missing).toEqual([{ fromMs: t0, toMs: t0 + 3000, reason: 'before-recording' }]);
    expect(never.message).toMatch(/is not recorded \(before this camera's earliest recording in its ring, which starts at .*; nothing was overwritten\)$/);
    expect(never.message).not.toMatch(/overwritten;/);
    // It overwrote up to t0 + 1000, then the recorder was off until t0 + 5000 (no gap known).
    const both = footageCoverage(segs, t0, t0 + 3000, { nowMs: t0 + 10_000, overwrittenBefore: t0 + 1000 });
    expect(both.missing.map((m) => [m.fromMs - t0, m.toMs - t0, m.reason])).toEqual([
      [0, 1000, 'overwritten'],
      [1000, 3000, 'before-recording'],
    ]);
  });
});
