// The bus takes each kind of command through one table (gateway/downlink.ts):
// a kind it does not know, a topic of another vehicle or a malformed payload
// is logged as downlink.rejected and changes nothing; it is never taken for
// an acknowledgement.

import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { type DownlinkHandlers, takeDownlink } from '../../gateway/downlink.ts';
import { encode } from '../../protocol/messages.ts';
import { downlinkTopic, vehicleBase } from '../../protocol/topics.ts';

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
  return { calls, lines, take: (topic: string, payload: Buffer) => takeDownlink(ref, handlers, log, topic, payload) };
}

const ack = encode({ v: 1, alarmId: randomUUID(), by: 'officer-7', at: '2026-11-22T10:00:00.000Z' });

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
    h.take(downlinkTopic(ref, 'ack'), encode({ v: 1, alarmId: 'nope' }));
    h.take(downlinkTopic(ref, 'receipt'), ack);
    expect(h.calls).toEqual([]);
    expect(h.lines.filter((l) => l.event === 'downlink.rejected')).toHaveLength(3);
    h.take(downlinkTopic(ref, 'ack'), ack);
    expect(h.calls).toEqual(['ack']);
  });
});
