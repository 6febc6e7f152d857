// Snapshots on alarm through a real serial port: the simulated VC0706 on one
// end of a socat pair serving real JPEGs, the SnapshotTaker on the other.
// The EXIF is read back with exiftool, the tool a police analyst would use.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SimVc0706 } from '../../hal/camera/sim.ts';
import { geotagJpeg } from '../../firmware/geotag.ts';
import { CamerasConfigSchema, SnapshotTaker } from '../../firmware/snapshots.ts';
import type { Fix } from '../../protocol/messages.ts';
import { type PtyPair, openPtyPair } from '../helpers/pty.ts';

const FIXTURES = new URL('../fixtures/camera/', import.meta.url);
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });

function exiftool(file: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile('exiftool', ['-j', '-n', '-a', '-G1', file], (err, stdout) => (err ? reject(err) : resolve((JSON.parse(stdout) as Array<Record<string, unknown>>)[0]!)));
  });
}

const fix: Fix = {
  valid: true,
  lat: 34.2610123,
  lon: -108.9400456, // west, to check the reference letter
  altM: 405.3,
  speedMps: 8.5,
  trackDeg: 181.25,
  time: '2024-05-20T08:00:01.500Z',
  ageS: 0.4,
  stale: false,
  sats: 9,
  hdop: 0.9,
};

