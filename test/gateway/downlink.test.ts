// The bus takes each kind of command through one table (gateway/downlink.ts):
// a kind it does not know, a topic of another vehicle or a malformed payload
// is logged as downlink.rejected and changes nothing; it is never taken for
// an acknowledgement. A command not signed by a trusted dispatch key, for
// this vehicle and this kind, unexpired (protocol/signed-command.ts), is
// logged as downlink.refused and changes nothing either.

import { generateKeyPairSync, randomUUID } from 'node:crypto';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type DownlinkHandlers, takeDownlink } from '../../gateway/downlink.ts';
import { encode } from '../../protocol/messages.ts';
import { downlinkTopic, vehicleBase } from '../../protocol/topics.ts';
import { type Grant, signCommand, signGrant } from '../../protocol/signed-command.ts';
import { TEST_KEY_ID, sealed, strangerKey, testKey, testTrust } from '../helpers/command-keys.ts';

const ref = { fleet: 'city', vehicle: 'bus-1' };

function harness() {
  const calls: string[] = [];
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const handlers: DownlinkHandlers = {
    receipt: () => calls.push('receipt'),
    ack: () => calls.push('ack'),
    footage: () => calls.push('footage'),
    file: () => calls.push('file'),
  };
  const trust = testTrust(ref, log);
  return { calls, lines, take: (topic: string, payload: Buffer) => takeDownlink(ref, trust, handlers, log, topic, payload) };
}

const ackMessage = { v: 1, alarmId: randomUUID(), by: 'officer-7', at: '2026-11-22T10:00:00.000Z' };
const ack = sealed('ack', ref, ackMessage);

describe('downlink: one handler per kind', () => {
  it('an unknown kind is refused and logged, even with a payload that would pass for an ack', () => {
    const h = harness();
    h.take(`${vehicleBase(ref)}/down/reboot`, ack);
    h.take(`${vehicleBase(ref)}/down/ack2`, ack);
    expect(h.calls).toEqual([]);
    expect(h.lines.filter((l) => l.event === 'downlink.rejected').map((l) => l.reason)).toEqual([
      'unknown command kind "reboot" (this agent knows receipt, ack, footage, file)',
      'unknown command kind "ack2" (this agent knows receipt, ack, footage, file)',
    ]);
  });

  it('another vehicle\'s topic, or a malformed payload of a known kind, is refused; a good ack reaches the ack handler only', () => {
    const h = harness();
    h.take(downlinkTopic({ fleet: 'city', vehicle: 'bus-2' }, 'ack'), ack);
    h.take(downlinkTopic(ref, 'ack'), sealed('ack', ref, { v: 1, alarmId: 'nope' }));
    expect(h.calls).toEqual([]);
    expect(h.lines.filter((l) => l.event === 'downlink.rejected')).toHaveLength(2);
    h.take(downlinkTopic(ref, 'ack'), ack);
    expect(h.calls).toEqual(['ack']);
  });
});

describe('downlink: only signed commands are acted on', () => {
  const topic = downlinkTopic(ref, 'ack');
  const refusals = (lines: Record<string, unknown>[]) => lines.filter((l) => l.event === 'downlink.refused').map((l) => l.reason as string);

  it('refuses, with the reason, an unsigned command, a stranger\'s key, another vehicle\'s, another kind\'s, an expired one and a tampered one', () => {
    const h = harness();
    const good = JSON.parse(ack.toString()) as Record<string, string>;
    h.take(topic, encode(ackMessage));
    h.take(topic, sealed('ack', ref, ackMessage, { key: strangerKey }));
    h.take(topic, sealed('ack', ref, ackMessage, { key: strangerKey, keyId: 'stranger' }));
    h.take(topic, sealed('ack', { fleet: 'city', vehicle: 'bus-2' }, ackMessage));
    h.take(topic, sealed('receipt', ref, ackMessage));
    h.take(topic, sealed('ack', ref, ackMessage, { now: new Date(Date.now() - 2 * 3600_000), ttlS: 600 }));
    h.take(topic, encode({ ...good, msg: good.msg!.replace('officer-7', 'officer-8') }));
    h.take(topic, encode({ ...good, by: 'someone-else' }));
    expect(h.calls).toEqual([]);
    const reasons = refusals(h.lines);
    expect(reasons).toHaveLength(8);
    expect(reasons[0]).toMatch(/^not a signed command: /);
    expect(reasons[1]).toBe('bad signature for key "test-dispatch"');
    expect(reasons[2]).toMatch(/^signed with key "stranger", which this bus does not trust \(it trusts test-dispatch\)/);
    expect(reasons[3]).toBe('signed for city/bus-2, this is city/bus-1');
    expect(reasons[4]).toBe('signed as a receipt command, came on the ack topic');
    expect(reasons[5]).toMatch(/^expired at /);
    expect(reasons[6]).toBe('bad signature for key "test-dispatch"');
    expect(reasons[7]).toBe('bad signature for key "test-dispatch"');
    // The genuine one, even sent again (commands are idempotent), is acted on; so is one signed in the name of 王警官.
    h.take(topic, ack);
    h.take(topic, ack);
    h.take(topic, signCommand({ keyId: TEST_KEY_ID, privateKey: testKey.privateKey, by: '王警官' }, 'ack', ref, ackMessage, new Date(), 600));
    expect(h.calls).toEqual(['ack', 'ack', 'ack']);
  });

  it('before the bus has GPS time it does not judge expiry (its clock may read 1970); everything else is still checked', () => {
    const calls: string[] = [];
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const handlers: DownlinkHandlers = { receipt: () => calls.push('receipt'), ack: () => calls.push('ack'), footage: () => calls.push('footage'), file: () => calls.push('file') };
    const noTime = testTrust(ref, log, () => null);
    const old = sealed('ack', ref, ackMessage, { now: new Date('2020-01-01T00:00:00Z'), ttlS: 600 });
    takeDownlink(ref, noTime, handlers, log, topic, old);
    takeDownlink(ref, noTime, handlers, log, topic, sealed('ack', ref, ackMessage, { key: strangerKey }));
    expect(calls).toEqual(['ack']);
    expect(refusals(lines)).toEqual(['bad signature for key "test-dispatch"']);
    // With GPS time, the same old command is refused as expired.
    takeDownlink(ref, testTrust(ref, log), handlers, log, topic, old);
    expect(refusals(lines)[1]).toMatch(/^expired at 2020-01-01T00:10:00.000Z/);
  });
});

