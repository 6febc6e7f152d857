// The bus's queue of evidence files to send (gateway/file-upload.ts), behind
// a small store interface in the manner of mqtt.js's `Store`: the pump asks
// it to put, get, list and update files and never sees SQL. The one
// implementation is a table in the bus's SQLite database, where every write
// names its durability: what makes a file evidence (queued, delivered,
// failed, queued again) is fsync'd; progress is not, since losing it to a
// power cut only makes the bus ask dispatch again which ranges it holds.

import type { EvidenceKind, EvidenceMeta, Range } from '../protocol/file-transfer.ts';
import { type Db, writeTx } from '../common/sqlite.ts';

/**
 * The queue's table: append as one more step of the bus database's migrate()
 * list (common/sqlite.ts), after the outbox's.
 */
export const FILE_UPLOAD_SCHEMA = `
CREATE TABLE file_uploads (
  id TEXT PRIMARY KEY,
  path TEXT NOT NULL,
  name TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  mtime_ms INTEGER NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('snapshot', 'clip')),
  priority INTEGER NOT NULL,
  alarm_id TEXT,
  meta TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
  attempt INTEGER NOT NULL DEFAULT 0,
  restarts INTEGER NOT NULL DEFAULT 0,
  confirmed TEXT NOT NULL DEFAULT '[]',
  error TEXT,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL
);
CREATE INDEX file_uploads_queue ON file_uploads (state, priority, created_ms);
`;

export interface QueuedFile {
  id: string;
  path: string;
  name: string;
  size: number;
  sha256: string;
  kind: EvidenceKind;
  alarmId: string | null;
  meta: EvidenceMeta;
  state: 'pending' | 'delivered' | 'failed';
  /** Dispatch's attempt number last seen (bumped at dispatch by each SHA-256 failure). */
  attempt: number;
  /** Whole-file re-sends so far. */
  restarts: number;
  /** Byte ranges dispatch has confirmed holding. */
  confirmed: Range[];
  error: string | null;
  createdMs: number;
  updatedMs: number;
}

/** A queued file as the store keeps it: what callers see, and what only the pump needs. */
export interface UploadRecord extends QueuedFile {
  /** Modification time (whole ms) when last checked against the SHA-256: a file unchanged since needs no new hash. */
  mtimeMs: number;
  /** Send order: lower first (the lane order, snapshots before clips). */
  priority: number;
}

/** What put() takes: a new file, pending, nothing confirmed. */
export type NewUpload = Pick<UploadRecord, 'id' | 'path' | 'name' | 'size' | 'sha256' | 'mtimeMs' | 'kind' | 'priority' | 'alarmId' | 'meta' | 'createdMs'>;

/** How far a file has come: saved as receipts arrive. */
export type UploadProgress = Pick<UploadRecord, 'confirmed' | 'attempt' | 'restarts' | 'updatedMs'>;

/**
 * Where the queue lives. Every method commits before it returns; the order
 * of list() is the send order (priority, then oldest, then id).
 */
export interface UploadStore {
  /** Add a file, unless one with its id is queued already; returns what is stored under the id. Durable (the file is evidence from here on). */
  put(file: NewUpload): UploadRecord;
  get(id: string): UploadRecord | null;
  /** Every file, or those in one state, in send order. */
  list(state?: UploadRecord['state']): UploadRecord[];
  /** Save progress (need not be durable: lost, dispatch is asked again). */
  update(id: string, progress: UploadProgress): void;
  /** Record the modification time the file was last verified at (need not be durable). */
  setMtime(id: string, mtimeMs: number): void;
  /** Delivered or failed, with what is confirmed: durable before the bus deletes anything on the strength of it. */
  finish(id: string, state: 'delivered' | 'failed', error: string | null, confirmed: Range[], nowMs: number): UploadRecord | null;
  /** Put a failed file back to pending with its restarts reset (durable); false when there is no failed file with that id. */
  requeue(id: string, nowMs: number): boolean;
  /** Forget delivered files last updated before this time; returns how many. */
  prune(beforeMs: number): number;
}

interface Row {
  id: string;
  path: string;
  name: string;
  size: number;
  sha256: string;
  mtime_ms: number;
  kind: EvidenceKind;
  priority: number;
  alarm_id: string | null;
  meta: string;
  state: QueuedFile['state'];
  attempt: number;
  restarts: number;
  confirmed: string;
  error: string | null;
  created_ms: number;
  updated_ms: number;
}

