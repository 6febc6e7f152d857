// Where dispatch keeps the evidence files buses send (dispatch/file-receiver.ts
// takes them off MQTT): a row per file in evidence_files, the byte ranges
// held so far in evidence_ranges, the bytes in a partial file under
// {dir}/.partial/, and the verified file in {dir}/{fleet}/{vehicle}/. Every
// segment is on disk (fsync'd) before its range is recorded, so a crash in
// between costs a re-send, never a hole.

import { constants, existsSync } from 'node:fs';
import { mkdir, open, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { renameDurably } from '../common/durable-file.ts';
import { type Db, joinTx } from '../common/sqlite.ts';
import { type EvidenceKind, type InitPayload, type Range, hashFile } from '../protocol/file-transfer.ts';
import type { Fix, TimeSource } from '../protocol/messages.ts';
import type { VehicleRef } from '../protocol/topics.ts';

/**
 * Tables for dispatch's database: append as one more step of its migrate()
 * list (common/sqlite.ts), or migrate a database of their own with it.
 */
export const DISPATCH_FILES_SCHEMA = `
CREATE TABLE evidence_files (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  file_id TEXT NOT NULL,
  name TEXT NOT NULL,
  size INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  kind TEXT NOT NULL,
  alarm_id TEXT,
  captured_at TEXT NOT NULL,
  time_source TEXT NOT NULL,
  geotag TEXT,
  meta TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('receiving', 'complete')),
  attempt INTEGER NOT NULL,
  path TEXT,
  received_at TEXT NOT NULL,
  completed_at TEXT,
  PRIMARY KEY (fleet, vehicle, file_id)
);
CREATE INDEX evidence_files_alarm ON evidence_files (alarm_id);
CREATE TABLE evidence_ranges (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  file_id TEXT NOT NULL,
  start_byte INTEGER NOT NULL,
  end_byte INTEGER NOT NULL,
  PRIMARY KEY (fleet, vehicle, file_id, start_byte)
);
`;

export interface StoredFile {
  fleet: string;
  vehicle: string;
  fileId: string;
  name: string;
  size: number;
  sha256: string;
  kind: EvidenceKind;
  alarmId: string | null;
  capturedAt: string;
  timeSource: TimeSource;
  geotag: Fix | null;
  state: 'receiving' | 'complete';
  /** 1, and one more each time the file was discarded for a SHA-256 mismatch. */
  attempt: number;
  /** The verified file, once complete. */
  path: string | null;
  receivedAt: string;
  completedAt: string | null;
}

interface FileRow {
  fleet: string;
  vehicle: string;
  file_id: string;
  name: string;
  size: number;
  sha256: string;
  kind: EvidenceKind;
  alarm_id: string | null;
  captured_at: string;
  time_source: TimeSource;
  geotag: string | null;
  state: 'receiving' | 'complete';
  attempt: number;
  path: string | null;
  received_at: string;
  completed_at: string | null;
}

const toFile = (r: FileRow): StoredFile => ({
  fleet: r.fleet,
  vehicle: r.vehicle,
  fileId: r.file_id,
  name: r.name,
  size: r.size,
  sha256: r.sha256,
  kind: r.kind,
  alarmId: r.alarm_id,
  capturedAt: r.captured_at,
  timeSource: r.time_source,
  geotag: r.geotag ? (JSON.parse(r.geotag) as Fix) : null,
  state: r.state,
  attempt: r.attempt,
  path: r.path,
  receivedAt: r.received_at,
  completedAt: r.completed_at,
});

type Key = readonly [fleet: string, vehicle: string, fileId: string];
const keyOf = (ref: VehicleRef, fileId: string): Key => [ref.fleet, ref.vehicle, fileId];

/** What of a file dispatch has received, hashed, and where it lies. */
export interface Received {
  sha256: string;
  size: number;
  /** Already in its final place (a crash came between the rename and the database update). */
  inPlace: boolean;
}

export class EvidenceStore {
  private readonly q: ReturnType<typeof statements>;

  /** `dir`: the evidence folder (files.dir). */
  constructor(
    private readonly db: Db,
    private readonly dir: string,
  ) {
    const missing = ['evidence_files', 'evidence_ranges'].filter(
      (t) => !db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t),
    );
    if (missing.length) {
      throw new Error(`SQLite ${db.name}: no table ${missing.join(', ')}; add DISPATCH_FILES_SCHEMA (dispatch/files.ts) to the database's migrate() steps`);
    }
    this.q = statements(db);
  }

  get(ref: VehicleRef, fileId: string): StoredFile | null {
    const r = this.q.get.get(...keyOf(ref, fileId));
    return r ? toFile(r) : null;
  }

  list(ref?: VehicleRef): StoredFile[] {
    const rows = ref ? this.q.listVehicle.all(ref.fleet, ref.vehicle) : this.q.listAll.all();
    return rows.map(toFile);
  }

  /** Files still being received that were announced before `iso`. */
  unfinishedSince(iso: string): StoredFile[] {
    return this.q.unfinishedBefore.all(iso).map(toFile);
  }

  /** Forget a file still being received: its partial bytes and its rows (a later init starts it afresh). */
  async forget(ref: VehicleRef, fileId: string): Promise<void> {
    await rm(this.partialPath(ref, fileId), { force: true });
    const key = keyOf(ref, fileId);
    joinTx(this.db, 'FULL', () => {
      this.q.deleteRanges.run(...key);
      this.q.deleteReceiving.run(...key);
    });
  }

  /** The announced sizes of a vehicle's files still being received. */
  receivingBytes(ref: VehicleRef): number {
    return this.q.receivingBytes.get(ref.fleet, ref.vehicle)?.n ?? 0;
  }

  /** The announced sizes of a vehicle's files announced since `iso`, stored or not. */
  bytesSince(ref: VehicleRef, iso: string): number {
    return this.q.bytesSince.get(ref.fleet, ref.vehicle, iso)?.n ?? 0;
  }

  /** A vehicle's files of one of its alarms (another vehicle naming the same alarm id is not this alarm's evidence). */
  forAlarm(ref: VehicleRef, alarmId: string): StoredFile[] {
    return this.q.forAlarm.all(ref.fleet, ref.vehicle, alarmId).map(toFile);
  }

  /** Where the bytes of a file still being received are kept. */
  partialPath(ref: VehicleRef, fileId: string): string {
    return join(this.dir, '.partial', ref.fleet, ref.vehicle, `${fileId}.part`);
  }

  /**
   * Where a verified file is kept: a folder per file id, the bus's file name in it. ("{fileId}-{name}"
   * made "a-b" + "c.jpg" and "a" + "b-c.jpg" one path, the second overwriting verified evidence, and a
   * 64-character id with a 240-byte name one component over the 255 bytes a file name may have.)
   */
  private finalPath(ref: VehicleRef, fileId: string, name: string): string {
    return join(this.dir, ref.fleet, ref.vehicle, fileId, name);
  }

  /** Record a file announced by its init: receiving, attempt 1, nothing held. */
  announce(ref: VehicleRef, fileId: string, init: InitPayload): void {
    const meta = init.user_data;
    this.q.insert.run(
      ...keyOf(ref, fileId), init.name, init.size, init.checksum, meta.kind, meta.alarmId, meta.capturedAt, meta.timeSource,
      meta.geotag ? JSON.stringify(meta.geotag) : null, JSON.stringify(meta), new Date().toISOString(),
    );
  }

  /** The byte ranges held on disk, sorted. */
  ranges(ref: VehicleRef, fileId: string): Range[] {
    return this.rangesOf(keyOf(ref, fileId));
  }

  private rangesOf(key: Key): Range[] {
    return this.q.ranges.all(...key).map((r): Range => [r.start_byte, r.end_byte]);
  }

  /** Write a segment at its offset of the partial file (fsync'd), then record its range. */
  async putSegment(ref: VehicleRef, fileId: string, offset: number, payload: Buffer): Promise<void> {
    await writeAt(this.partialPath(ref, fileId), offset, payload);
    // The bytes are on disk (fsync'd) before the range says so: a crash in between costs a re-send, never a hole.
    this.addRange(keyOf(ref, fileId), [offset, offset + payload.length]);
  }

  /**
   * Merge a range into the file's held ranges in one write transaction (receivers sharing the database
   * cannot lose each other's ranges). Only the ranges it touches are read and replaced, each found by
   * the primary key's index: a file sent in a hostile 100,000 one-byte segments with gaps costs
   * O(log n) a segment, where reading and rewriting every range made it quadratic (290 ms a segment).
   */
  private addRange(key: Key, [start, end]: Range): void {
    joinTx(
      this.db,
      'FULL',
      () => {
        let s = start;
        let e = end;
        // Ranges are disjoint and do not touch: those meeting [start, end] are a run ending at the
        // last one starting at or before `end`; walk it back while they still reach `start`.
        for (let bound = end; ; ) {
          const r = this.q.lastStartingBy.get(...key, bound);
          if (!r || r.end_byte < start) break;
          s = Math.min(s, r.start_byte);
          e = Math.max(e, r.end_byte);
          this.q.deleteRange.run(...key, r.start_byte);
          bound = r.start_byte - 1;
        }
        this.q.insertRange.run(...key, s, e);
      },
      'immediate',
    );
  }

  /** Hash what was received of a file every byte of which is held (null: its bytes are gone from disk). */
  async received(ref: VehicleRef, file: StoredFile): Promise<Received | null> {
    const partial = this.partialPath(ref, file.fileId);
    const final = this.finalPath(ref, file.fileId, file.name);
    if (file.size === 0 && !existsSync(partial)) await writeAt(partial, 0, Buffer.alloc(0));
    // A crash between the rename and the database update leaves the file already in place.
    const source = existsSync(partial) ? partial : existsSync(final) ? final : null;
    if (!source) return null;
    return { ...(await hashFile(source)), inPlace: source === final };
  }

  /** Throw away what was received of a file (it failed its SHA-256): the next attempt starts from nothing. */
  async discard(ref: VehicleRef, fileId: string): Promise<void> {
    const key = keyOf(ref, fileId);
    await rm(this.partialPath(ref, fileId), { force: true });
    joinTx(this.db, 'FULL', () => {
      this.q.deleteRanges.run(...key);
      this.q.nextAttempt.run(...key);
    });
  }

  /**
   * Move a verified file into the evidence folder and record it complete.
   * Returns the stored file, or null when it already was (another receiver
   * sharing the database got there first).
   */
  async complete(ref: VehicleRef, file: StoredFile, sha256: string, inPlace: boolean): Promise<StoredFile | null> {
    const key = keyOf(ref, file.fileId);
    const final = this.finalPath(ref, file.fileId, file.name);
    if (!inPlace) {
      await mkdir(dirname(final), { recursive: true });
      await renameDurably(this.partialPath(ref, file.fileId), final);
    }
    let stored: StoredFile | null = null;
    joinTx(this.db, 'FULL', () => {
      if (this.q.complete.run(sha256, final, new Date().toISOString(), ...key).changes > 0) {
        this.q.deleteRanges.run(...key);
        stored = toFile(this.q.get.get(...key)!);
      }
    });
    return stored;
  }
}

