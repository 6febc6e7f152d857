// Retention on a real dispatch database and real evidence files: each kind
// goes after its days, an open or held alarm keeps everything of it, and
// what went is written down.

import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { RetentionConfigSchema, Retention } from '../../dispatch/retention.ts';
import { FreshStore, anAlarm } from '../helpers/messages.ts';
import type { DispatchStore } from '../../dispatch/store.ts';

const DAY = 86_400_000;
const NOW = Date.parse('2026-12-03T12:00:00Z');
const ago = (days: number) => new Date(NOW - days * DAY).toISOString();
const ref = { fleet: 'city', vehicle: 'bus-1' };

function track(store: DispatchStore, daysAgo: number, alarmId: string | null = null): string {
  const id = crypto.randomUUID();
  store.addPosition({ v: 1, id, fleet: 'city', vehicle: 'bus-1', alarmId, points: [{ at: ago(daysAgo), timeSource: 'gps', fix: { valid: true, lat: 34.2, lon: 108.9, altM: null, speedMps: null, trackDeg: null, time: null, ageS: 0, stale: false, sats: 8, hdop: 1 } }] });
  return id;
}

function file(store: DispatchStore, dir: string, daysAgo: number, alarmId: string | null): string {
  const fileId = crypto.randomUUID();
  const path = join(dir, 'evidence', fileId, 'f.jpg');
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, Buffer.alloc(1000));
  writeFileSync(`${path}.sig.json`, '{}');
  store.db
    .prepare(
      `INSERT INTO evidence_files (fleet, vehicle, file_id, name, size, sha256, kind, alarm_id, captured_at, time_source, geotag, meta, state, attempt, path, received_at, completed_at)
       VALUES ('city', 'bus-1', ?, 'f.jpg', 1000, ?, ?, ?, ?, 'gps', NULL, '{}', 'complete', 1, ?, ?, ?)`,
    )
    .run(fileId, '0'.repeat(64), alarmId ? 'snapshot' : 'clip', alarmId, ago(daysAgo), path, ago(daysAgo), ago(daysAgo));
  return path;
}

const count = (store: DispatchStore, sql: string) => (store.db.prepare(sql).get() as { n: number }).n;

describe('retention', () => {
  const fresh = new FreshStore('busguard-retention-');

  it('deletes each kind after its days, keeps an open or held alarm\'s evidence and track, and logs what went', async () => {
    const { store } = fresh;
    const dir = dirname(store.db.name);
    const closed = anAlarm({ raisedAt: ago(2000) });
    const open = anAlarm({ raisedAt: ago(2000) });
    const held = anAlarm({ raisedAt: ago(2000) });
    for (const a of [closed, open, held]) store.addAlarm(a, ago(2000));
    store.acknowledge({ ...ref, id: closed.id }, 'anna', ago(1999));
    store.acknowledge({ ...ref, id: held.id }, 'anna', ago(1999));
    store.db.prepare("INSERT INTO alarm_holds VALUES ('city', 'bus-1', ?, 'case 2026/114', 'anna', ?)").run(held.id, ago(10));

    const oldTrack = track(store, 100);
    const recentTrack = track(store, 10);
    track(store, 2000, open.id); // follow-up of the open alarm: kept however old
    track(store, 2000, closed.id); // of the closed one: goes with the routine track
    store.addDiag({ v: 1, id: crypto.randomUUID(), fleet: 'city', vehicle: 'bus-1', at: ago(400), event: 'evicted', reason: 'old' }, ago(400));
    store.addDiag({ v: 1, id: crypto.randomUUID(), fleet: 'city', vehicle: 'bus-1', at: ago(1), event: 'evicted', reason: 'new' }, ago(1));
    const oldFootage = file(store, dir, 100, null);
    const newFootage = file(store, dir, 10, null);
    const closedPhoto = file(store, dir, 1999, closed.id);
    const openPhoto = file(store, dir, 1999, open.id);
    const heldPhoto = file(store, dir, 1999, held.id);

    const retention = new Retention(store.db, RetentionConfigSchema.parse({}), pino({ level: 'silent' }));
    const dry = await retention.run({ dryRun: true, now: NOW });
    expect(Object.fromEntries(dry.map((d) => [d.kind, d.count]))).toEqual({ track: 2, diags: 1, footage: 1, evidence: 1 });
    expect(count(store, 'SELECT count(*) AS n FROM track_batches')).toBe(4);
    expect(existsSync(closedPhoto)).toBe(true);

    const done = await retention.run({ now: NOW });
    expect(done.map((d) => [d.kind, d.count, d.bytes > 0])).toEqual([
      ['track', 2, true],
      ['diags', 1, true],
      ['footage', 1, true],
      ['evidence', 1, true],
    ]);
    // What stays: the recent track, the open alarm's follow-up; the new diag; the new footage; the open and the held alarm's photos.
    const trackLeft = (store.db.prepare('SELECT message_id, alarm_id FROM track_batches').all() as { message_id: string; alarm_id: string | null }[]);
    expect(trackLeft.map((t) => t.alarm_id ?? t.message_id).sort()).toEqual([open.id, recentTrack].sort());
    expect(trackLeft.some((t) => t.message_id === oldTrack)).toBe(false);
    expect(store.diags().map((d) => d.reason)).toEqual(['new']);
    expect([oldFootage, newFootage, closedPhoto, openPhoto, heldPhoto].map(existsSync)).toEqual([false, true, false, true, true]);
    expect(existsSync(`${closedPhoto}.sig.json`)).toBe(false);
    expect(count(store, 'SELECT count(*) AS n FROM evidence_files')).toBe(3);
    // The alarms themselves are kept (a line each), and the log says what went.
    expect(count(store, 'SELECT count(*) AS n FROM alarms')).toBe(3);
    const log = store.db.prepare('SELECT kind, count, oldest, newest FROM retention_log ORDER BY kind').all();
    expect(log).toEqual([
      { kind: 'diags', count: 1, oldest: ago(400), newest: ago(400) },
      { kind: 'evidence', count: 1, oldest: ago(1999), newest: ago(1999) },
      { kind: 'footage', count: 1, oldest: ago(100), newest: ago(100) },
      { kind: 'track', count: 2, oldest: ago(2000), newest: ago(100) },
    ]);
    // A second pass finds nothing and logs nothing more.
    expect((await retention.run({ now: NOW })).every((d) => d.count === 0)).toBe(true);
    expect(count(store, 'SELECT count(*) AS n FROM retention_log')).toBe(4);
  });

  it('a kind set to null is kept for ever; a day count below 1 is a config error', () => {
    expect(RetentionConfigSchema.parse({ trackDays: null }).trackDays).toBeNull();
    expect(RetentionConfigSchema.safeParse({ evidenceDays: 0 }).success).toBe(false);
    expect(RetentionConfigSchema.safeParse({ diagsDays: 'forever' }).success).toBe(false);
  });
});
