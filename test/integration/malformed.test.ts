// Malformed payloads on every topic the agent and dispatch subscribe to, and
// a malformed config: each is rejected with a clear log line or error, and
// nothing crashes (an alarm still goes end to end afterwards).

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simPress } from '../../hal/panel/sim-client.ts';
import { USERS } from '../helpers/mosquitto.ts';
import { busguardRun } from '../helpers/process.ts';
import { BusFixture } from './fixture.ts';

const GARBAGE: [string, Buffer | string][] = [
  ['not JSON', '{"v":1,'],
  ['binary', Buffer.from([0x00, 0xff, 0xfe, 0x13, 0x37])],
  ['wrong version', '{"v":2}'],
  ['empty object', '{}'],
  ['array', '[1,2,3]'],
  ['huge number', '{"v":1,"ids":[1e309]}'],
];

describe('malformed input', () => {
  const bus = new BusFixture();
  beforeAll(() => bus.start(), 60_000);
  afterAll(() => bus.stop());

  async function publishAs(username: string, topic: string, payloads: (Buffer | string)[]): Promise<void> {
    const c = mqtt.connect(bus.broker.url, { protocolVersion: 5, username, password: USERS[username], clientId: `garbage-${process.pid}-${Math.random()}` });
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    for (const p of payloads) await c.publishAsync(topic, p, { qos: 1 });
    await c.endAsync();
  }

  it('dispatch rejects each malformed uplink message with a log line and keeps running', async () => {
    const kinds = ['alarm', 'incident', 'position', 'diag', 'receipt', 'status'];
    for (const kind of kinds) {
      // As bus-2, the bus no agent runs as here: client ids are bound to identities, so "city/bus-1" would take the agent's session over.
      await publishAs('city/bus-2', `busguard/v1/city/bus-2/up/${kind}`, GARBAGE.map(([, p]) => p));
    }
    for (const kind of kinds) {
      const topic = `busguard/v1/city/bus-2/up/${kind}`;
      const rejected = await bus.dispatch.waitFor(
        () => bus.dispatch.events('uplink.rejected').filter((l) => l.topic === topic).length >= GARBAGE.length,
        15_000,
        `${GARBAGE.length} rejections on ${topic}`,
      );
      expect(rejected).toBeTruthy();
    }
    const reasons = bus.dispatch.events('uplink.rejected').map((l) => String(l.reason));
    expect(reasons.some((r) => r.startsWith('not JSON'))).toBe(true);
    expect(reasons.some((r) => r.includes('v:'))).toBe(true);
    // A payload naming another vehicle than its topic is refused too.
    await publishAs('city/bus-2', 'busguard/v1/city/bus-2/up/position', [
      JSON.stringify({
        lane: 'track', epoch: '0123456789abcdef', seq: 1, floor: 1,
        v: 1, id: crypto.randomUUID(), fleet: 'city', vehicle: 'bus-1', alarmId: null,
        points: [{ at: new Date().toISOString(), timeSource: 'gps', fix: { valid: true, lat: 1, lon: 1, altM: null, speedMps: null, trackDeg: null, time: null, ageS: 0, stale: false, sats: null, hdop: null } }],
      }),
    ]);
    await bus.dispatch.waitFor((l) => l.event === 'uplink.rejected' && String(l.reason).includes('payload names city/bus-1'), 10_000, 'vehicle mismatch rejection');
    expect(bus.dispatchAlarms()).toHaveLength(0);
    expect(bus.dispatch.child.exitCode).toBeNull();
  });

  it('the agent refuses each unsigned or malformed command with a log line and keeps running', async () => {
    // Garbage is no signed command: refused before it is read.
    for (const kind of ['receipt', 'ack']) {
      await publishAs('dispatch/spare', `busguard/v1/city/bus-1/down/${kind}`, GARBAGE.map(([, p]) => p));
    }
    for (const kind of ['receipt', 'ack']) {
      const topic = `busguard/v1/city/bus-1/down/${kind}`;
      await bus.agent.waitFor(
        () => bus.agent.events('downlink.refused').filter((l) => l.topic === topic).length >= GARBAGE.length,
        15_000,
        `${GARBAGE.length} refusals on ${topic}`,
      );
    }
    // Signed by dispatch's key but malformed: read, and rejected as such.
    const malformed = [{ v: 2 }, { v: 1, epoch: 'nothex', lanes: {} }, { v: 1, alarmId: 'not-a-uuid', by: 'x', at: 'never' }];
    for (const kind of ['receipt', 'ack'] as const) {
      await publishAs('dispatch/spare', `busguard/v1/city/bus-1/down/${kind}`, malformed.map((m) => bus.signed(kind, m)));
    }
    await bus.agent.waitFor(() => bus.agent.events('downlink.rejected').length >= 2 * malformed.length, 15_000, `${2 * malformed.length} signed malformed commands rejected`);
    // An ack for an alarm this bus never raised is refused, not applied.
    await publishAs('dispatch/spare', 'busguard/v1/city/bus-1/down/ack', [bus.signed('ack', { v: 1, alarmId: crypto.randomUUID(), by: 'x', at: new Date().toISOString() })]);
    await bus.agent.waitForEvent('ack.unknown');
    expect(bus.agent.child.exitCode).toBeNull();

    // And the alarm path still works, end to end.
    await simPress(bus.socket, { holdMs: 600 });
    const stored = await bus.agent.waitForEvent('alarm.stored');
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === stored.alarmId);
  });

  it('a malformed config is refused with the key, the value and what is expected (exit 2)', async () => {
    const bad = join(bus.dir, 'bad-agent.json');
    writeFileSync(bad, JSON.stringify({ vehicle: { fleet: 'city', id: 'bus-1' }, mqtt: { url: 'mqtt://x:1' }, storage: { dir: '/tmp' }, panel: { driver: 'gpio9' } }));
    const r = await busguardRun(['agent', '--config', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('bad-agent.json');
    expect(r.stderr).toMatch(/panel\.driver/);
    const broken = join(bus.dir, 'broken.json');
    writeFileSync(broken, '{ not json');
    const r2 = await busguardRun(['dispatch', '--config', broken]);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/broken\.json: not valid JSON/);
  });
});
