import { randomUUID } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import type { DispatchStore } from '../../dispatch/store.ts';
import type { Fix, PositionMessage } from '../../protocol/messages.ts';
import { FreshStore, anAlarm as alarm } from '../helpers/messages.ts';
import { currentDurability, writeTx } from '../../common/sqlite.ts';

describe('dispatch store (real SQLite file)', () => {
  const fresh = new FreshStore('dstore-');
  let store: DispatchStore;
  beforeEach(() => {
    store = fresh.store;
  });

  it('stores an alarm once however often the bus re-sends it', () => {
    const a = alarm();
    expect(store.addAlarm(a)).toBe(true);
    expect(store.addAlarm(a)).toBe(false);
    expect(store.addAlarm({ ...a, heldMs: 999 })).toBe(false);
    expect(store.all('emergency')).toHaveLength(1);
    expect(store.get(a.id)?.heldMs).toBe(500);
  });

  it('keeps incidents in their own queue', () => {
    const e = alarm();
    const i = alarm({ kind: 'incident' });
    store.addAlarm(e);
    store.addAlarm(i);
    expect(store.openQueue('emergency').map((a) => a.id)).toEqual([e.id]);
    expect(store.openQueue('incident').map((a) => a.id)).toEqual([i.id]);
  });

  it('finds an alarm by a unique prefix and explains a bad or ambiguous one', () => {
    const a = alarm({ id: 'aaaa1111-0000-4000-8000-000000000001' });
    const b = alarm({ id: 'aaaa2222-0000-4000-8000-000000000002' });
    store.addAlarm(a);
    store.addAlarm(b);
    expect(store.find('aaaa1').id).toBe(a.id);
    expect(() => store.find('aaaa')).toThrow(/ambiguous: matches/);
    expect(() => store.find('bbbb')).toThrow(/no such alarm/);
    expect(() => store.find('a%')).toThrow(/at least its first 4 characters/);
  });

  it('records the first acknowledgement only, and tracks whether the bus has seen it', () => {
    const a = alarm();
    store.addAlarm(a);
    expect(store.acknowledge(a, 'officer-1', '2026-11-22T10:00:00.000Z')).toBe(true);
    expect(store.acknowledge(a, 'officer-2', '2026-11-22T10:01:00.000Z')).toBe(false);
    expect(store.get(a.id)?.ackBy).toBe('officer-1');
    expect(store.openQueue('emergency')).toHaveLength(0);
    expect(store.unseenAcks().map((x) => x.id)).toEqual([a.id]);
    expect(store.markAckSeen([a.id], { fleet: 'city', vehicle: 'bus-1' })).toBe(1);
    expect(store.unseenAcks()).toHaveLength(0);
  });

  it('re-opens an acknowledgement a bus says it lacks, only for that bus\'s own acknowledged alarms', () => {
    const mine = alarm();
    const unacked = alarm();
    const other = alarm({ vehicle: 'bus-2' });
    for (const a of [mine, unacked, other]) store.addAlarm(a);
    for (const a of [mine, other]) {
      store.acknowledge(a, 'officer-1', '2026-11-22T10:00:00.000Z');
      store.markAckSeen([a.id], a);
    }
    // bus-1 lists as open its own acked alarm, its own unacked one, and bus-2's acked one.
    expect(store.reopenAcks({ fleet: 'city', vehicle: 'bus-1' }, [mine.id, unacked.id, other.id, randomUUID()])).toEqual([mine.id]);
    expect(store.unseenAcks().map((x) => x.id)).toEqual([mine.id]);
    expect(store.get(other.id)?.ackSeenAt).not.toBeNull();
  });

  it('stores every point of a track batch once, however often the batch is re-sent', () => {
    const fix = (lat: number): Fix => ({ valid: true, lat, lon: 108.94, altM: null, speedMps: 5, trackDeg: 90, time: null, ageS: 0, stale: false, sats: null, hdop: null });
    const batch: PositionMessage = {
      v: 1,
      id: randomUUID(),
      fleet: 'city',
      vehicle: 'bus-1',
      alarmId: null,
      points: [
        { at: '2026-11-22T10:00:00.000Z', timeSource: 'gps', fix: fix(34.1) },
        { at: '2026-11-22T10:00:05.000Z', timeSource: 'gps', fix: fix(34.2) },
      ],
    };
    expect(store.addPosition(batch)).toBe(2);
    expect(store.addPosition(batch)).toBe(0);
    expect(store.positions({ fleet: 'city', vehicle: 'bus-1' }).map((p) => p.fix.lat)).toEqual([34.1, 34.2]);
  });

  it('keeps whether an alarm time was corrected to GPS time', () => {
    const a = alarm({ timeSource: 'system' });
    store.addAlarm(a);
    expect(store.get(a.id)?.timeSource).toBe('system');
  });
});

