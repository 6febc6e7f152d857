// Opening the bus's SQLite file. WAL with synchronous=FULL: a commit is on
// disk (fsync'd WAL) before append() returns, so the LED may say "stored".
// NORMAL would be ~10× faster here but can lose the last commits on power
// loss (FIELD-NOTES), and the engine being switched off IS a power loss.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';

export type Db = Database.Database;

export interface OpenOptions {
  /**
   * Page size for a new database (ignored for an existing one). WAL writes
   * whole pages per commit, so small pages mean fewer bytes written per small
   * commit: the bus uses 1024 to spare its flash.
   */
  pageSize?: 1024 | 2048 | 4096;
}

export function openDatabase(file: string, opts: OpenOptions = {}): Db {
  mkdirSync(dirname(file), { recursive: true });
  let db: Db;
  try {
    db = new Database(file);
  } catch (err) {
    throw new Error(`SQLite ${file}: cannot open (${(err as Error).message}); check the storage.dir folder exists and is writable`);
  }
  if (opts.pageSize) db.pragma(`page_size = ${opts.pageSize}`); // takes effect only before the first table
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  // Another process (the dispatch CLI, a second receiver) may hold the lock briefly.
  db.pragma('busy_timeout = 5000');
  return db;
}

/** Apply numbered schema steps once each, tracked with PRAGMA user_version. */
export function migrate(db: Db, steps: readonly string[]): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  if (current > steps.length) {
    throw new Error(`SQLite ${db.name}: schema version ${current} is newer than this software knows (${steps.length}); refusing to touch it`);
  }
  for (let v = current; v < steps.length; v++) {
    db.transaction(() => {
      db.exec(steps[v]!);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
