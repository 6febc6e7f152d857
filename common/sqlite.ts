// Opening the bus's SQLite file. WAL with synchronous=FULL: a commit is on
// disk (fsync'd WAL) before append() returns, so the LED may say "stored".
// NORMAL would be ~10× faster here but can lose the last commits on power
// loss (FIELD-NOTES), and the engine being switched off IS a power loss.

import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
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
  /** Open only a database that is there (a command that reads must never create an empty one and report it empty). */
  mustExist?: boolean;
}

export function openDatabase(file: string, opts: OpenOptions = {}): Db {
  if (!opts.mustExist) {
    mkdirSync(dirname(file), { recursive: true });
    // Alarms, positions and evidence records are nobody else's business: a new
    // database is made 0600 (SQLite gives its -wal and -shm the same mode).
    if (!existsSync(file)) closeSync(openSync(file, 'a', 0o600));
  }
  let db: Db;
  try {
    db = new Database(file, { fileMustExist: opts.mustExist === true });
  } catch (err) {
    throw new Error(`SQLite ${file}: cannot open (${(err as Error).message}); check the storage.dir folder exists and is writable`);
  }
  if (opts.pageSize) db.pragma(`page_size = ${opts.pageSize}`); // takes effect only before the first table
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  levelOf.set(db, 'FULL');
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

/**
 * How far a commit must reach before it returns. FULL: fsync'd (the WAL is on
 * flash); NORMAL: in the WAL, fsync'd at the next checkpoint (a process crash
 * loses nothing, a power cut may lose the last commits).
 */
export type Durability = 'FULL' | 'NORMAL';

/** The `synchronous` level each connection was last set to (a connection keeps it until changed). */
const levelOf = new WeakMap<Db, Durability>();
/** The level of the transaction a connection is inside, for writes nested in it. */
const openTx = new WeakMap<Db, Durability>();

/**
 * Run `fn` in one transaction committed at `level`. Every write to a database
 * shared by writes of different durability goes through here and names its
 * own level: `synchronous` is a setting of the connection, so a write that
 * relied on whatever the previous write left would be committed without an
 * fsync after a NORMAL one (a power cut then lost an acknowledgement the bus
 * had already reported to dispatch). A write nested in another's transaction
 * commits with it, so it may not ask for more than the outer one gives.
 */
export function writeTx<T>(db: Db, level: Durability, fn: () => T, begin: 'deferred' | 'immediate' = 'deferred'): T {
  const outer = openTx.get(db);
  if (outer !== undefined || db.inTransaction) {
    if (level === 'FULL' && outer !== 'FULL') {
      throw new Error(`SQLite ${db.name}: a FULL write nested in a ${outer ?? 'foreign'} transaction would commit without fsync; run it on its own`);
    }
    return fn();
  }
  if (levelOf.get(db) !== level) {
    // Cannot change inside a transaction, and takes effect for the next commit.
    db.pragma(`synchronous = ${level}`);
    levelOf.set(db, level);
  }
  openTx.set(db, level);
  try {
    // IMMEDIATE takes the write lock at BEGIN (writers sharing a file: none fails half-way on a busy lock).
    return begin === 'immediate' ? db.transaction(fn).immediate() : db.transaction(fn)();
  } finally {
    openTx.delete(db);
  }
}

/**
 * Run `fn` inside the transaction under way if there is one (it commits with
 * it, at its level: a batch that answers for its own durability, as
 * dispatch's bulk ingest does), else in a transaction of its own at `level`.
 * Never inherits whatever level the connection's previous write left.
 */
export function joinTx<T>(db: Db, level: Durability, fn: () => T, begin: 'deferred' | 'immediate' = 'deferred'): T {
  // Nested: a savepoint, so a failure undoes this part only and leaves the rest of the batch.
  if (openTx.get(db) !== undefined || db.inTransaction) return db.transaction(fn)();
  return writeTx(db, level, fn, begin);
}

/** The level the connection commits at now (for tests and diagnostics). */
export function currentDurability(db: Db): Durability {
  const v = db.pragma('synchronous', { simple: true }) as number;
  return v >= 2 ? 'FULL' : 'NORMAL';
}