describe('dispatch lane progress (cumulative receipts)', () => {
  const fresh = new FreshStore('dlane-');
  let store: DispatchStore;
  const ref = { fleet: 'city', vehicle: 'bus-1' };
  const env = (seq: number, floor = 1) => ({ lane: 'track' as const, epoch: '0123456789abcdef', seq, floor });
  beforeEach(() => {
    store = fresh.store;
  });

  it('applies each seq once, acknowledges up to the first gap, and survives a restart', () => {
    let applied = 0;
    const apply = () => {
      applied++;
    };
    expect(store.accept(ref, env(1), apply)).toEqual({ fresh: true, upTo: 1 });
    expect(store.accept(ref, env(3), apply)).toEqual({ fresh: true, upTo: 1 }); // 2 missing
    expect(store.accept(ref, env(3), apply)).toEqual({ fresh: false, upTo: 1 });
    expect(store.accept(ref, env(2), apply)).toEqual({ fresh: true, upTo: 3 });
    expect(store.accept(ref, env(1), apply)).toEqual({ fresh: false, upTo: 3 });
    expect(applied).toBe(3);
    store = fresh.reopen();
    expect(store.accept(ref, env(2), apply)).toEqual({ fresh: false, upTo: 3 });
    expect(applied).toBe(3);
  });

  it("jumps over what the bus evicted (its floor), and keys progress by the bus's epoch", () => {
    const apply = () => {};
    expect(store.accept(ref, env(10, 10), apply)).toEqual({ fresh: true, upTo: 10 });
    expect(store.accept(ref, { ...env(1), epoch: 'fedcba9876543210' }, apply)).toEqual({ fresh: true, upTo: 1 });
  });

  it('rolls back the seq when applying fails, so the re-send is applied', () => {
    expect(() =>
      store.accept(ref, env(1), () => {
        throw new Error('disk');
      }),
    ).toThrow('disk');
    let applied = false;
    expect(store.accept(ref, env(1), () => (applied = true)).fresh).toBe(true);
    expect(applied).toBe(true);
  });

  it('an alarm commits with fsync whatever the write before it left the connection at (a refusal count, a signature verdict: NORMAL)', () => {
    writeTx(store.db, 'NORMAL', () => store.db.prepare('SELECT 1').get());
    expect(currentDurability(store.db)).toBe('NORMAL');
    let during: string | null = null;
    store.accept(ref, env(1), () => {
      during = currentDurability(store.db);
      store.addAlarm(alarm());
    });
    expect(during).toBe('FULL');
  });

  it('inside a bulk batch (NORMAL, made durable by the batch), a message that fails is undone alone', () => {
    writeTx(store.db, 'NORMAL', () => {
      store.accept(ref, env(1), () => store.addAlarm(alarm()));
      expect(() =>
        store.accept(ref, env(2), () => {
          store.addAlarm(alarm());
          throw new Error('bad message');
        }),
      ).toThrow('bad message');
      store.accept(ref, env(3), () => store.addAlarm(alarm()));
    });
    // The first and third are stored; the second's alarm and its seq are not (its re-send is applied).
    expect(store.all('emergency')).toHaveLength(2);
    let applied = false;
    expect(store.accept(ref, env(2), () => (applied = true)).fresh).toBe(true);
    expect(applied).toBe(true);
  });
});
