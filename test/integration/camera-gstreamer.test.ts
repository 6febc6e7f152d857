// Alarm → cabin still from a GStreamer camera at dispatch, on real parts: the
// agent and dispatch as processes, Mosquitto with the shipped ACL, NMEA on a
// socat serial pair, and the still taken by a gst-launch-1.0 child of the
// agent from a live videotestsrc. The photo dispatch stores must carry the
// alarm's fix in its EXIF GPS (read with exiftool), exactly as a VC0706
// photo does (evidence-snapshot.test.ts), and match its SHA-256.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simPress } from '../../hal/panel/sim-client.ts';
import { BusFixture } from './fixture.ts';

function exiftool(file: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile('exiftool', ['-j', '-n', '-G1', file], (err, stdout) => (err ? reject(err) : resolve((JSON.parse(stdout) as Array<Record<string, unknown>>)[0]!)));
  });
}

describe('evidence: a still from a GStreamer camera on alarm', () => {
  const bus = new BusFixture();

  beforeAll(async () => {
    await bus.start({
      cameras: [{ name: 'cabin', driver: 'gstreamer', source: 'videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=10/1' }],
    });
  }, 30_000);
  afterAll(async () => {
    await bus.stop();
  });

  it('alarm → geotagged 320x240 JPEG at dispatch: EXIF GPS is the alarm fix, SHA-256 matches', async () => {
    // The agent's trial still at start proves the pipeline before any alarm.
    const ready = await bus.agent.waitForEvent('camera.ready', (l) => l.camera === 'cabin', 15_000);
    expect(ready).toMatchObject({ driver: 'gstreamer', width: 320, height: 240 });
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    const from = bus.agent.mark();
    const dFrom = bus.dispatch.mark();
    await simPress(bus.socket, { holdMs: 600 });
    const stored = await bus.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
    const alarmId = stored.alarmId as string;
    const alarm = await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === alarmId, 10_000, dFrom);
    const fileStored = await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId, 15_000, dFrom);
    expect(fileStored.kind).toBe('snapshot');

    const db = new Database(join(bus.dir, 'dispatch.db'), { readonly: true, fileMustExist: true });
    const row = (() => {
      try {
        return db.prepare("SELECT * FROM evidence_files WHERE alarm_id = ? AND kind = 'snapshot'").get(alarmId) as
          | { name: string; sha256: string; size: number; state: string; path: string; geotag: string }
          | undefined;
      } finally {
        db.close();
      }
    })();
    expect(row).toMatchObject({ name: `${alarmId}-cabin.jpg`, state: 'complete' });
    const bytes = readFileSync(row!.path);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(row!.sha256);
    expect(bytes.length).toBe(row!.size);

    const fix = alarm.fix as { lat: number; lon: number; altM: number };
    const tags = await exiftool(row!.path);
    expect([tags['File:ImageWidth'], tags['File:ImageHeight']]).toEqual([320, 240]);
    expect(Math.abs((tags['GPS:GPSLatitude'] as number) - Math.abs(fix.lat))).toBeLessThan(1e-7);
    expect(Math.abs((tags['GPS:GPSLongitude'] as number) - Math.abs(fix.lon))).toBeLessThan(1e-7);
    expect(tags['GPS:GPSLatitudeRef']).toBe(fix.lat < 0 ? 'S' : 'N');
    expect(tags['GPS:GPSLongitudeRef']).toBe(fix.lon < 0 ? 'W' : 'E');
    expect(tags['GPS:GPSAltitude']).toBeCloseTo(fix.altM, 2);
    expect(tags['IFD0:ImageDescription']).toBe(`busguard alarm ${alarmId}, camera cabin; fix valid`);
    expect(JSON.parse(row!.geotag)).toMatchObject({ lat: fix.lat, lon: fix.lon });

    await bus.ack(alarmId);
    await bus.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === alarmId, 10_000, from);
  }, 19_000);
});
