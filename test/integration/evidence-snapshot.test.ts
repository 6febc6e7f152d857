// Alarm → cabin snapshot at dispatch, on real parts: the agent and dispatch
// as processes, Mosquitto with the shipped ACL, NMEA and the simulated
// VC0706 camera each on their own socat serial pair. The photo dispatch
// stores must carry the alarm's fix in its EXIF GPS (read with exiftool) and
// match its SHA-256; a camera gone wrong must leave the alarm untouched.

import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimVc0706 } from '../../hal/camera/sim.ts';
import { expectGeotagged, expectStoredIntact } from '../helpers/it-evidence.ts';
import { type PtyPair, openPtyPair } from '../helpers/pty.ts';
import { BusFixture, until } from './fixture.ts';

const CAMERA_JPEGS = fileURLToPath(new URL('../fixtures/camera/', import.meta.url));

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

  it('alarm → geotagged JPEG at dispatch: EXIF GPS is the alarm fix, SHA-256 matches, the bus deletes its copy', async () => {
    await bus.agent.waitForEvent('camera.ready', () => true, 15_000);
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    const { alarmId, received, from, dFrom } = await bus.holdToDispatch();
    const fileStored = await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId, 20_000, dFrom);
    expect(fileStored.kind).toBe('snapshot');

    const [row] = bus.evidenceFiles(alarmId, 'snapshot');
    expect(row).toMatchObject({ kind: 'snapshot', state: 'complete', alarm_id: alarmId, name: `${alarmId}-cabin.jpg` });
    expectStoredIntact(row!);
    // The photo is the camera's frame, geotagged: 640x480 as configured, with the fix of the alarm itself.
    const tags = await expectGeotagged(row!, received.fix as { lat: number; lon: number; altM: number });
    expect(tags['File:ImageWidth']).toBe(640);
    expect(tags['IFD0:ImageDescription']).toContain(alarmId);

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
    await bus.ackAndSee(alarmId, 10_000);
  }, 60_000);

  it('a camera answering garbage: the alarm and the clip reach dispatch as ever, the failure is logged and reported as a diag', async () => {
    camera.setFault('garbage');
    const { alarmId, from, dFrom } = await bus.holdToDispatch();
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === alarmId, 10_000, from);
    const failed = await bus.agent.waitForEvent('snapshot.failed', (l) => l.alarmId === alarmId, 20_000, from);
    expect(failed.camera).toBe('cabin');
    const diag = await bus.dispatch.waitForEvent('bus.diag', (l) => l.diag === 'snapshot.failed', 20_000, dFrom);
    expect(diag.reason).toContain(alarmId);
    expect(bus.evidenceFiles(alarmId, 'snapshot')).toEqual([]);
    // The clip's GeoJSON track is a file of kind clip too, and small: it may be stored first.
    const clip = await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId && l.kind === 'clip' && String(l.fileName).endsWith('.mp4'), 30_000, dFrom);
    expect(clip.fileName).toBe(`${alarmId}-aisle.mp4`);
    camera.setFault(null);
    await bus.ackAndSee(alarmId, 10_000);
  }, 60_000);
});
