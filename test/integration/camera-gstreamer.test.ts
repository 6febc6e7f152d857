// Alarm → cabin still from a GStreamer camera at dispatch, on real parts: the
// agent and dispatch as processes, Mosquitto with the shipped ACL, NMEA on a
// socat serial pair, and the still taken by a gst-launch-1.0 child of the
// agent from a live videotestsrc. The photo dispatch stores must carry the
// alarm's fix in its EXIF GPS (read with exiftool), exactly as a VC0706
// photo does (evidence-snapshot.test.ts), and match its SHA-256.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectGeotagged, expectStoredIntact } from '../helpers/it-evidence.ts';
import { BusFixture } from './fixture.ts';

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
    const { alarmId, received, dFrom } = await bus.holdToDispatch();
    const fileStored = await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId, 15_000, dFrom);
    expect(fileStored.kind).toBe('snapshot');

    const [row] = bus.evidenceFiles(alarmId, 'snapshot');
    expect(row).toMatchObject({ name: `${alarmId}-cabin.jpg`, state: 'complete' });
    expectStoredIntact(row!);
    const tags = await expectGeotagged(row!, received.fix as { lat: number; lon: number; altM: number });
    expect([tags['File:ImageWidth'], tags['File:ImageHeight']]).toEqual([320, 240]);
    expect(tags['IFD0:ImageDescription']).toBe(`busguard alarm ${alarmId}, camera cabin; fix valid`);

    await bus.ackAndSee(alarmId, 10_000);
  }, 19_000);
});
