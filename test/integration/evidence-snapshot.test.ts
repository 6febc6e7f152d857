// Alarm → cabin snapshot at dispatch, on real parts: the agent and dispatch
// as processes, Mosquitto with the shipped ACL, NMEA and the simulated
// VC0706 camera each on their own socat serial pair. The photo dispatch
// stores must carry the alarm's fix in its EXIF GPS (read with exiftool) and
// match its SHA-256; a camera gone wrong must leave the alarm untouched.

import { createPrivateKey, sign } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimVc0706 } from '../../hal/camera/sim.ts';
import { expectGeotagged, expectStoredIntact } from '../helpers/it-evidence.ts';
import { type PtyPair, openPtyPair } from '../helpers/pty.ts';
import { busguardRun } from '../helpers/process.ts';
import { BusFixture, until } from './fixture.ts';

const CAMERA_JPEGS = fileURLToPath(new URL('../fixtures/camera/', import.meta.url));

describe('evidence: a snapshot from the cabin camera on alarm', () => {
  const bus = new BusFixture();
  let firstAlarm = '';
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
    firstAlarm = alarmId;
  }, 60_000);

  it('chain of custody: the alarm record and the photo are signed by the unit; busguard evidence verify passes the file and catches a flipped byte, another unit\'s signature and a key the fleet CA never certified', async () => {
    expect(firstAlarm).not.toBe('');
    const pki = bus.pki!;
    const db = new Database(bus.dispatchDb, { readonly: true });
    const sigs = db.prepare('SELECT subject, verdict FROM evidence_signatures WHERE subject_id = ? OR subject_id IN (SELECT file_id FROM evidence_files WHERE alarm_id = ?)').all(firstAlarm, firstAlarm) as { subject: string; verdict: string }[];
    db.close();
    expect(sigs.find((x) => x.subject === 'alarm')?.verdict).toMatch(/^verified: city\/bus-1, certificate sha256 [0-9a-f]{64}$/);
    expect(sigs.filter((x) => x.subject === 'file').map((x) => x.verdict)).toEqual(expect.arrayContaining([expect.stringMatching(/^verified: city\/bus-1/)]));
    const [row] = bus.evidenceFiles(firstAlarm, 'snapshot');
    const photo = row!.path!;
    const sidecar = JSON.parse(readFileSync(`${photo}.sig.json`, 'utf8')) as Record<string, unknown>;
    expect(sidecar).toMatchObject({ fleet: 'city', vehicle: 'bus-1', sha256: row!.sha256, verdict: expect.stringMatching(/^verified/) });

    const verify = (file: string, sig = `${file}.sig.json`) => busguardRun(['evidence', 'verify', file, '--ca', pki.caCert, '--sig', sig]);
    const ok = await verify(photo);
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(ok.stdout).toMatch(/OK: signed by city\/bus-1 \(certificate sha256 [0-9a-f]{64}\), issued by busguard test fleet CA/);

    // One flipped byte in a copy: its SHA-256 is not the one signed.
    const work = join(bus.dir, 'custody');
    mkdirSync(work, { recursive: true });
    const flipped = join(work, 'flipped.jpg');
    const bytes = readFileSync(photo);
    bytes[bytes.length >> 1]! ^= 0x01;
    writeFileSync(flipped, bytes);
    const bad = await verify(flipped, `${photo}.sig.json`);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/FAILED: the file's SHA-256 is [0-9a-f]{64}; the unit signed [0-9a-f]{64}: the file is not the one the unit sent/);

    // Re-signed: the same text, signed by another unit of the fleet, then by a key with a self-made certificate naming bus-1.
    const text = sidecar.signedText as string;
    const resign = (keyFile: string, certPem: string, name: string) => {
      const sig = { alg: 'ed25519', sig: sign(null, Buffer.from(text), createPrivateKey(readFileSync(keyFile))).toString('base64'), cert: certPem };
      const path = join(work, name);
      writeFileSync(path, JSON.stringify({ ...sidecar, signature: sig }));
      return path;
    };
    const other = await verify(photo, resign(pki.clients['city/bus-2']!.key, readFileSync(pki.clients['city/bus-2']!.cert, 'utf8'), 'bus2.sig.json'));
    expect(other.code).toBe(1);
    expect(other.stdout).toContain('FAILED: signed by "city/bus-2", not by city/bus-1');
    const rogue = join(work, 'rogue');
    const { initCa } = await import('../../common/pki.ts');
    initCa(rogue, 'city/bus-1');
    const selfMade = await verify(photo, resign(join(rogue, 'ca.key'), readFileSync(join(rogue, 'ca.crt'), 'utf8'), 'rogue.sig.json'));
    expect(selfMade.code).toBe(1);
    expect(selfMade.stdout).toMatch(/FAILED: the certificate of city\/bus-1 was not issued by the fleet CA/);
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
