// The receiver's handling of each uplink kind (dispatch/uplink-handlers.ts
// through the table of protocol/kinds.ts), without a broker: messages are
// handed to it as the MQTT client would, and the store says what took effect.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TEST_KEY_ID, writeTestKeyFiles } from '../helpers/command-keys.ts';
import { DispatchConfigSchema } from '../../dispatch/config.ts';
import { Receiver } from '../../dispatch/receiver.ts';
import { encode } from '../../protocol/messages.ts';
import { uplinkTopic } from '../../protocol/topics.ts';
import { initTopic } from '../../protocol/file-transfer.ts';

const ref = { fleet: 'city', vehicle: 'bus-1' };
const EPOCH = '00000000000000ab';
const envelope = (lane: string, seq: number) => ({ lane, epoch: EPOCH, seq, floor: seq });
const alarm = (seq: number, over: Record<string, unknown> = {}) => ({
  ...envelope('alarm', seq),
  v: 1,
  id: randomUUID(),
  kind: 'emergency',
  ...ref,
  route: '603',
  raisedAt: '2026-11-22T10:00:00.000Z',
  timeSource: 'gps',
  heldMs: 600,
  fix: null,
  ...over,
});

describe('receiver', () => {
  let dir: string;
  let receiver: Receiver;
  let rejected: string[];
  const take = (kind: Parameters<typeof uplinkTopic>[1], msg: object, r = ref) =>
    (receiver as unknown as { onMessage(t: string, p: Buffer): void }).onMessage(uplinkTopic(r, kind), encode(msg));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bg-receiver-'));
    receiver = new Receiver(DispatchConfigSchema.parse({ mqtt: { url: 'mqtt://127.0.0.1:1' }, storage: { path: join(dir, 'd.db') }, signing: { keyId: TEST_KEY_ID, privateKeyFile: writeTestKeyFiles(dir).privateKeyFile } }), pino({ level: 'silent' }));
    rejected = [];
    receiver.on('rejected', (_t, reason) => rejected.push(reason));
  });
  afterEach(() => {
    receiver.store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an alarm is stored once, however often it comes, and announced once', () => {
    const seen: string[] = [];
    receiver.on('alarm', (a) => seen.push(a.id));
    const a = alarm(1);
    take('alarm', a);
    take('alarm', a);
    expect(seen).toEqual([a.id]);
    expect(receiver.store.all('emergency').map((x) => x.id)).toEqual([a.id]);
  });

  it('refuses, with the reason: another vehicle in the payload, the wrong lane, the wrong kind for the topic, a malformed payload', () => {
    take('alarm', alarm(1, { vehicle: 'bus-2' }));
    take('alarm', alarm(2, { lane: 'track' }));
    take('incident', alarm(3, { lane: 'incident' }));
    take('position', { v: 1 });
    expect(rejected).toEqual([
      'payload names city/bus-2, topic is city/bus-1',
      'lane "track" on the alarm topic',
      'kind "emergency" on the incident topic',
      expect.stringMatching(/^id: /),
    ]);
    expect(receiver.store.all('emergency')).toHaveLength(0);
    // Recorded as bus-1's diagnostics too: one row for the minute, counting all four, the last reason kept (counts written a second later, or at stop).
    (receiver as unknown as { refusals: { flush(): void } }).refusals.flush();
    const refused = receiver.store.diags(ref).filter((d) => d.event === 'dispatch.refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ count: 4, reason: expect.stringMatching(/^up\/position: id: /) });
  });

  it('an alarm id another vehicle already used is another alarm: both are stored, each keyed by its vehicle; acking one leaves the other open', () => {
    const stored: string[] = [];
    receiver.on('alarm', (a) => stored.push(`${a.vehicle}:${a.id}`));
    const first = alarm(1, { vehicle: 'bus-2' });
    take('alarm', first, { fleet: 'city', vehicle: 'bus-2' });
    take('alarm', { ...alarm(1), id: first.id });
    expect(rejected).toEqual([]);
    expect(stored).toEqual([`bus-2:${first.id}`, `bus-1:${first.id}`]);
    expect(receiver.store.get(first.id, ref)?.route).toBe('603');
    expect(receiver.store.get(first.id, { fleet: 'city', vehicle: 'bus-2' })?.vehicle).toBe('bus-2');
    // bus-1's seq 1 was taken (and so receipted).
    expect(receiver.store.accept(ref, { lane: 'alarm', epoch: EPOCH, seq: 1, floor: 1 }, () => {}).fresh).toBe(false);
    expect(receiver.store.acknowledge({ ...ref, id: first.id }, 'officer-7', '2026-11-22T10:01:00.000Z')).toBe(true);
    expect(receiver.store.openQueue('emergency').map((a) => a.vehicle)).toEqual(['bus-2']);
    expect(() => receiver.store.find(first.id)).toThrow(/ambiguous: .*city\/bus-2\/.*city\/bus-1\/.*give it as FLEET\/VEHICLE\/ID/);
    expect(receiver.store.find(`city/bus-2/${first.id.slice(0, 8)}`).vehicle).toBe('bus-2');
  });

  it('a floor above the seq is refused: it would have marked the lane settled and every later message of it dropped as old', () => {
    const stored: string[] = [];
    receiver.on('alarm', (a) => stored.push(a.id));
    take('alarm', { ...alarm(1), floor: 1_000_000 });
    expect(rejected).toEqual(['floor 1000000 above seq 1']);
    const next = [alarm(1), alarm(2)];
    for (const a of next) take('alarm', a);
    expect(stored).toEqual(next.map((a) => a.id));
  });

  it('a track batch is stored point by point; a diag record is stored; a status online re-opens an ack the bus says it lacks', () => {
    const fix = { valid: true, lat: 34.26, lon: 108.94, altM: null, speedMps: 5, trackDeg: 90, time: null, ageS: 0, stale: false, sats: null, hdop: null };
    take('position', { ...envelope('track', 1), v: 1, id: randomUUID(), ...ref, alarmId: null, points: [{ at: '2026-11-22T10:00:00.000Z', timeSource: 'gps', fix }, { at: '2026-11-22T10:00:30.000Z', timeSource: 'gps', fix }] });
    expect(receiver.store.positions(ref)).toHaveLength(2);
    take('diag', { ...envelope('diag', 1), v: 1, id: randomUUID(), ...ref, at: '2026-11-22T10:00:00.000Z', event: 'snapshot.failed', reason: 'camera cabin: no reply' });
    expect(receiver.store.diags(ref).map((d) => d.event)).toEqual(['snapshot.failed']);
    const a = alarm(1);
    take('alarm', a);
    receiver.store.acknowledge(a, 'officer-7', '2026-11-22T10:01:00.000Z');
    take('receipt', { v: 1, acks: [a.id] });
    expect(receiver.store.unseenAcks()).toHaveLength(0);
    take('status', { v: 1, state: 'online', at: '2026-11-22T10:05:00.000Z', agent: 'test', openAlarms: [a.id] });
    expect(receiver.store.unseenAcks().map((x) => x.id)).toEqual([a.id]);
    expect(rejected).toEqual([]);
  });
});

