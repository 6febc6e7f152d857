// Alarm → cabin snapshot at dispatch, on real parts: the agent and dispatch
// as processes, Mosquitto with the shipped ACL, NMEA and the simulated
// VC0706 camera each on their own socat serial pair. The photo dispatch
// stores must carry the alarm's fix in its EXIF GPS (read with exiftool) and
// match its SHA-256; a camera gone wrong must leave the alarm untouched.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimVc0706 } from '../../hal/camera/sim.ts';
import { simPress } from '../../hal/panel/sim-client.ts';
import { type PtyPair, openPtyPair } from '../helpers/pty.ts';
import { BusFixture, until } from './fixture.ts';

const CAMERA_JPEGS = fileURLToPath(new URL('../fixtures/camera/', import.meta.url));

function exiftool(file: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile('exiftool', ['-j', '-n', '-G1', file], (err, stdout) => (err ? reject(err) : resolve((JSON.parse(stdout) as Array<Record<string, unknown>>)[0]!)));
  });
}

interface FileRow {
  file_id: string;
  name: string;
  sha256: string;
  size: number;
  kind: string;
  alarm_id: string;
  geotag: string;
  state: string;
  path: string;
}

describe('evidence: a snapshot from the cabin camera on alarm', () => {
  const bus = new BusFixture();
  let camPty: PtyPair;
  let camera: SimVc0706;

  beforeAll(async () => {
    const camDir = join(bus.dir, 'camera');
    mkdirSync(camDir);
    camPty = await openPtyPair(camDir);
    camera = new SimVc0706({ path: camPty.a, peer: camPty.b, dir: CAMERA_JPEGS, bootMs: 50 });
    await camera.start();
    await bus.start({
      cameras: [{ name: 'cabin', port: camPty.b, imageSize: '640x480' }],
      // A video camera too, to show a failing serial camera leaves the clip alone.
      video: [{ name: 'aisle', source: 'videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=10/1', segmentS: 1, keyframeIntervalS: 1, bitrateKbps: 200 }],
      clips: { preRollS: 2, postRollS: 2 },
    });
  }, 60_000);
  afterAll(async () => {
    await bus.stop(); // kills the agent first: the camera's port is closed under nobody
    await camera.stop();
    await camPty.stop();
  });

  function filesAtDispatch(alarmId: string): FileRow[] {
    const db = new Database(join(bus.dir, 'dispatch.db'), { readonly: true, fileMustExist: true });
    try {
      return db.prepare("SELECT * FROM evidence_files WHERE alarm_id = ? AND kind = 'snapshot'").all(alarmId) as FileRow[];
    } finally {
      db.close();
    }
  }

  it('alarm → geotagged JPEG at dispatch: EXIF GPS is the alarm fix, SHA-256 matches, the bus deletes its copy', async () => {
    await bus.agent.waitForEvent('camera.ready', () => true, 15_000);
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    const from = bus.agent.mark();
    const dFrom = bus.dispatch.mark();
    await simPress(bus.socket, { holdMs: 600 });
    const stored = await bus.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
    const alarmId = stored.alarmId as string;
    const alarm = await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === alarmId, 10_000, dFrom);
    const fileStored = await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId, 20_000, dFrom);
    expect(fileStored.kind).toBe('snapshot');

    const [row] = filesAtDispatch(alarmId);
    expect(row).toMatchObject({ kind: 'snapshot', state: 'complete', alarm_id: alarmId, name: `${alarmId}-cabin.jpg` });
    const bytes = readFileSync(row!.path);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(row!.sha256);
    expect(bytes.length).toBe(row!.size);

    // The photo is the camera's frame, geotagged: 640x480 as configured, with the fix of the alarm itself.
    const fix = alarm.fix as { lat: number; lon: number; altM: number };
    const tags = await exiftool(row!.path);
    expect(tags['File:ImageWidth']).toBe(640);
    expect(Math.abs((tags['GPS:GPSLatitude'] as number) - Math.abs(fix.lat))).toBeLessThan(1e-7);
    expect(Math.abs((tags['GPS:GPSLongitude'] as number) - Math.abs(fix.lon))).toBeLessThan(1e-7);
    expect(tags['GPS:GPSLatitudeRef']).toBe(fix.lat < 0 ? 'S' : 'N');
    expect(tags['GPS:GPSLongitudeRef']).toBe(fix.lon < 0 ? 'W' : 'E');
    expect(tags['GPS:GPSAltitude']).toBeCloseTo(fix.altM, 2);
    expect(tags['IFD0:ImageDescription']).toContain(alarmId);
    // The geotag dispatch stored beside the file is the same fix.
    expect(JSON.parse(row!.geotag)).toMatchObject({ lat: fix.lat, lon: fix.lon });

    // Confirmed at dispatch → the bus frees its media folder.
    const delivered = await bus.agent.waitForEvent('evidence.delivered', (l) => l.alarmId === alarmId, 10_000, from);
    await until(() => {
      try {
        readFileSync(join(bus.dir, 'bus', 'media', 'snapshots', delivered.file as string));
        return false;
      } catch {
        return true;
      }
    }, 5_000, 'the bus to delete its delivered copy');
    await bus.ack(alarmId);
    await bus.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === alarmId, 10_000, from);
  }, 60_000);

  it('a camera answering garbage: the alarm and the clip reach dispatch as ever, the failure is logged and reported as a diag', async () => {
    camera.setFault('garbage');
    const from = bus.agent.mark();
    const dFrom = bus.dispatch.mark();
    await simPress(bus.socket, { holdMs: 600 });
    const stored = await bus.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
    const alarmId = stored.alarmId as string;
    await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === alarmId, 10_000, dFrom);
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === alarmId, 10_000, from);
    const failed = await bus.agent.waitForEvent('snapshot.failed', (l) => l.alarmId === alarmId, 20_000, from);
    expect(failed.camera).toBe('cabin');
    const diag = await bus.dispatch.waitForEvent('bus.diag', (l) => l.diag === 'snapshot.failed', 20_000, dFrom);
    expect(diag.reason).toContain(alarmId);
    expect(filesAtDispatch(alarmId)).toEqual([]);
    const clip = await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId && l.kind === 'clip', 30_000, dFrom);
    expect(clip.fileName).toBe(`${alarmId}-aisle.mp4`);
    camera.setFault(null);
    await bus.ack(alarmId);
    await bus.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === alarmId, 10_000, from);
  }, 60_000);
});
