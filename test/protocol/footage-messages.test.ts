// Footage on request, the wire: the request and answer schemas, the window
// rules both ends apply, the CLI's times, and what dispatch's book makes of
// answers and stored clips (a real SQLite file).

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseWhen } from '../../dispatch/footage.ts';
import { DispatchStore } from '../../dispatch/store.ts';
import { EvidenceMetaSchema } from '../../protocol/file-transfer.ts';
import {
  FOOTAGE_MAX_AHEAD_S,
  FOOTAGE_MAX_WINDOW_S,
  type FootageAnswer,
  FootageAnswerWireSchema,
  FootageRequestSchema,
  decode,
  encode,
  footageWindowProblem,
} from '../../protocol/messages.ts';
import { DOWNLINK_KINDS, UPLINK_KINDS, downlinkTopic, parseTopic, uplinkTopic } from '../../protocol/topics.ts';

const NOW = Date.parse('2026-11-23T08:20:00.000Z');
const request = (over: Record<string, unknown> = {}) => ({
  v: 1,
  id: randomUUID(),
  from: '2026-11-23T08:15:00.000Z',
  to: '2026-11-23T08:16:00.000Z',
  camera: null,
  by: 'duty-officer',
  at: '2026-11-23T08:20:00.000Z',
  ...over,
});
const answer = (over: Partial<FootageAnswer> = {}): FootageAnswer => ({
  v: 1,
  id: randomUUID(),
  fleet: 'city',
  vehicle: 'bus-1',
  requestId: randomUUID(),
  camera: 'cabin',
  status: 'unavailable',
  reason: 'footage 2026-11-23T08:15:00.000Z to 2026-11-23T08:16:00.000Z is no longer in the ring (overwritten; the oldest footage in the ring starts at 2026-11-23T08:18:00.000Z)',
  ring: { from: '2026-11-23T08:18:00.000Z', to: '2026-11-23T08:20:00.000Z' },
  fileId: null,
  at: '2026-11-23T08:20:01.000Z',
  cameras: ['cabin'],
  ...over,
});

describe('footage request on the wire', () => {
  it('has its own kind on both directions of a vehicle', () => {
    expect(DOWNLINK_KINDS).toContain('footage');
    expect(UPLINK_KINDS).toContain('footage');
    const ref = { fleet: 'city', vehicle: 'bus-1' };
    expect(parseTopic(downlinkTopic(ref, 'footage'))).toMatchObject({ direction: 'down', kind: 'footage' });
    expect(parseTopic(uplinkTopic(ref, 'footage'))).toMatchObject({ direction: 'up', kind: 'footage' });
  });

  it('accepts a request for every camera or for one', () => {
    expect(decode(FootageRequestSchema, encode(request())).ok).toBe(true);
    const one = decode(FootageRequestSchema, encode(request({ camera: 'cabin', from: '2026-11-23T09:15:00+01:00' })));
    expect(one.ok && one.value.camera).toBe('cabin');
  });

  it('refuses a malformed request with the field that is wrong', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ id: 'not-a-uuid' }, /id/],
      [{ from: 'yesterday' }, /from/],
      [{ to: '2026-11-23T08:16:00' }, /to/], // no zone
      [{ camera: '../etc' }, /camera/],
      [{ camera: undefined }, /camera/],
      [{ by: '' }, /by/],
      [{ v: 2 }, /v/],
    ];
    for (const [over, field] of cases) {
      const r = decode(FootageRequestSchema, encode(request(over)));
      expect(r.ok, JSON.stringify(over)).toBe(false);
      if (!r.ok) expect(r.error).toMatch(field);
    }
    expect(decode(FootageRequestSchema, Buffer.from('{"v":1,')).ok).toBe(false);
  });
});

