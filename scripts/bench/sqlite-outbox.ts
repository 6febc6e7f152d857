// sqlite-outbox: better-sqlite3 against sqlite3 (node-sqlite3) on the
// outbox's own workload, same file system, same pragmas (WAL,
// synchronous=FULL): per alarm one transaction of journal row + outbox row
// (what must be on disk before the LED says "stored"), then the "sent" mark,
// then the confirming delete. Reported: append latency p50/p99 and whole
// alarm cycles per second.

import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { percentile, round } from './stats.ts';

const N = Number(process.env.BENCH_SQLITE_N ?? 2000);
const SCHEMA = `
CREATE TABLE alarms (id TEXT PRIMARY KEY, kind TEXT NOT NULL, raised_at TEXT NOT NULL, state TEXT NOT NULL);
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, lane TEXT NOT NULL, priority INTEGER NOT NULL,
  topic TEXT NOT NULL, payload BLOB NOT NULL, created_ms INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, last_sent_ms INTEGER);
`;
const payload = Buffer.alloc(600, 'a');

function better(dir: string) {
  const db = new Database(join(dir, 'better.db'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec(SCHEMA);
  const ins1 = db.prepare("INSERT INTO alarms VALUES (?, 'emergency', ?, 'stored')");
  const ins2 = db.prepare("INSERT INTO outbox (id, lane, priority, topic, payload, created_ms) VALUES (?, 'alarm', 0, 't', ?, ?)");
  const sent = db.prepare('UPDATE outbox SET attempts = attempts + 1, last_sent_ms = ? WHERE id = ?');
  const del = db.prepare('DELETE FROM outbox WHERE id = ?');
  const append = db.transaction((id: string) => {
    ins1.run(id, new Date().toISOString());
    ins2.run(id, payload, Date.now());
  });
  const append_ms: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const id = randomUUID();
    const a = performance.now();
    append(id);
    append_ms.push(performance.now() - a);
    sent.run(Date.now(), id);
    del.run(id);
  }
  const seconds = (performance.now() - t0) / 1000;
  db.close();
  return { append_ms, cycles_per_s: N / seconds };
}

async function sqlite3(dir: string) {
  const require = createRequire(import.meta.url);
  const sqlite = require('sqlite3') as typeof import('sqlite3');
  const db = new sqlite.Database(join(dir, 'sqlite3.db'));
  const run = (sql: string, params: unknown[] = []) =>
    new Promise<void>((resolve, reject) => db.run(sql, params, (err) => (err ? reject(err) : resolve())));
  const exec = (sql: string) => new Promise<void>((resolve, reject) => db.exec(sql, (err) => (err ? reject(err) : resolve())));
  await exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;');
  await exec(SCHEMA);
  const append_ms: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const id = randomUUID();
    const a = performance.now();
    await run('BEGIN');
    await run("INSERT INTO alarms VALUES (?, 'emergency', ?, 'stored')", [id, new Date().toISOString()]);
    await run("INSERT INTO outbox (id, lane, priority, topic, payload, created_ms) VALUES (?, 'alarm', 0, 't', ?, ?)", [id, payload, Date.now()]);
    await run('COMMIT');
    append_ms.push(performance.now() - a);
    await run('UPDATE outbox SET attempts = attempts + 1, last_sent_ms = ? WHERE id = ?', [Date.now(), id]);
    await run('DELETE FROM outbox WHERE id = ?', [id]);
  }
  const seconds = (performance.now() - t0) / 1000;
  await new Promise<void>((resolve) => db.close(() => resolve()));
  return { append_ms, cycles_per_s: N / seconds };
}

export async function run(): Promise<Record<string, unknown>> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-sqlite-'));
  try {
    process.stderr.write(`sqlite-outbox: ${N} alarm cycles each (append+fsync, mark sent, confirm)\n`);
    const b = better(dir);
    const s = await sqlite3(dir);
    return {
      bench: 'sqlite-outbox',
      cycles: N,
      better_sqlite3_append_p50_ms: round(percentile(b.append_ms, 50), 3),
      better_sqlite3_append_p99_ms: round(percentile(b.append_ms, 99), 3),
      better_sqlite3_cycles_per_s: round(b.cycles_per_s, 0),
      sqlite3_append_p50_ms: round(percentile(s.append_ms, 50), 3),
      sqlite3_append_p99_ms: round(percentile(s.append_ms, 99), 3),
      sqlite3_cycles_per_s: round(s.cycles_per_s, 0),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
