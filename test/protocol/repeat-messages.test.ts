// The repeat message (up/repeat): the driver pressed again while an alarm
// was open. Its refusal cases, and a fuzz property: whatever bytes arrive on
// the repeat topic, the receiver refuses them with a reason or stores one
// well-formed repeat of that vehicle's own alarm, never throws, never
// touches another vehicle's alarm.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TEST_KEY_ID, writeTestKeyFiles } from '../helpers/command-keys.ts';
import { DispatchConfigSchema } from '../../dispatch/config.ts';
import { Receiver } from '../../dispatch/receiver.ts';
import { type RepeatMessage, RepeatWireSchema, decode, encode } from '../../protocol/messages.ts';
import { uplinkTopic } from '../../protocol/topics.ts';
import { anAlarm } from '../helpers/messages.ts';

const EPOCH = '0123456789abcdef';
type RepeatWire = RepeatMessage & { lane: string; epoch: string; seq: number; floor: number };
const repeat = (over: Partial<RepeatWire> = {}): RepeatWire => ({
  lane: 'alarm',
  epoch: EPOCH,
  seq: 2,
  floor: 1,
  v: 1,
  id: randomUUID(),
  alarmId: randomUUID(),
  kind: 'emergency',
  fleet: 'city',
  vehicle: 'bus-1',
  at: '2026-11-22T10:00:05.000Z',
  timeSource: 'gps',
  heldMs: 600,
  count: 2,
  fix: null,
  ...over,
});

describe('repeat message', () => {
  it('refuses with a reason: a count below 2, a bad alarm id, an unknown kind, a missing envelope', () => {
    const cases: [unknown, RegExp][] = [
      [{ ...repeat(), count: 1 }, /^count:/],
      [{ ...repeat(), alarmId: 'bus-1' }, /^alarmId:/],
      [{ ...repeat(), kind: 'panic' }, /^kind:/],
      [{ ...repeat(), heldMs: -1 }, /^heldMs:/],
      [{ ...repeat(), seq: undefined }, /^seq:/],
      [{ ...repeat(), lane: 'video' }, /^lane:/],
    ];
    for (const [msg, reason] of cases) {
      const r = decode(RepeatWireSchema, encode(msg as object));
      expect(r.ok, JSON.stringify(msg).slice(0, 60)).toBe(false);
      if (!r.ok) expect(r.error).toMatch(reason);
    }
    expect(decode(RepeatWireSchema, encode(repeat())).ok).toBe(true);
  });

  describe('at the receiver', () => {
    let dir: string;
    let receiver: Receiver;
    let rejected: string[];
    let victim: string;

    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'bg-repeat-'));
      const config = DispatchConfigSchema.parse({ mqtt: { url: 'mqtt://127.0.0.1:1' }, storage: { path: join(dir, 'd.db') }, signing: { keyId: TEST_KEY_ID, privateKeyFile: writeTestKeyFiles(dir).privateKeyFile } });
      receiver = new Receiver(config, pino({ level: 'silent' }));
      rejected = [];
      receiver.on('rejected', (_t, reason) => rejected.push(reason));
      // Another vehicle's open alarm, which no repeat from bus-1 may touch.
      victim = randomUUID();
      receiver.store.addAlarm(anAlarm({ id: victim, vehicle: 'bus-2' }));
    });
    afterAll(async () => {
      receiver.store.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const handle = (topic: string, payload: Buffer) => (receiver as unknown as { onMessage(t: string, p: Buffer): void }).onMessage(topic, payload);
    const topic = uplinkTopic({ fleet: 'city', vehicle: 'bus-1' }, 'repeat');

    it('a repeat naming another vehicle\'s alarm id is only ever its own vehicle\'s (kept for an alarm of its own to come); one on another vehicle\'s topic is refused; counts its own', () => {
      handle(topic, encode(repeat({ alarmId: victim })));
      expect(rejected).toEqual([]);
      handle(uplinkTopic({ fleet: 'city', vehicle: 'bus-2' }, 'repeat'), encode(repeat({ alarmId: victim })));
      expect(rejected.at(-1)).toMatch(/payload names city\/bus-1, topic is city\/bus-2/);
      expect(receiver.store.get(victim, { fleet: 'city', vehicle: 'bus-2' })?.repeats).toBe(0);
      const own = randomUUID();
      receiver.store.addAlarm(anAlarm({ id: own }));
      const r = repeat({ alarmId: own, seq: 10 });
      handle(topic, encode(r));
      handle(topic, encode(r)); // re-sent: counted once
      expect(receiver.store.get(own)).toMatchObject({ repeats: 1, lastRepeatAt: r.at });
      // A repeat of an incident on the alarm lane is refused.
      handle(topic, encode(repeat({ alarmId: own, kind: 'incident', seq: 11 })));
      expect(rejected.at(-1)).toMatch(/lane "alarm" for a repeat of an incident/);
    });

    it('fuzz: any payload on the repeat topic is refused with a reason or stored whole; the receiver never throws and no other vehicle changes', () => {
      const before = JSON.stringify(receiver.store.get(victim));
      const valid = fc.record({
        count: fc.integer({ min: -5, max: 5_000_000 }),
        heldMs: fc.oneof(fc.integer({ min: -10, max: 100_000 }), fc.double()),
        kind: fc.constantFrom('emergency', 'incident', 'panic', ''),
        lane: fc.constantFrom('alarm', 'incident', 'track', 'x'),
        alarmId: fc.oneof(fc.uuid(), fc.constant(victim), fc.string()),
        seq: fc.integer({ min: -1, max: 1_000_000 }),
        at: fc.oneof(fc.constant('2026-11-22T10:00:05.000Z'), fc.string()),
      });
      fc.assert(
        fc.property(fc.oneof(valid.map((o) => encode({ ...repeat(), ...o })), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), fc.json().map((j) => Buffer.from(j))), (payload) => {
          const n = rejected.length;
          expect(() => handle(topic, payload)).not.toThrow();
          const d = decode(RepeatWireSchema, payload);
          if (!d.ok) expect(rejected.length).toBe(n + 1);
        }),
        { numRuns: 500 },
      );
      expect(JSON.stringify(receiver.store.get(victim))).toBe(before);
    });
  });
});
