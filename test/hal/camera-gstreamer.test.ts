// The GStreamer still driver on real GStreamer: gst-launch-1.0 children
// running videotestsrc, a V4L2 device that is not there, a pipeline that
// never produces a frame. Every failure must come back as a CameraError
// naming the source, gst-launch-1.0's own words and what to check, within
// the deadline, with no process left behind; the photo must come out of the
// SnapshotTaker geotagged exactly like a VC0706's.

import { execFile } from 'node:child_process';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GstreamerStillCamera, type GstreamerStillOptions, stillArgs } from '../../hal/camera/gstreamer-still.ts';
import { jpegDimensions, jpegLength } from '../../hal/camera/jpeg.ts';
import { CamerasConfigSchema, SnapshotTaker } from '../../firmware/snapshots.ts';
import type { Fix } from '../../protocol/messages.ts';
import { until } from '../../scripts/lib/until.ts';
import { cameraConfigProblems, parseCameras } from '../helpers/camera-config.ts';
import { cameraFailure } from '../helpers/camera-failure.ts';

const LIVE_320 = 'videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=10/1';
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });

describe('gstreamer camera config', () => {
  it('takes source, width, height, quality and timeoutMs, with defaults', () => {
    const [cam] = parseCameras([{ name: 'cabin', driver: 'gstreamer', source: LIVE_320, width: 160 }]);
    expect(cam).toEqual({ driver: 'gstreamer', name: 'cabin', source: LIVE_320, width: 160, quality: 85, timeoutMs: 10_000 });
  });

  it("refuses another driver's keys, a missing source, a source that is not only a source, and values out of range", () => {
    expect(cameraConfigProblems([{ name: 'cabin', driver: 'gstreamer', source: LIVE_320, port: '/dev/ttyUSB1' }])).toEqual([
      'unknown key "cameras.0.port": not an option (see docs/configuration.md)',
    ]);
    expect(cameraConfigProblems([{ name: 'cabin', driver: 'gstreamer' }])).toEqual(['key "cameras.0.source" missing: expected string']);
    expect(cameraConfigProblems([{ name: 'cabin', driver: 'gstreamer', source: 'v4l2src ! jpegenc ! filesink location=/tmp/x.jpg' }])[0]).toMatch(
      /^key "cameras\.0\.source" = .*: contains jpegenc; give only the source part/,
    );
    expect(cameraConfigProblems([{ name: 'cabin', driver: 'gstreamer', source: 'v4l2src !' }])[0]).toMatch(/starts or ends with "!"/);
    expect(cameraConfigProblems([{ name: 'cabin', driver: 'gstreamer', source: "rtspsrc location='rtsp://cam/1" }])[0]).toMatch(/unbalanced '/);
    expect(cameraConfigProblems([{ name: 'cabin', driver: 'gstreamer', source: LIVE_320, quality: 101, timeoutMs: 100 }])).toEqual([
      'key "cameras.0.quality" = 101: Too big: expected number to be <=100',
      'key "cameras.0.timeoutMs" = 100: Too small: expected number to be >=500',
    ]);
  });
});

describe('gst-launch-1.0 arguments of a still', () => {
  it('source as a shell splits it, then convert, scale when asked, encode one frame, write it to stdout', () => {
    expect(stillArgs({ source: LIVE_320, width: 160, height: 120, quality: 70 })).toEqual([
      '-q',
      ...'videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=10/1'.split(' '),
      ...'! videoconvert ! videoscale ! video/x-raw,width=160,height=120,pixel-aspect-ratio=1/1 ! jpegenc quality=70 snapshot=true ! fdsink fd=1 sync=false'.split(' '),
    ]);
    expect(stillArgs({ source: 'v4l2src device="/dev/video 0"' }).slice(1, 5)).toEqual(['v4l2src', 'device=/dev/video 0', '!', 'videoconvert']);
  });

  it('gives rtspsrc TCP, a short jitter buffer and a TCP timeout inside the deadline, unless the source sets them', () => {
    const args = stillArgs({ source: 'rtspsrc location=rtsp://10.0.0.7/stream1 ! decodebin', timeoutMs: 5000 });
    expect(args.slice(1, 8)).toEqual(['rtspsrc', 'location=rtsp://10.0.0.7/stream1', 'protocols=tcp', 'latency=100', 'tcp-timeout=3000000', '!', 'decodebin']);
    const own = stillArgs({ source: 'rtspsrc location=rtsp://cam latency=0 protocols=udp ! decodebin' });
    expect(own.slice(1, 6)).toEqual(['rtspsrc', 'location=rtsp://cam', 'latency=0', 'protocols=udp', 'tcp-timeout=6000000']);
  });
});

/** Whether a process (or, with a negative number, a process group) still exists. */
function exists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

describe('GStreamer still camera on real GStreamer', () => {
  let cam: GstreamerStillCamera | null = null;
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cam-gst-'));
  });
  afterEach(async () => {
    await cam?.close();
    cam = null;
    await rm(dir, { recursive: true, force: true });
  });
  const open = (o: Partial<GstreamerStillOptions> & { source: string }) => (cam = new GstreamerStillCamera({ log, ...o }));

  it('a live videotestsrc gives one whole JPEG of the asked width and height, and another at the next snapshot', async () => {
    const c = open({ source: LIVE_320, width: 160, height: 120, timeoutMs: 5000 });
    const ready = await c.connect();
    expect(ready.summary).toMatch(/^gives 160x120 stills from "videotestsrc is-live=true .*" \(\d+ bytes in \d+ ms\)$/);
    for (let i = 0; i < 2; i++) {
      const jpeg = await c.snapshot();
      expect(jpegDimensions(jpeg)).toEqual({ width: 160, height: 120 });
      expect(jpegLength(jpeg)).toBe(jpeg.length);
    }
    for (const pid of c.pids) expect(exists(pid)).toBe(false);
  });

  it('without width and height the picture has the source size; one side alone keeps the aspect ratio', async () => {
    expect(jpegDimensions(await open({ source: LIVE_320 }).snapshot())).toEqual({ width: 320, height: 240 });
    await cam?.close();
    expect(jpegDimensions(await open({ source: LIVE_320, width: 64 }).snapshot())).toEqual({ width: 64, height: 48 });
    await cam?.close();
    expect(jpegDimensions(await open({ source: LIVE_320, height: 60 }).snapshot())).toEqual({ width: 80, height: 60 });
  });

  it('a V4L2 device that is not there: a source error naming the source, what GStreamer said and what to check, well within the timeout', async () => {
    const source = `v4l2src device=${join(dir, 'video9')}`;
    const { err, ms } = await cameraFailure(open({ source, timeoutMs: 8000 }).snapshot());
    expect(err.kind).toBe('source');
    expect(err.detail).toMatchObject({ path: source, command: 'snapshot' });
    expect(err.detail.toolError).toMatch(/^ERROR: from element .*v4l2src0: Cannot identify device/);
    expect(err.message).toContain(`"${source}"`);
    expect(err.message).toMatch(/gst-launch-1\.0 failed: v4l2src0: Cannot identify device '.*video9'\. \(system error: No such file or directory\); check the device .*group video/);
    expect(ms).toBeLessThan(8000);
  });

  it('an element GStreamer does not have: says which, and what to install', async () => {
    const { err } = await cameraFailure(open({ source: 'nosuchcamsrc' }).connect());
    expect(err.kind).toBe('source');
    expect(err.message).toMatch(/connect: gst-launch-1\.0 failed: no element "nosuchcamsrc"; GStreamer has no element "nosuchcamsrc": install the plugins/);
  });

  it('a pipeline that never gives a frame is killed at the deadline, with its whole process group', async () => {
    const c = open({ source: 'videotestsrc is-live=true ! valve drop=true', timeoutMs: 1500 });
    const { err, ms } = await cameraFailure(c.snapshot());
    expect(err.kind).toBe('timeout');
    expect(err.message).toMatch(/snapshot: no picture within 1500 ms; gst-launch-1\.0 killed after \d+ ms; check that the source gives video at all/);
    expect(ms).toBeGreaterThanOrEqual(1490);
    expect(ms).toBeLessThan(4000);
    const pid = c.pids.at(-1) as number;
    expect(exists(pid)).toBe(false); // reaped before the error was given
    await until(() => !exists(-pid), 2000, `no process left in group ${pid}`);
  });

  it("close() ends a capture under way with 'io' at once, and later calls fail without starting anything", async () => {
    const c = open({ source: 'videotestsrc is-live=true ! valve drop=true', timeoutMs: 20_000 });
    const pending = cameraFailure(c.snapshot());
    await until(() => c.pids.length === 1, 5000, 'gst-launch-1.0 started');
    await c.close();
    const { err, ms } = await pending;
    expect(err.kind).toBe('io');
    expect(err.message).toContain('camera closed by the agent');
    expect(ms).toBeLessThan(3000);
    expect(exists(c.pids[0] as number)).toBe(false);
    expect((await cameraFailure(c.snapshot())).err.kind).toBe('io');
    expect(c.pids).toHaveLength(1);
  });

  it("gst-launch-1.0 missing: an 'io' error saying what to install", async () => {
    const { err } = await cameraFailure(open({ source: LIVE_320, gstLaunch: join(dir, 'gst-launch-1.0') }).snapshot());
    expect(err.kind).toBe('io');
    expect(err.message).toMatch(/gst-launch-1\.0 not found; install gstreamer1\.0-tools/);
  });

  it('keeps a whole picture when gst-launch-1.0 hangs after it (as 1.22 may at its end of stream), killing it after the grace time', async () => {
    const jpeg = await readFile(new URL('../fixtures/camera/testsrc-160x120.jpg', import.meta.url));
    // Stands in for gst-launch-1.0: writes a picture, then never exits.
    const fake = join(dir, 'hanging-gst-launch');
    await writeFile(fake, `#!/bin/sh\ncat '${join(dir, 'p.jpg')}'\nexec sleep 600\n`);
    await writeFile(join(dir, 'p.jpg'), jpeg);
    await chmod(fake, 0o755);
    const c = open({ source: LIVE_320, gstLaunch: fake, exitGraceMs: 300, timeoutMs: 5000 });
    const t0 = performance.now();
    expect((await c.snapshot()).equals(jpeg)).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3000);
    await until(() => !exists(-(c.pids[0] as number)), 2000, 'the hanging child and its sleep gone');
  });
});

