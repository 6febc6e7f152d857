import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AlarmMessageSchema, ReceiptMessageSchema, StatusMessageSchema, decode, encode } from '../../protocol/messages.ts';
import { anAlarm } from '../helpers/messages.ts';
import { uplinkTemplate } from '../../scripts/fuzz-targets.ts';
import type { Health } from '../../protocol/health.ts';

const alarm = anAlarm({
  raisedAt: '2026-11-22T10:00:00.000Z',
  fix: {
    valid: true, lat: 34.26, lon: 108.94, altM: 400.1, speedMps: 8, trackDeg: 90,
    time: '2026-11-22T09:59:59.000Z', ageS: 0.4, stale: false, sats: 9, hdop: 0.9,
  },
});

describe('message decoding', () => {
  it('accepts a well-formed alarm, with or without a fix', () => {
    const ok = decode(AlarmMessageSchema, encode(alarm));
    expect(ok.ok && ok.value.id).toBe(alarm.id);
    const noFix = decode(AlarmMessageSchema, encode({ ...alarm, fix: null }));
    expect(noFix.ok && noFix.value.fix).toBeNull();
  });

  it('rejects with a reason: not JSON, binary, wrong version, bad field', () => {
    const cases: [Buffer | string, RegExp][] = [
      ['{"v":1,', /not JSON/],
      [Buffer.from([0xff, 0x00, 0x13, 0x37]), /not JSON/],
      [encode({ ...alarm, v: 2 }), /^v:/],
      [encode({ ...alarm, id: 'x' }), /^id:/],
      [encode({ ...alarm, fix: { ...alarm.fix, lat: 91 } }), /fix\.lat/],
      [encode({ ...alarm, kind: 'panic' }), /^kind:/],
      [encode({ ...alarm, vehicle: 'bus/2' }), /^vehicle:/],
      ['null', /\(root\)/],
    ];
    for (const [payload, reason] of cases) {
      const r = decode(AlarmMessageSchema, payload);
      expect(r.ok, String(payload)).toBe(false);
      if (!r.ok) expect(r.error).toMatch(reason);
    }
  });

  it('checks a cumulative receipt: epoch, known lanes, whole non-negative numbers, at most 1000 ids', () => {
    const epoch = '0123456789abcdef';
    expect(decode(ReceiptMessageSchema, encode({ v: 1, epoch, lanes: { alarm: 3, track: 120 } })).ok).toBe(true);
    expect(decode(ReceiptMessageSchema, encode({ v: 1, epoch, lanes: {}, ids: [randomUUID()] })).ok).toBe(true);
    const bad: [unknown, RegExp][] = [
      [{ v: 1, epoch: 'xyz', lanes: {} }, /^epoch:/],
      [{ v: 1, epoch, lanes: { video: 1 } }, /lanes/],
      [{ v: 1, epoch, lanes: { alarm: -1 } }, /lanes\.alarm/],
      [{ v: 1, epoch, lanes: { alarm: 1.5 } }, /lanes\.alarm/],
      [{ v: 1, epoch, lanes: {}, ids: Array.from({ length: 1001 }, () => randomUUID()) }, /^ids:/],
    ];
    for (const [msg, reason] of bad) {
      const r = decode(ReceiptMessageSchema, encode(msg as object));
      expect(r.ok, JSON.stringify(msg).slice(0, 80)).toBe(false);
      if (!r.ok) expect(r.error).toMatch(reason);
    }
  });

  it('checks the health in a status: a malformed one refuses the status whole, with the field that is wrong', () => {
    // The fuzzer's valid status, with a camera fault in its health.
    const status = uplinkTemplate('status') as { health: Health } & Record<string, unknown>;
    const health = status.health;
    const ok = decode(StatusMessageSchema, encode(status));
    expect(ok.ok && ok.value.health?.faults).toEqual(['camera:front']);
    // Without health (agents before it, and every will): still a status.
    expect(decode(StatusMessageSchema, encode({ ...status, health: undefined })).ok).toBe(true);
    const bad: [unknown, RegExp][] = [
      [{ ...health, faults: ['camera:front\u001b[2J'] }, /health\.faults\.0/],
      [{ ...health, faults: Array.from({ length: 41 }, (_, i) => `camera:c${i}`) }, /health\.faults/],
      [{ ...health, uptimeS: -1 }, /health\.uptimeS/],
      [{ ...health, gnss: { ...health.gnss, state: 'great' } }, /health\.gnss\.state/],
      [{ ...health, devices: [{ ...health.devices[0], name: '../x' }] }, /health\.devices\.0\.name/],
      [{ ...health, devices: [{ ...health.devices[0], detail: 'x'.repeat(301) }] }, /health\.devices\.0\.detail/],
      [{ ...health, outbox: { video: { depth: 1, oldestAgeS: 1 } } }, /health\.outbox/],
      [{ ...health, disk: { ...health.disk, freeBytes: 1.5 } }, /health\.disk\.freeBytes/],
    ];
    for (const [h, reason] of bad) {
      const r = decode(StatusMessageSchema, encode({ ...status, health: h }));
      expect(r.ok, JSON.stringify(h).slice(0, 120)).toBe(false);
      if (!r.ok) expect(r.error).toMatch(reason);
    }
  });
});
