// The bus's alarm journal on a real SQLite file: each alarm's journey, and a
// press repeated while it is open (its own journey, stored then delivered).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Db, migrate, openDatabase } from '../../common/sqlite.ts';
import { AlarmJournal, JOURNAL_REPEATS_SCHEMA, JOURNAL_SCHEMA } from '../../firmware/alarm-journal.ts';

describe('alarm journal', () => {
  let dir: string;
  let db: Db;
  let j: AlarmJournal;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bg-journal-'));
    db = openDatabase(join(dir, 'j.db'));
    migrate(db, [JOURNAL_SCHEMA, JOURNAL_REPEATS_SCHEMA]);
    j = new AlarmJournal(db);
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stored → delivered → acknowledged; an acknowledged alarm is no longer open, and a re-sent ack changes nothing', () => {
    j.insert({ id: 'a1', kind: 'emergency', raisedAt: '2026-11-22T10:00:00.000Z' });
    expect(j.open('emergency').map((a) => a.id)).toEqual(['a1']);
    expect(j.markDelivered(['a1', 'unknown'], '2026-11-22T10:00:01.000Z')).toEqual(['a1']);
    expect(j.markDelivered(['a1'], '2026-11-22T10:00:02.000Z')).toEqual([]);
    expect(j.markAcknowledged('a1', 'officer-7', '2026-11-22T10:01:00.000Z')).toBe(true);
    expect(j.markAcknowledged('a1', 'officer-8', '2026-11-22T10:02:00.000Z')).toBe(false);
    expect(j.open()).toEqual([]);
    expect(j.lastAcknowledged('emergency')).toMatchObject({ id: 'a1', acknowledgedBy: 'officer-7', deliveredAt: '2026-11-22T10:00:01.000Z' });
    expect(j.lastAcknowledged('incident')).toBeNull();
  });

  it('a repeat counts the press and shows stored until dispatch has the repeat; an alarm not yet delivered stays stored until it is', () => {
    j.insert({ id: 'a1', kind: 'emergency', raisedAt: '2026-11-22T10:00:00.000Z' });
    j.markDelivered(['a1'], '2026-11-22T10:00:01.000Z');
    expect(j.repeat('a1', 'r1')).toBe(2);
    expect(j.get('a1')).toMatchObject({ state: 'stored', presses: 2 });
    expect(j.markDelivered(['r1'], '2026-11-22T10:00:06.000Z')).toEqual(['a1']);
    expect(j.get('a1')?.state).toBe('delivered');
    // Offline: the alarm and its repeat both wait; the alarm's receipt alone does not say the repeat arrived.
    j.insert({ id: 'b1', kind: 'incident', raisedAt: '2026-11-22T11:00:00.000Z' });
    expect(j.repeat('b1', 'r2')).toBe(2);
    expect(j.markDelivered(['b1'], '2026-11-22T11:00:05.000Z')).toEqual([]);
    expect(j.get('b1')?.state).toBe('stored');
    expect(j.markDelivered(['r2'], '2026-11-22T11:00:06.000Z')).toEqual(['b1']);
    // An acknowledged alarm cannot be repeated.
    j.markAcknowledged('a1', 'officer-7', '2026-11-22T10:02:00.000Z');
    expect(() => j.repeat('a1', 'r3')).toThrow(/not open/);
  });
});