describe('footage window rules (dispatch before sending, the bus on receipt)', () => {
  it('a window in the past up to the maximum length is fine', () => {
    expect(footageWindowProblem(request(), { nowMs: NOW })).toBeNull();
    expect(footageWindowProblem({ from: '2026-11-23T08:00:00Z', to: '2026-11-23T08:10:00Z' }, { nowMs: NOW })).toBeNull(); // exactly 600 s
  });

  it('says why a window is refused', () => {
    expect(footageWindowProblem({ from: '2026-11-23T08:16:00Z', to: '2026-11-23T08:15:00Z' }, { nowMs: NOW })).toMatch(/from .* must be before to/);
    expect(footageWindowProblem({ from: '2026-11-23T08:15:00Z', to: '2026-11-23T08:15:00Z' }, { nowMs: NOW })).toMatch(/must be before/);
    expect(footageWindowProblem({ from: '2026-11-23T08:00:00Z', to: '2026-11-23T08:10:00.001Z' }, { nowMs: NOW })).toMatch(`at most ${FOOTAGE_MAX_WINDOW_S} s`);
    expect(footageWindowProblem({ from: '2026-11-23T08:19:00Z', to: '2026-11-23T08:29:00Z' }, { nowMs: NOW })).toMatch(`at most ${FOOTAGE_MAX_AHEAD_S} s ahead`);
    expect(footageWindowProblem({ from: '2099-01-01T00:00:00Z', to: '2099-01-01T00:01:00Z' }, { nowMs: NOW })).toMatch(/ahead/);
    expect(footageWindowProblem({ from: 'x', to: '2026-11-23T08:16:00Z' }, { nowMs: NOW })).toMatch(/not two times/);
  });

  it('a window ending shortly after now is allowed (the bus waits for it); limits are settable', () => {
    expect(footageWindowProblem({ from: '2026-11-23T08:19:30Z', to: '2026-11-23T08:20:30Z' }, { nowMs: NOW })).toBeNull();
    expect(footageWindowProblem(request(), { nowMs: NOW, maxWindowS: 30 })).toMatch('at most 30 s');
  });
});

describe('footage answer on the wire', () => {
  const envelope = { lane: 'clip', epoch: '0123456789abcdef', seq: 1, floor: 1 };

  it('carries the outbox envelope like the other lanes, and the ring span', () => {
    const r = decode(FootageAnswerWireSchema, encode({ ...envelope, ...answer() }));
    expect(r.ok && r.value.lane).toBe('clip');
    expect(r.ok && r.value.ring?.from).toBe('2026-11-23T08:18:00.000Z');
  });

  it('each status, with or without a file, camera or camera list (buses before the list still decode)', () => {
    for (const status of ['accepted', 'partial', 'unavailable', 'failed'] as const) {
      expect(decode(FootageAnswerWireSchema, encode({ ...envelope, ...answer({ status, fileId: status === 'accepted' || status === 'partial' ? randomUUID() : null }) })).ok).toBe(true);
    }
    const { cameras: _omit, ...old } = answer();
    expect(decode(FootageAnswerWireSchema, encode({ ...envelope, ...old })).ok).toBe(true);
    expect(decode(FootageAnswerWireSchema, encode({ ...envelope, ...answer({ camera: null, cameras: [], ring: null }) })).ok).toBe(true);
  });

  it('refuses an unknown status, a missing request id or a missing envelope', () => {
    expect(decode(FootageAnswerWireSchema, encode({ ...envelope, ...answer(), status: 'maybe' })).ok).toBe(false);
    expect(decode(FootageAnswerWireSchema, encode({ ...envelope, ...answer(), requestId: 'x' })).ok).toBe(false);
    expect(decode(FootageAnswerWireSchema, encode(answer())).ok).toBe(false);
  });

  it('a clip names the request it answers in its evidence meta', () => {
    const meta = { v: 1, kind: 'clip', fleet: 'city', vehicle: 'bus-1', alarmId: null, capturedAt: '2026-11-23T08:15:00.000Z', timeSource: 'gps', geotag: null, mime: 'video/mp4' };
    const requestId = randomUUID();
    const r = EvidenceMetaSchema.safeParse({ ...meta, requestId });
    expect(r.success && r.data.requestId).toBe(requestId);
    expect(EvidenceMetaSchema.safeParse(meta).success).toBe(true);
    expect(EvidenceMetaSchema.safeParse({ ...meta, requestId: 'nope' }).success).toBe(false);
  });
});