function statements(db: Db) {
  const k = 'fleet = ? AND vehicle = ? AND file_id = ?';
  return {
    get: db.prepare<[string, string, string], FileRow>(`SELECT * FROM evidence_files WHERE ${k}`),
    insert: db.prepare(
      `INSERT INTO evidence_files (fleet, vehicle, file_id, name, size, sha256, kind, alarm_id, captured_at, time_source, geotag, meta, state, attempt, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'receiving', 1, ?)`,
    ),
    complete: db.prepare(`UPDATE evidence_files SET state = 'complete', sha256 = ?, path = ?, completed_at = ? WHERE ${k} AND state = 'receiving'`),
    nextAttempt: db.prepare(`UPDATE evidence_files SET attempt = attempt + 1, state = 'receiving', path = NULL, completed_at = NULL WHERE ${k}`),
    ranges: db.prepare<[string, string, string], { start_byte: number; end_byte: number }>(`SELECT start_byte, end_byte FROM evidence_ranges WHERE ${k} ORDER BY start_byte`),
    insertRange: db.prepare('INSERT INTO evidence_ranges (fleet, vehicle, file_id, start_byte, end_byte) VALUES (?, ?, ?, ?, ?)'),
    deleteRanges: db.prepare(`DELETE FROM evidence_ranges WHERE ${k}`),
    unfinishedBefore: db.prepare<[string], FileRow>("SELECT * FROM evidence_files WHERE state = 'receiving' AND received_at < ? ORDER BY received_at"),
    deleteReceiving: db.prepare(`DELETE FROM evidence_files WHERE ${k} AND state = 'receiving'`),
    receivingBytes: db.prepare<[string, string], { n: number | null }>("SELECT sum(size) AS n FROM evidence_files WHERE fleet = ? AND vehicle = ? AND state = 'receiving'"),
    bytesSince: db.prepare<[string, string, string], { n: number | null }>('SELECT sum(size) AS n FROM evidence_files WHERE fleet = ? AND vehicle = ? AND received_at >= ?'),
    lastStartingBy: db.prepare<[string, string, string, number], { start_byte: number; end_byte: number }>(
      `SELECT start_byte, end_byte FROM evidence_ranges WHERE ${k} AND start_byte <= ? ORDER BY start_byte DESC LIMIT 1`,
    ),
    deleteRange: db.prepare(`DELETE FROM evidence_ranges WHERE ${k} AND start_byte = ?`),
    listAll: db.prepare<[], FileRow>('SELECT * FROM evidence_files ORDER BY received_at, file_id'),
    listVehicle: db.prepare<[string, string], FileRow>('SELECT * FROM evidence_files WHERE fleet = ? AND vehicle = ? ORDER BY received_at, file_id'),
    forAlarm: db.prepare<[string, string, string], FileRow>('SELECT * FROM evidence_files WHERE fleet = ? AND vehicle = ? AND alarm_id = ? ORDER BY received_at, file_id'),
  };
}

/** Write bytes at an offset of a file (created with its folder if need be) and fsync them. */
async function writeAt(path: string, offset: number, data: Buffer): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const fh = await open(path, constants.O_RDWR | constants.O_CREAT, 0o640);
  try {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await fh.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
    await fh.datasync();
  } finally {
    await fh.close();
  }
}