const toRecord = (r: Row): UploadRecord => ({
  id: r.id,
  path: r.path,
  name: r.name,
  size: r.size,
  sha256: r.sha256,
  kind: r.kind,
  alarmId: r.alarm_id,
  meta: JSON.parse(r.meta) as EvidenceMeta,
  state: r.state,
  attempt: r.attempt,
  restarts: r.restarts,
  confirmed: JSON.parse(r.confirmed) as Range[],
  error: r.error,
  createdMs: r.created_ms,
  updatedMs: r.updated_ms,
  mtimeMs: r.mtime_ms,
  priority: r.priority,
});

/** What callers are shown of a record. */
export function toQueued(r: UploadRecord): QueuedFile {
  const { mtimeMs: _mtime, priority: _priority, ...file } = r;
  return file;
}

/** The queue in the table FILE_UPLOAD_SCHEMA makes, on the bus's database. */
export class SqliteUploadStore implements UploadStore {
  private readonly q;

  constructor(private readonly db: Db) {
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'file_uploads'").get()) {
      throw new Error(`SQLite ${db.name}: no table file_uploads; add FILE_UPLOAD_SCHEMA (gateway/file-upload.ts) to the database's migrate() steps`);
    }
    this.q = {
      insert: db.prepare(
        `INSERT OR IGNORE INTO file_uploads (id, path, name, size, sha256, mtime_ms, kind, priority, alarm_id, meta, created_ms, updated_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      get: db.prepare<[string], Row>('SELECT * FROM file_uploads WHERE id = ?'),
      inState: db.prepare<[string], Row>('SELECT * FROM file_uploads WHERE state = ? ORDER BY priority, created_ms, id'),
      list: db.prepare<[], Row>('SELECT * FROM file_uploads ORDER BY priority, created_ms, id'),
      progress: db.prepare('UPDATE file_uploads SET confirmed = ?, attempt = ?, restarts = ?, updated_ms = ? WHERE id = ?'),
      finish: db.prepare('UPDATE file_uploads SET state = ?, error = ?, confirmed = ?, updated_ms = ? WHERE id = ?'),
      mtime: db.prepare('UPDATE file_uploads SET mtime_ms = ? WHERE id = ?'),
      retry: db.prepare("UPDATE file_uploads SET state = 'pending', error = NULL, restarts = 0, updated_ms = ? WHERE id = ? AND state = 'failed'"),
      prune: db.prepare("DELETE FROM file_uploads WHERE state = 'delivered' AND updated_ms < ?"),
    };
  }

  put(f: NewUpload): UploadRecord {
    const meta = JSON.stringify(f.meta);
    // As durable as the evidence lanes: the file is evidence from here on.
    writeTx(this.db, 'FULL', () =>
      this.q.insert.run(f.id, f.path, f.name, f.size, f.sha256, f.mtimeMs, f.kind, f.priority, f.alarmId, meta, f.createdMs, f.createdMs),
    );
    return this.get(f.id)!;
  }

  get(id: string): UploadRecord | null {
    const r = this.q.get.get(id);
    return r ? toRecord(r) : null;
  }

  list(state?: UploadRecord['state']): UploadRecord[] {
    return (state === undefined ? this.q.list.all() : this.q.inState.all(state)).map(toRecord);
  }

  update(id: string, p: UploadProgress): void {
    writeTx(this.db, 'NORMAL', () => this.q.progress.run(JSON.stringify(p.confirmed), p.attempt, p.restarts, p.updatedMs, id));
  }

  setMtime(id: string, mtimeMs: number): void {
    writeTx(this.db, 'NORMAL', () => this.q.mtime.run(mtimeMs, id));
  }

  finish(id: string, state: 'delivered' | 'failed', error: string | null, confirmed: Range[], nowMs: number): UploadRecord | null {
    writeTx(this.db, 'FULL', () => this.q.finish.run(state, error, JSON.stringify(confirmed), nowMs, id));
    return this.get(id);
  }

  requeue(id: string, nowMs: number): boolean {
    return writeTx(this.db, 'FULL', () => this.q.retry.run(nowMs, id)).changes > 0;
  }

  prune(beforeMs: number): number {
    return writeTx(this.db, 'NORMAL', () => this.q.prune.run(beforeMs)).changes;
  }
}