describe('busguard dispatch footage --from/--to', () => {
  it('takes ISO 8601 with a zone, "now", and spans before now', () => {
    expect(parseWhen('2026-11-23T08:15:00Z', NOW)).toBe(Date.parse('2026-11-23T08:15:00Z'));
    expect(parseWhen('2026-11-23T09:15+01:00', NOW)).toBe(Date.parse('2026-11-23T08:15:00Z'));
    expect(parseWhen('2026-11-23T08:15:00.250Z', NOW)).toBe(Date.parse('2026-11-23T08:15:00.250Z'));
    expect(parseWhen('now', NOW)).toBe(NOW);
    expect(parseWhen('-90s', NOW)).toBe(NOW - 90_000);
    expect(parseWhen('-90', NOW)).toBe(NOW - 90_000);
    expect(parseWhen('-5m', NOW)).toBe(NOW - 300_000);
    expect(parseWhen('-1h', NOW)).toBe(NOW - 3_600_000);
  });

  it('refuses a time without a zone, a date alone, or words', () => {
    for (const t of ['2026-11-23T08:15:00', '2026-11-23', 'yesterday', '+', '5m', '', '2026-13-45T08:15:00Z']) expect(parseWhen(t, NOW), t).toBeNull();
  });

  it('takes a span after now for a window that ends ahead ("+40s"), as the bus waits for it', () => {
    expect(parseWhen('+40s', NOW)).toBe(NOW + 40_000);
    expect(parseWhen('+2m', NOW)).toBe(NOW + 120_000);
  });
});

describe("dispatch's footage book", () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = '';
  });

  it('a request is unanswered until an answer arrives; complete when every camera answered and every clip is stored', () => {
    dir = mkdtempSync(join(tmpdir(), 'busguard-footage-book-'));
    const store = new DispatchStore(join(dir, 'dispatch.db'));
    try {
      const ref = { fleet: 'city', vehicle: 'bus-1' };
      const req = { value: FootageRequestSchema.parse(request()) };
      store.footage.add(ref, req.value);
      expect(store.footage.unanswered(ref).map((r) => r.id)).toEqual([req.value.id]);
      expect(store.footage.unanswered({ fleet: 'city', vehicle: 'bus-2' })).toEqual([]);

      const fileId = randomUUID();
      const front = answer({ requestId: req.value.id, camera: 'front', status: 'accepted', fileId, cameras: ['front', 'cabin'], reason: 'footage … is in the ring' });
      expect(store.footage.answer(ref, front)).toBe('new');
      expect(store.footage.answer(ref, front)).toBe('duplicate'); // the same answer again: once
      // Another bus answering this request, or an answer to a request never made, changes nothing.
      expect(store.footage.answer({ fleet: 'city', vehicle: 'bus-2' }, { ...front, id: randomUUID(), camera: 'cabin' })).toEqual({ refused: `footage request ${req.value.id} was made of city/bus-1` });
      expect(store.footage.answer(ref, { ...front, id: randomUUID(), requestId: randomUUID() })).toMatchObject({ refused: expect.stringMatching(/which dispatch never made$/) });
      expect(store.footage.unanswered(ref)).toEqual([]);
      let st = store.footage.get(req.value.id)!;
      expect(st.cameras).toEqual(['front', 'cabin']);
      expect(st.complete).toBe(false); // cabin has not answered, front's clip is not here

      store.footage.answer(ref, answer({ requestId: req.value.id, camera: 'cabin', cameras: ['front', 'cabin'] }));
      expect(store.footage.get(req.value.id)!.complete).toBe(false); // front's clip still on its way

      store.db
        .prepare(
          `INSERT INTO evidence_files (fleet, vehicle, file_id, name, size, sha256, kind, alarm_id, captured_at, time_source, geotag, meta, state, attempt, path, received_at, completed_at)
           VALUES ('city', 'bus-1', ?, 'footage.mp4', 10, 'ab', 'clip', NULL, ?, 'gps', NULL, ?, 'complete', 1, '/tmp/footage.mp4', ?, ?)`,
        )
        .run(fileId, front.at, JSON.stringify({ kind: 'clip', mime: 'video/mp4', requestId: req.value.id }), front.at, front.at);
      st = store.footage.get(req.value.id)!;
      expect(st.complete).toBe(true);
      expect(st.answers.find((a) => a.camera === 'front')!.delivered).toMatchObject({ fileId, path: '/tmp/footage.mp4', mime: 'video/mp4' });
      expect(store.footage.requestOfFile({ ...ref, fileId })).toBe(req.value.id);
      expect(store.footage.requestOfFile({ ...ref, fileId: randomUUID() })).toBeNull();
    } finally {
      store.close();
    }
  });
});