describe('receiver: one bus at its upload quotas', () => {
  it('a bus that has filled its quotas of files in progress and of the day gets no more in; another bus\'s alarm is stored and announced as ever', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bg-receiver-quota-'));
    const receiver = new Receiver(
      DispatchConfigSchema.parse({
        mqtt: { url: 'mqtt://127.0.0.1:1' },
        storage: { path: join(dir, 'd.db') },
        signing: { keyId: TEST_KEY_ID, privateKeyFile: writeTestKeyFiles(dir).privateKeyFile },
        files: { maxReceivingBytesPerVehicle: 2 * 1024 * 1024, maxBytesPerVehiclePerDay: 3 * 1024 * 1024 },
      }),
      pino({ level: 'silent' }),
    );
    try {
      const meta = { v: 1, kind: 'clip', fleet: 'city', vehicle: 'bus-1', alarmId: null, capturedAt: '2026-12-03T10:00:00.000Z', timeSource: 'gps', geotag: null };
      for (let i = 0; i < 20; i++) {
        receiver.files.handle(initTopic('vehicle', ref, `flood-${i}`), encode({ name: `f${i}.mp4`, size: 1024 * 1024, checksum: '0'.repeat(64), user_data: meta }));
      }
      await receiver.files.idle();
      const taken = receiver.store.db.prepare("SELECT count(*) AS n FROM evidence_files WHERE vehicle = 'bus-1'").get() as { n: number };
      expect(taken.n).toBe(2);
      const seen: string[] = [];
      receiver.on('alarm', (a) => seen.push(`${a.vehicle}:${a.id}`));
      const other = { fleet: 'city', vehicle: 'bus-2' };
      const a = { ...alarm(1), ...other };
      (receiver as unknown as { onMessage(t: string, p: Buffer): void }).onMessage(uplinkTopic(other, 'alarm'), encode(a));
      expect(seen).toEqual([`bus-2:${a.id}`]);
      expect(receiver.store.get(a.id, other)?.vehicle).toBe('bus-2');
    } finally {
      await receiver.files.idle();
      receiver.store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