function exiftool(file: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile('exiftool', ['-j', '-n', '-G1', file], (err, stdout) => (err ? reject(err) : resolve((JSON.parse(stdout) as Array<Record<string, unknown>>)[0]!)));
  });
}

describe('SnapshotTaker with a GStreamer camera', () => {
  it('the photo is geotagged like a VC0706 photo: EXIF GPS is the fix, the description names alarm and camera', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cam-gst-snap-'));
    const fix: Fix = { valid: true, lat: -33.8688123, lon: 151.2092955, altM: 58.2, speedMps: 4, trackDeg: 90, time: '2024-05-20T08:00:01.000Z', ageS: 0.2, stale: false, sats: 8, hdop: 1.1 };
    const taker = new SnapshotTaker(CamerasConfigSchema.parse([{ name: 'cabin', driver: 'gstreamer', source: LIVE_320, timeoutMs: 5000 }]), dir, log);
    try {
      const [r] = await taker.take('alarm-7', fix, () => new Date('2024-05-20T08:00:02Z'));
      if (!r?.ok) throw new Error(`snapshot failed: ${JSON.stringify(r)}`);
      expect(r.name).toBe('alarm-7-cabin.jpg');
      const tags = await exiftool(r.file);
      expect([tags['File:ImageWidth'], tags['File:ImageHeight']]).toEqual([320, 240]);
      expect(Math.abs((tags['GPS:GPSLatitude'] as number) - Math.abs(fix.lat))).toBeLessThan(1e-7);
      expect(Math.abs((tags['GPS:GPSLongitude'] as number) - fix.lon)).toBeLessThan(1e-7);
      expect([tags['GPS:GPSLatitudeRef'], tags['GPS:GPSLongitudeRef'], tags['GPS:GPSStatus']]).toEqual(['S', 'E', 'A']);
      expect(tags['GPS:GPSAltitude']).toBeCloseTo(58.2, 2);
      expect(tags['ExifIFD:DateTimeOriginal']).toBe('2024:05:20 08:00:02');
      expect(tags['IFD0:ImageDescription']).toBe('busguard alarm alarm-7, camera cabin; fix valid');
    } finally {
      await taker.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
