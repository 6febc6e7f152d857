// Commands to a bus that dispatch did not sign, on real parts: Mosquitto with
// the shipped ACL, the agent and dispatch as processes. The attacker holds
// a receiver's password (so the broker lets it publish on every bus's command
// topics), a read-only tap of the uplink, and a key of its own, and can replay
// what it sniffed.
// Before commands were signed, one forged receipt emptied the alarm lane, the
// LED said "delivered" and every later press was swallowed as already open.
// Now each is refused (downlink.refused, with the reason) and changes nothing.

import { randomUUID } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simLed } from '../../hal/panel/sim-client.ts';
import { signCommand } from '../../protocol/signed-command.ts';
import { type DownlinkKind, downlinkTopic } from '../../protocol/topics.ts';
import { DISPATCH_KEY_ID } from '../../scripts/lib/testbed.ts';
import { USERS } from '../../scripts/lib/mosquitto.ts';
import { strangerKey } from '../helpers/command-keys.ts';
import { BusFixture, until } from './fixture.ts';

const bus1 = { fleet: 'city', vehicle: 'bus-1' };

describe('forged commands change nothing on the bus', () => {
  const bus = new BusFixture();
  let attacker: MqttClient;
  let tap: MqttClient;
  /** What the attacker sniffed of bus-1's uplink. */
  const sniffed: { topic: string; msg: Record<string, unknown> }[] = [];

  beforeAll(async () => {
    await bus.start();
    attacker = await mqtt.connectAsync(bus.broker.url, { protocolVersion: 5, username: 'dispatch/spare', password: USERS['dispatch/spare'], clientId: 'dispatch/spare' });
    tap = await mqtt.connectAsync(bus.broker.url, { protocolVersion: 5, username: 'monitor/test', password: USERS['monitor/test'], clientId: 'monitor/test' });
    tap.on('message', (topic, payload) => {
      if (!topic.endsWith('/status')) sniffed.push({ topic, msg: JSON.parse(payload.toString()) as Record<string, unknown> });
    });
    await tap.subscribeAsync('busguard/v1/city/bus-1/up/+', { qos: 1 });
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
  }, 60_000);
  afterAll(async () => {
    await attacker?.endAsync();
    await tap?.endAsync();
    await bus.stop();
  });

  const send = (kind: DownlinkKind, payload: Buffer | string) => attacker.publishAsync(downlinkTopic(bus1, kind), payload, { qos: 1 });
  /** The same command three ways: unsigned, signed with the attacker's own key (under dispatch's key id, and under its own). */
  const forgeries = (kind: DownlinkKind, msg: object): Buffer[] => [
    Buffer.from(JSON.stringify(msg)),
    signCommand({ keyId: DISPATCH_KEY_ID, privateKey: strangerKey.privateKey, by: 'dispatch@control-1' }, kind, bus1, msg, new Date(), 3600),
    signCommand({ keyId: 'attacker', privateKey: strangerKey.privateKey, by: 'dispatch@control-1' }, kind, bus1, msg, new Date(), 3600),
  ];
  const refusedSince = (from: number, kind: DownlinkKind) => bus.agent.lines.slice(from).filter((l) => l.event === 'downlink.refused' && l.kind === kind);

  it('receipts: forged, or signed but past what the bus sent, leave the alarm unconfirmed; it reaches dispatch when dispatch is back, and the next press raises a new alarm', async () => {
    // Dispatch away: no genuine receipt can come while the attacker works.
    await bus.dispatch.kill('SIGTERM');
    const from = bus.agent.mark();
    const stored = await bus.holdAndStore();
    const alarmId = stored.alarmId as string;
    const sent = await until(() => sniffed.find((s) => s.msg.id === alarmId), 10_000, 'the attacker to sniff the alarm');
    const { epoch, seq } = sent.msg as { epoch: string; seq: number };
    const receipt = { v: 1, epoch, lanes: { alarm: seq + 1000, incident: 1000, track: 1000 } };
    for (const p of forgeries('receipt', receipt)) await send('receipt', p);
    // Signed with dispatch's real key (as a replay or a broken dispatch could be) but for seqs the bus never sent.
    await send('receipt', bus.signed('receipt', receipt));
    const refused = await until(() => refusedSince(from, 'receipt').length === 4 && refusedSince(from, 'receipt'), 10_000, 'four receipts refused');
    expect(refused.map((l) => l.reason)).toEqual([
      expect.stringMatching(/^not a signed command: /),
      `bad signature for key "${DISPATCH_KEY_ID}"`,
      expect.stringMatching(/^signed with key "attacker", which this bus does not trust/),
      expect.stringMatching(new RegExp(`^alarm up to ${seq + 1000}, the bus has sent up to ${seq}`)),
    ]);
    expect(bus.agent.lines.slice(from).filter((l) => l.event === 'alarm.delivered')).toEqual([]);
    expect(await simLed(bus.socket)).not.toBe('delivered');

    await bus.startDispatch();
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === alarmId, 20_000, from);
    expect(bus.dispatchAlarms('emergency').map((a) => a.id)).toContain(alarmId);
    await bus.ackAndSee(alarmId);
    const next = await bus.holdToDispatch();
    expect(next.alarmId).not.toBe(alarmId);
    await bus.ackAndSee(next.alarmId);
  }, 90_000);

  it('acknowledgements: forged ones light nothing; the alarm stays open and unconfirmed until dispatch\'s own ack and receipt', async () => {
    const { alarmId, from } = await bus.holdToDispatch();
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === alarmId, 10_000, from);
    for (const p of forgeries('ack', { v: 1, alarmId, by: 'officer-7', at: new Date().toISOString() })) await send('ack', p);
    await until(() => refusedSince(from, 'ack').length === 3, 10_000, 'three acks refused');
    expect(bus.agent.lines.slice(from).filter((l) => l.event === 'alarm.acknowledged')).toEqual([]);
    expect(await simLed(bus.socket)).toBe('delivered');
    await bus.ackAndSee(alarmId);
    expect(await simLed(bus.socket)).toBe('acknowledged');
  }, 60_000);

  it('footage requests and file receipts: forged ones are refused before they are read', async () => {
    const from = bus.agent.mark();
    const now = Date.now();
    const request = { v: 1, id: randomUUID(), from: new Date(now - 60_000).toISOString(), to: new Date(now).toISOString(), camera: null, by: 'officer-7', at: new Date(now).toISOString() };
    for (const p of forgeries('footage', request)) await send('footage', p);
    for (const p of forgeries('file', { v: 1, fileId: randomUUID(), state: 'complete', attempt: 0, have: [] })) await send('file', p);
    await until(() => refusedSince(from, 'footage').length === 3 && refusedSince(from, 'file').length === 3, 10_000, 'three footage requests and three file receipts refused');
    expect(bus.agent.lines.slice(from).filter((l) => String(l.event).startsWith('footage.') || String(l.event).startsWith('file.receipt'))).toEqual([]);
  }, 30_000);
});