describe('geotagJpeg', () => {
  it('refuses bytes that are not a JPEG', () => {
    expect(() => geotagJpeg(Buffer.from('GIF89a...'), { fix, takenAt: new Date(), camera: 'front', alarmId: 'a' })).toThrow(/not a JPEG/);
  });

  it('writes no GPS tags without a fix, and says so in the description', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'busguard-geotag-'));
    try {
      const jpeg = await readFile(new URL('testsrc-160x120.jpg', FIXTURES));
      const out = join(dir, 'nofix.jpg');
      await writeFile(out, geotagJpeg(jpeg, { fix: null, takenAt: new Date('2024-05-20T08:00:02Z'), camera: 'front', alarmId: 'alarm-1' }));
      const tags = await exiftool(out);
      expect(Object.keys(tags).some((k) => k.startsWith('GPS:'))).toBe(false);
      expect(tags['IFD0:ImageDescription']).toBe('busguard alarm alarm-1, camera front; no GPS fix at the alarm');
      expect(tags['ExifIFD:DateTimeOriginal']).toBe('2024:05:20 08:00:02');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SnapshotTaker through a socat pair and the simulated VC0706', () => {
  let dir: string;
  let ptys: PtyPair[];
  let sims: SimVc0706[];
  let taker: SnapshotTaker | null;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'busguard-snap-'));
    ptys = [];
    sims = [];
    taker = null;
  });
  afterEach(async () => {
    await taker?.close();
    for (const s of sims) await s.stop();
    for (const p of ptys) await p.stop();
    await rm(dir, { recursive: true, force: true });
  });

  async function camera(name: string): Promise<{ sim: SimVc0706; cfg: unknown }> {
    const sub = join(dir, name); // each pair's links live in their own folder
    await mkdir(sub);
    const pty = await openPtyPair(sub);
    ptys.push(pty);
    const sim = new SimVc0706({ path: pty.a, peer: pty.b, dir: new URL('.', FIXTURES).pathname, bootMs: 50 });
    await sim.start();
    sims.push(sim);
    return { sim, cfg: { name, port: pty.b, imageSize: '320x240' } };
  }

  it('takes one geotagged JPEG per camera, whose EXIF GPS is the alarm fix, written whole under its alarm id', async () => {
    const front = await camera('front');
    const rear = await camera('rear');
    taker = new SnapshotTaker(CamerasConfigSchema.parse([front.cfg, rear.cfg]), join(dir, 'media'), log);
    const takenAt = new Date('2024-05-20T08:00:02Z');
    const results = await taker.take('alarm-42', fix, () => takenAt);
    expect(results.map((r) => [r.camera, r.ok])).toEqual([
      ['front', true],
      ['rear', true],
    ]);
    for (const r of results) {
      if (!r.ok) throw new Error(r.error);
      const bytes = await readFile(r.file);
      expect(r.file).toBe(join(dir, 'media', `alarm-42-${r.camera}.jpg`));
      expect(createHash('sha256').update(bytes).digest('hex')).toBe(r.sha256);
      expect(bytes.subarray(-2).toString('hex')).toBe('ffd9');
      const tags = await exiftool(r.file);
      expect(tags['File:ImageWidth']).toBe(320);
      expect(Math.abs((tags['GPS:GPSLatitude'] as number) - fix.lat)).toBeLessThan(1e-7);
      expect(Math.abs((tags['GPS:GPSLongitude'] as number) - Math.abs(fix.lon))).toBeLessThan(1e-7);
      expect(tags['GPS:GPSLatitudeRef']).toBe('N');
      expect(tags['GPS:GPSLongitudeRef']).toBe('W');
      expect(tags['GPS:GPSAltitude']).toBeCloseTo(405.3, 2);
      expect(tags['GPS:GPSSpeed']).toBeCloseTo(8.5 * 3.6, 2);
      expect(tags['GPS:GPSTrack']).toBeCloseTo(181.25, 2);
      expect(tags['GPS:GPSStatus']).toBe('A');
      expect(tags['GPS:GPSDateStamp']).toBe('2024:05:20');
      expect(tags['GPS:GPSTimeStamp']).toBe('08:00:01.5');
      expect(tags['ExifIFD:DateTimeOriginal']).toBe('2024:05:20 08:00:02');
      expect(tags['IFD0:ImageDescription']).toBe(`busguard alarm alarm-42, camera ${r.camera}; fix valid`);
    }
    // Nothing half-written left behind.
    expect((await readdir(join(dir, 'media'))).sort()).toEqual(['alarm-42-front.jpg', 'alarm-42-rear.jpg']);
  }, 30_000);

  it('a camera that answers garbage or truncates its JPEG fails alone, with a clear error; the next alarm works again', async () => {
    const good = await camera('front');
    const bad = await camera('rear');
    taker = new SnapshotTaker(CamerasConfigSchema.parse([good.cfg, bad.cfg]), join(dir, 'media'), log);
    // Let both open cleanly first, as at agent start.
    expect((await taker.take('alarm-1', fix, () => new Date())).every((r) => r.ok)).toBe(true);

    bad.sim.setFault('truncate');
    const truncated = await taker.take('alarm-2', { ...fix, stale: true, ageS: 42 }, () => new Date());
    expect(truncated[0]).toMatchObject({ camera: 'front', ok: true });
    expect(truncated[1]).toMatchObject({ camera: 'rear', ok: false, kind: 'truncated' });
    const stale = await exiftool((truncated[0] as { file: string }).file);
    expect(stale['GPS:GPSStatus']).toBe('V');
    expect(stale['IFD0:ImageDescription']).toBe('busguard alarm alarm-2, camera front; fix valid, stale (42 s old)');

    bad.sim.setFault('garbage');
    const garbled = await taker.take('alarm-3', fix, () => new Date());
    expect(garbled[0]).toMatchObject({ camera: 'front', ok: true });
    expect(garbled[1]).toMatchObject({ camera: 'rear', ok: false });
    expect((garbled[1] as { error: string }).error).toMatch(/camera/);

    bad.sim.setFault(null);
    const back = await taker.take('alarm-4', fix, () => new Date());
    expect(back.map((r) => r.ok)).toEqual([true, true]);
    const files = (await readdir(join(dir, 'media'))).sort();
    expect(files).not.toContain('alarm-2-rear.jpg');
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
  }, 60_000);

  it('a camera port that does not exist gives a clear error per alarm, and is opened once it appears', async () => {
    const missing = join(dir, 'late', 'ttyB'); // where the 'late' pair's driver end will be
    taker = new SnapshotTaker(CamerasConfigSchema.parse([{ name: 'front', port: missing, imageSize: '160x120' }]), join(dir, 'media'), log);
    taker.start();
    const r = await taker.take('alarm-1', null, () => new Date());
    expect(r[0]).toMatchObject({ camera: 'front', ok: false, kind: 'io' });
    expect((r[0] as { error: string }).error).toContain(missing);
    const late = await camera('late');
    expect((late.cfg as { port: string }).port).toBe(missing);
    const again = await taker.take('alarm-2', null, () => new Date());
    expect(again[0]).toMatchObject({ camera: 'front', ok: true, name: 'alarm-2-front.jpg' });
  }, 30_000);

  it('an agent restarted without a camera power cycle finds the camera still at its transfer rate', async () => {
    const cam = await camera('front');
    const cfg = CamerasConfigSchema.parse([{ ...(cam.cfg as object), baudRate: 38400, transferBaudRate: 115200 }]);
    const first = new SnapshotTaker(cfg, join(dir, 'media'), log);
    expect((await first.take('alarm-1', fix, () => new Date()))[0]).toMatchObject({ ok: true });
    await first.close(); // as a SIGKILLed agent leaves it: the camera stays at 115200
    taker = new SnapshotTaker(cfg, join(dir, 'media'), log);
    expect((await taker.take('alarm-2', fix, () => new Date()))[0]).toMatchObject({ ok: true, name: 'alarm-2-front.jpg' });
  }, 30_000);

  it('refuses a camera config with a duplicate name or an unknown rate', () => {
    expect(() => CamerasConfigSchema.parse([{ name: 'a', port: '/dev/x' }, { name: 'a', port: '/dev/y' }])).toThrow(/unique/);
    expect(() => CamerasConfigSchema.parse([{ name: 'a', port: '/dev/x', baudRate: 12345 }])).toThrow();
  });
});
