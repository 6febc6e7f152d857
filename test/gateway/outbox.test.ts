import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OUTBOX_SCHEMA, Outbox } from '../../gateway/outbox.ts';
import { type Db, migrate, openDatabase } from '../../protocol/sqlite.ts';

describe('outbox (real SQLite file)', () => {
  let dir: string;
  let db: Db;
  let outbox: Outbox;
  const open = () => {
    db = openDatabase(join(dir, 'outbox.db'));
    migrate(db, [OUTBOX_SCHEMA]);
    outbox = new Outbox(db);
  };
  const item = (lane: 'alarm' | 'incident' | 'position') => ({ id: randomUUID(), lane, topic: `t/${lane}`, payload: Buffer.from(lane) });

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'outbox-'));
    open();
  });
  afterEach(() => {
    if (db.open) db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('uses WAL with synchronous=FULL: a commit is on disk when append returns', () => {
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
  });

  it('hands out alarms before incidents before positions, each lane in order', () => {
    const p1 = item('position');
    const a1 = item('alarm');
    const i1 = item('incident');
    const a2 = item('alarm');
    for (const it of [p1, a1, i1, a2]) outbox.append(it);
    expect(outbox.due(Date.now(), 10).map((x) => x.id)).toEqual([a1.id, a2.id, i1.id, p1.id]);
  });

  it('keeps a sent message until confirmed, and offers it again after the resend interval', () => {
    const a = item('alarm');
    outbox.append(a);
    outbox.markSent([a.id], 1000);
    expect(outbox.due(999, 10)).toEqual([]);
    expect(outbox.due(1000, 10).map((x) => x.id)).toEqual([a.id]);
    expect(outbox.due(1000, 10)[0]!.attempts).toBe(1);
    expect(outbox.confirm([a.id, randomUUID()])).toEqual([a.id]);
    expect(outbox.size()).toBe(0);
  });

  it('survives closing and reopening the file (a restart), and a reconnect re-sends everything', () => {
    const a = item('alarm');
    outbox.append(a);
    outbox.markSent([a.id]);
    db.close();
    open();
    expect(outbox.size('alarm')).toBe(1);
    expect(outbox.due(0, 10)).toEqual([]);
    outbox.resetSent();
    expect(outbox.due(0, 10).map((x) => x.id)).toEqual([a.id]);
  });

  it('refuses the same message id twice (an alarm is stored once)', () => {
    const a = item('alarm');
    outbox.append(a);
    expect(() => outbox.append(a)).toThrow(/UNIQUE/);
  });
});
