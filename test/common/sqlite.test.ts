// Every write names its durability (common/sqlite.ts writeTx): the
// connection's `synchronous` setting is whatever the write before left, so a
// write that did not set its own would inherit NORMAL from a track batch and
// commit without fsync. The end-to-end proof, with a real power cut, is
// test/integration/power-cut.test.ts.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Db, currentDurability, openDatabase, writeTx } from '../../common/sqlite.ts';
import { AlarmJournal, JOURNAL_REPEATS_SCHEMA, JOURNAL_SCHEMA } from '../../firmware/alarm-journal.ts';
import { OUTBOX_SCHEMA, Outbox, OutboxConfigSchema } from '../../gateway/outbox.ts';
import { migrate } from '../../common/sqlite.ts';

describe('writeTx: each write commits at the durability it names', () => {
  let dir: string;
  let db: Db;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'bg-sqlite-'));
    db = openDatabase(join(dir, 'x.db'));
    migrate(db, [OUTBOX_SCHEMA + JOURNAL_SCHEMA, JOURNAL_REPEATS_SCHEMA]);
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a FULL write after a NORMAL one commits with fsync; the connection follows each write', () => {
    const seen: string[] = [];
    writeTx(db, 'NORMAL', () => seen.push(currentDurability(db)));
    writeTx(db, 'FULL', () => seen.push(currentDurability(db)));
    writeTx(db, 'NORMAL', () => seen.push(currentDurability(db)));
    expect(seen).toEqual(['NORMAL', 'FULL', 'NORMAL']);
  });

  it('a FULL write nested in a NORMAL transaction is refused (it would commit without fsync); nested at its own level or lower it joins', () => {
    expect(() => writeTx(db, 'NORMAL', () => writeTx(db, 'FULL', () => 1))).toThrow(/would commit without fsync/);
    expect(writeTx(db, 'FULL', () => writeTx(db, 'NORMAL', () => 2))).toBe(2);
    expect(writeTx(db, 'FULL', () => writeTx(db, 'FULL', () => 3))).toBe(3);
  });

  it('the journal records delivery and acknowledgement with fsync whatever lane wrote last (track and diag write NORMAL)', () => {
    const outbox = new Outbox(db, OutboxConfigSchema.parse({}));
    const journal = new AlarmJournal(db);
    const levels: string[] = [];
    // Spy on the commit level: better-sqlite3 runs every statement of a transaction through prepare().run().
    const prepare = db.prepare.bind(db);
    (db as unknown as { prepare: typeof db.prepare }).prepare = ((sql: string) => {
      const stmt = prepare(sql);
      if (/^\s*(INSERT|UPDATE)\s.*alarms/i.test(sql)) {
        const run = stmt.run.bind(stmt);
        (stmt as unknown as { run: typeof stmt.run }).run = ((...args: unknown[]) => {
          levels.push(currentDurability(db));
          return run(...(args as []));
        }) as typeof stmt.run;
      }
      return stmt;
    }) as typeof db.prepare;
    outbox.write('alarm', () => {
      journal.insert({ id: 'a1', kind: 'emergency', raisedAt: new Date().toISOString() });
      outbox.append({ id: 'a1', lane: 'alarm', topic: 't', payload: Buffer.from('{}') });
    });
    for (const lane of ['track', 'diag'] as const) {
      outbox.write(lane, () => outbox.append({ id: `${lane}-1`, lane, topic: 't', payload: Buffer.from('{}') }));
      expect(currentDurability(db)).toBe('NORMAL');
    }
    journal.markDelivered(['a1'], new Date().toISOString());
    outbox.write('track', () => outbox.append({ id: 'track-2', lane: 'track', topic: 't', payload: Buffer.from('{}') }));
    expect(journal.markAcknowledged('a1', 'officer', new Date().toISOString())).toBe(true);
    // The insert, the delivery and the acknowledgement: every statement of each committed at FULL.
    expect(levels.length).toBeGreaterThanOrEqual(3);
    expect(new Set(levels)).toEqual(new Set(['FULL']));
  });
});