describe('downlink: a person signing with their own key, under a grant of a trusted dispatch key', () => {
  const topic = downlinkTopic(ref, 'ack');
  const refusals = (lines: Record<string, unknown>[]) => lines.filter((l) => l.event === 'downlink.refused').map((l) => l.reason as string);
  const wang = generateKeyPairSync('ed25519');
  const day = new Date(Date.now() + 86_400_000);
  const grant = signGrant({ keyId: TEST_KEY_ID, privateKey: testKey.privateKey }, '王警官', wang.privateKey, day);
  const personal = (o: { by?: string; g?: Grant; key?: typeof wang.privateKey; keyId?: string } = {}) =>
    signCommand({ keyId: o.keyId ?? TEST_KEY_ID, privateKey: o.key ?? wang.privateKey, by: o.by ?? '王警官', grant: o.g ?? grant }, 'ack', ref, { ...ackMessage, by: '王警官' }, new Date(), 600);

  it('acts on the person\'s command and logs who signed it; refuses one whose grant, person, key or signature does not hold', () => {
    const h = harness();
    h.take(topic, personal());
    expect(h.calls).toEqual(['ack']);
    expect(h.lines.find((l) => l.event === 'downlink.signed')).toMatchObject({ by: '王警官', personal: true, key: TEST_KEY_ID });
    const other = generateKeyPairSync('ed25519');
    const payload = (p: Buffer) => JSON.parse(p.toString()) as Record<string, unknown>;
    const good = payload(personal());
    // Another person's name on the command; a grant made by a key nobody trusts; an expired grant; the person's
    // signature from another key; the grant's key swapped for the attacker's (the grant's signature breaks).
    h.take(topic, encode({ ...good, by: '李警官' }));
    h.take(topic, personal({ g: signGrant({ keyId: TEST_KEY_ID, privateKey: strangerKey.privateKey }, '王警官', wang.privateKey, day) }));
    h.take(topic, personal({ g: signGrant({ keyId: TEST_KEY_ID, privateKey: testKey.privateKey }, '王警官', wang.privateKey, new Date(Date.now() - 3600_000)) }));
    h.take(topic, personal({ key: other.privateKey }));
    const swapped = { ...grant, pub: other.publicKey.export({ type: 'spki', format: 'der' }).toString('base64') };
    h.take(topic, personal({ key: other.privateKey, g: swapped }));
    expect(h.calls).toEqual(['ack']);
    const reasons = refusals(h.lines);
    expect(reasons).toEqual([
      'the grant is 王警官\'s from key "test-dispatch", the command says 李警官 under "test-dispatch"',
      'bad grant signature for key "test-dispatch" (person 王警官)',
      expect.stringMatching(/^王警官's grant expired at /),
      'bad signature for 王警官\'s key (grant of "test-dispatch")',
      'bad grant signature for key "test-dispatch" (person 王警官)',
    ]);
    // Signing refuses a grant that is not the signer's.
    expect(() => personal({ by: '李警官' })).toThrow(/the grant is 王警官's/);
  });
});
