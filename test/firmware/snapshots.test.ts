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
import { SimVc0706, type SimVc0706Options, jpegDimensions } from '../../hal/camera/sim.ts';
import { VC0706_CMD } from '../../hal/camera/vc0706-codec.ts';
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

  async function camera(name: string, simOpts: Partial<SimVc0706Options> = {}): Promise<{ sim: SimVc0706; cfg: unknown }> {
    const sub = join(dir, name); // each pair's links live in their own folder
    await mkdir(sub);
    const pty = await openPtyPair(sub);
    ptys.push(pty);
    const sim = new SimVc0706({ path: pty.a, peer: pty.b, dir: new URL('.', FIXTURES).pathname, bootMs: 50, ...simOpts });
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

  /** A logger whose records land in an array: what the agent would have logged. */
  function capture(): { log: pino.Logger; events: (name: string) => Array<Record<string, unknown>> } {
    const records: Array<Record<string, unknown>> = [];
    const l = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
    return { log: l, events: (name) => records.filter((r) => r.event === name) };
  }

  it.each([57600, 9600])('finds a camera left at %i baud (not its power-on or transfer rate), logs the rate, and takes its picture', async (rate) => {
    const cam = await camera('front', { baudRate: rate });
    const { log: l, events } = capture();
    taker = new SnapshotTaker(CamerasConfigSchema.parse([{ ...(cam.cfg as object), timeoutMs: 1000 }]), join(dir, 'media'), l);
    const [r] = await taker.take('alarm-1', fix, () => new Date());
    expect(r).toMatchObject({ camera: 'front', ok: true });
    expect(events('camera.ready')).toEqual([expect.objectContaining({ camera: 'front', foundAt: rate, baudRate: 115200, msg: `camera front found at ${rate} baud, talking at 115200` })]);
    expect(events('camera.found')).toEqual([expect.objectContaining({ baudRate: rate, tried: [38400, 115200, ...[9600, 19200, 57600].filter((x) => x <= rate)] })]);
    expect(cam.sim.baudRate).toBe(115200);
  }, 30_000);

  it('an absent camera: the error names every rate tried and what to check', async () => {
    const cam = await camera('front');
    cam.sim.setFault('silent'); // powered, but its TX wire is broken: nothing at any rate
    taker = new SnapshotTaker(CamerasConfigSchema.parse([{ ...(cam.cfg as object), timeoutMs: 1000 }]), join(dir, 'media'), log);
    const [r] = await taker.take('alarm-1', fix, () => new Date());
    expect(r).toMatchObject({ camera: 'front', ok: false, kind: 'timeout' });
    const error = (r as { error: string }).error;
    expect(error).toContain('tried 38400 (silent), 115200 (silent), 9600 (silent), 19200 (silent), 57600 (silent) baud');
    expect(error).toMatch(/check the camera's power .*, that its TX goes to the adapter's RX/);
    // Once it answers again, the next alarm finds it.
    cam.sim.setFault(null);
    expect((await taker.take('alarm-2', fix, () => new Date()))[0]).toMatchObject({ ok: true });
  }, 30_000);

  it('a camera power-cycled behind a live port: the snapshot after the one that failed succeeds, without reopening', async () => {
    const cam = await camera('front');
    const { log: l, events } = capture();
    taker = new SnapshotTaker(CamerasConfigSchema.parse([{ ...(cam.cfg as object), timeoutMs: 1000 }]), join(dir, 'media'), l);
    expect((await taker.take('alarm-1', fix, () => new Date()))[0]).toMatchObject({ ok: true });
    expect(cam.sim.baudRate).toBe(115200);

    await cam.sim.powerCycle(); // its own supply dipped: back at 38400, the agent's port still open at 115200
    const failed = (await taker.take('alarm-2', fix, () => new Date()))[0];
    expect(failed).toMatchObject({ ok: false });
    expect((failed as { error: string }).error).toMatch(/camera .*: FBUF_CTRL: .*check/);

    const [r] = await taker.take('alarm-3', fix, () => new Date());
    expect(r).toMatchObject({ ok: true, name: 'alarm-3-front.jpg' });
    expect(jpegDimensions(await readFile((r as { file: string }).file))).toEqual({ width: 320, height: 240 });
    expect(cam.sim.baudRate).toBe(115200);
    expect(events('camera.ready')).toHaveLength(1); // opened once, at the first alarm
    expect(events('camera.port.open')).toHaveLength(1);
    expect(events('camera.rebooted')).toEqual([expect.objectContaining({ was: 115200, foundAt: 38400 })]);
  }, 30_000);

  it('a new image size is applied with a reset, the picture has the new dimensions, and an unchanged size costs no reset', async () => {
    const cam = await camera('front'); // the sim starts at 320x240
    const cfg = CamerasConfigSchema.parse([{ ...(cam.cfg as object), imageSize: '640x480', timeoutMs: 1000 }]);
    taker = new SnapshotTaker(cfg, join(dir, 'media'), log);
    const [r] = await taker.take('alarm-1', fix, () => new Date());
    if (!r?.ok) throw new Error(`snapshot failed: ${JSON.stringify(r)}`);
    expect(jpegDimensions(await readFile(r.file))).toEqual({ width: 640, height: 480 });
    expect([cam.sim.count(VC0706_CMD.WRITE_DATA), cam.sim.count(VC0706_CMD.RESET)]).toEqual([1, 1]);
    expect([cam.sim.imageSize, cam.sim.baudRate]).toEqual(['640x480', 115200]);

    await taker.close(); // an agent restart: the size is in the camera's EEPROM already
    taker = new SnapshotTaker(cfg, join(dir, 'media'), log);
    expect((await taker.take('alarm-2', fix, () => new Date()))[0]).toMatchObject({ ok: true });
    expect([cam.sim.count(VC0706_CMD.WRITE_DATA), cam.sim.count(VC0706_CMD.RESET)]).toEqual([1, 1]);
  }, 30_000);

  it('refuses a camera config with a duplicate name or an unknown rate', () => {
    expect(() => CamerasConfigSchema.parse([{ name: 'a', port: '/dev/x' }, { name: 'a', port: '/dev/y' }])).toThrow(/unique/);
    expect(() => CamerasConfigSchema.parse([{ name: 'a', port: '/dev/x', baudRate: 12345 }])).toThrow();
  });
});
