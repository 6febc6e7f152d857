// The account of what the outbox dropped (firmware/diagnostics.ts): every
// evicted seq of every lane is in an eviction record that is itself never
// evicted. Chaos (40 cycles) found track seqs neither at dispatch nor in any
// record: the records lived in the diag lane, and each new one evicted the
// oldest to get in, taking its ranges with it.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { migrate, openDatabase } from '../../common/sqlite.ts';
import { Diagnostics } from '../../firmware/diagnostics.ts';
import { laneItem } from '../../gateway/lane-item.ts';
import { OUTBOX_SCHEMA, Outbox, OutboxConfigSchema } from '../../gateway/outbox.ts';

const ref = { fleet: 'city', vehicle: 'bus-1' };
const dir = mkdtempSync(join(tmpdir(), 'bg-diagnostics-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('eviction records', () => {
  it('under a 16 KiB quota, hours of track and failure diags later, every evicted track seq is in a ledger record still in the outbox', () => {
    const db = openDatabase(join(dir, 'outbox.db'));
    migrate(db, [OUTBOX_SCHEMA]);
    let diagnostics: Diagnostics | undefined;
    const outbox = new Outbox(db, OutboxConfigSchema.parse({ maxBytes: 16 * 1024 }), (e) => diagnostics?.onEvicted(e));
    // Nothing is sent (the bus is offline): no record is ever closed by the uplink.
    diagnostics = new Diagnostics({ ref, outbox, takenForSending: () => false, now: () => new Date().toISOString(), log: pino({ level: 'silent' }) });
    const point = { at: '2026-11-22T10:00:00.000Z', timeSource: 'gps', fix: { valid: true, lat: 34.26, lon: 108.94 } };
    for (let i = 0; i < 400; i++) {
      outbox.write('track', () => outbox.append(laneItem(ref, 'position', 'track', { v: 1, id: randomUUID(), ...ref, alarmId: null, points: [point, point, point] } as never)));
      if (i % 20 === 0) diagnostics.record({ event: 'snapshot.failed', reason: `camera cabin: no reply (${i})` });
    }
    const held = new Set(outbox.after('track', 0, 10_000).map((m) => m.seq));
    const ledger = outbox.after('ledger', 0, 10_000).map((m) => JSON.parse(m.payload.toString()) as { event: string; affectedLane: string; ranges: [number, number][] });
    expect(ledger.length).toBeGreaterThan(0);
    expect(ledger.every((r) => r.event === 'evicted')).toBe(true);
    const accounted = new Set<number>();
    for (const r of ledger.filter((x) => x.affectedLane === 'track')) for (const [a, b] of r.ranges) for (let s = a; s <= b; s++) accounted.add(s);
    const missing: number[] = [];
    for (let seq = 1; seq <= outbox.lastSeq('track'); seq++) if (!held.has(seq) && !accounted.has(seq)) missing.push(seq);
    expect(missing).toEqual([]);
    // The failure diags gave way (their lane is evictable); the ledger is small beside the quota.
    expect(outbox.after('ledger', 0, 10_000).reduce((n, m) => n + m.payload.length, 0)).toBeLessThan(4 * 1024);
    db.close();
  });
});
