import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Eviction, OUTBOX_SCHEMA, Outbox, OutboxConfigSchema, OutboxFullError } from '../../gateway/outbox.ts';
import type { Lane } from '../../protocol/lanes.ts';
import { type Db, migrate, openDatabase } from '../../common/sqlite.ts';

describe('outbox lanes (real SQLite file)', () => {
  let dir: string;
  let db: Db;
  const evictions: Eviction[] = [];
  const open = (config: Record<string, unknown> = {}) => {
    db = openDatabase(join(dir, 'o.db'));
    migrate(db, [OUTBOX_SCHEMA]);
    return new Outbox(db, OutboxConfigSchema.parse(config), (e) => evictions.push(e));
  };
  const add = (o: Outbox, lane: Lane, bytes = 100) =>
    o.write(lane, () => o.append({ id: randomUUID(), lane, topic: `t/${lane}`, payload: Buffer.from(`{"x":"${'a'.repeat(bytes)}"}`) }));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'outbox-'));
    evictions.length = 0;
  });
  afterEach(() => {
    if (db?.open) db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('numbers each lane 1, 2, 3 and keeps numbering and epoch across a restart', () => {
    let o = open();
    expect([add(o, 'alarm'), add(o, 'track'), add(o, 'alarm'), add(o, 'track'), add(o, 'track')]).toEqual([1, 1, 2, 2, 3]);
    const { epoch } = o;
    expect(epoch).toMatch(/^[0-9a-f]{16}$/);
    db.close();
    o = open();
    expect(o.epoch).toBe(epoch);
    expect(add(o, 'alarm')).toBe(3);
    expect(o.after('track', 0, 10).map((i) => i.seq)).toEqual([1, 2, 3]);
    expect(o.after('track', 1, 1).map((i) => i.seq)).toEqual([2]);
  });

  it('drops a lane up to the receipted number, and moves its floor', () => {
    const o = open();
    for (let i = 0; i < 5; i++) add(o, 'track');
    expect(o.floor('track')).toBe(1);
    expect(o.confirmUpTo('track', 3)).toHaveLength(3);
    expect(o.confirmUpTo('track', 3)).toHaveLength(0); // a repeated receipt is harmless
    expect(o.floor('track')).toBe(4);
    o.confirmUpTo('track', 5);
    expect(o.floor('track')).toBe(6); // empty: the next number
    expect(o.size()).toBe(0);
    expect(o.bytes()).toBe(0);
  });

  it('at the quota, the track gives way oldest first and the eviction is reported; alarms never do', () => {
    const o = open({ maxBytes: 64 * 1024 });
    for (let i = 0; i < 100; i++) add(o, 'track', 1000); // ~110 KB offered into 64 KB
    expect(o.bytes()).toBeLessThanOrEqual(64 * 1024);
    expect(evictions.length).toBeGreaterThan(0);
    expect(evictions.every((e) => e.lane === 'track' && e.reason === 'quota')).toBe(true);
    const dropped = evictions.reduce((n, e) => n + e.count, 0);
    expect(o.size('track') + dropped).toBe(100);
    expect(o.floor('track')).toBe(dropped + 1); // dispatch is told not to wait for them
    // Alarms push the track out, and are kept even beyond the quota once nothing else can give way.
    for (let i = 0; i < 100; i++) add(o, 'alarm', 1000);
    expect(o.size('alarm')).toBe(100);
    expect(o.size('track')).toBe(0);
    expect(() => add(o, 'track', 1000)).toThrow(OutboxFullError);
  });

  it('a lane never evicts a lane that drains before it', () => {
    const o = open({ maxBytes: 64 * 1024 });
    for (let i = 0; i < 40; i++) add(o, 'followup', 1000);
    const before = o.size('followup');
    expect(() => add(o, 'diag', 30_000)).toThrow(OutboxFullError);
    expect(o.size('followup')).toBe(before);
  });

  it('expires old track and diagnostics, never alarms', () => {
    const o = open({ lanes: { track: { maxAgeS: 60 } } });
    add(o, 'track');
    add(o, 'alarm');
    o.expire(Date.now() + 61_000);
    expect(o.size('track')).toBe(0);
    expect(o.size('alarm')).toBe(1);
    expect(evictions).toMatchObject([{ lane: 'track', count: 1, reason: 'expired' }]);
  });

  it('refuses a config that would evict or expire alarms, incidents or evidence', () => {
    const r = OutboxConfigSchema.safeParse({ lanes: { alarm: { evict: 'oldest' }, clip: { maxAgeS: 3600 } } });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join('.'))).toEqual(['lanes.alarm.evict', 'lanes.clip.maxAgeS']);
  });

  it('a failed transaction leaves the byte count as it was', () => {
    const o = open();
    add(o, 'track');
    const bytes = o.bytes();
    expect(() =>
      o.write('track', () => {
        o.append({ id: randomUUID(), lane: 'track', topic: 't', payload: Buffer.from('{}') });
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(o.bytes()).toBe(bytes);
    expect(o.size()).toBe(1);
  });
});

describe('outbox eviction that records itself', () => {
  it('does not spin when each eviction appends a record as large as what it freed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'outbox-spin-'));
    const db = openDatabase(join(dir, 'o.db'));
    migrate(db, [OUTBOX_SCHEMA]);
    let evictions = 0;
    // The worst case: every eviction of the diag lane appends a diag record of the same size.
    const o: Outbox = new Outbox(db, OutboxConfigSchema.parse({ maxBytes: 16 * 1024 }), () => {
      evictions++;
      o.append({ id: randomUUID(), lane: 'diag', topic: 'd', payload: Buffer.alloc(400, 0x20) });
    });
    for (let i = 0; i < 100; i++) {
      try {
        o.write('diag', () => o.append({ id: randomUUID(), lane: 'diag', topic: 'd', payload: Buffer.alloc(400, 0x20) }));
      } catch {
        // refused when full: acceptable, spinning is not
      }
    }
    expect(evictions).toBeLessThan(10_000);
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
