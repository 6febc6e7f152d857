// Dispatch's end of the evidence file transfer (protocol/file-transfer.ts):
// takes init / segment / fin from every vehicle's .../up/file/ topics, writes
// each segment at its offset into a partial file (fsync'd) and records the
// byte range in SQLite, verifies the whole file's SHA-256 at fin, moves it
// into the evidence folder and records it with its vehicle, alarm, kind and
// geotag. After each step the bus gets a receipt (down/file) saying what is
// held, so after a cut or a crash on either side only what is missing goes
// again. A file whose SHA-256 fails is discarded and asked for again whole.
//
// Every message of one file is handled in arrival order on its own promise
// chain; files of different vehicles go side by side. Nothing a bus sends
// can crash this: every topic and payload is checked, and what fails is
// logged with the reason (and answered, when the bus can act on it).

import { EventEmitter } from 'node:events';
import { constants, existsSync } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { fsyncDir } from '../common/durable-file.ts';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  EMQX_DEFAULT_MAX_PACKET_BYTES,
  type EvidenceKind,
  type FileCommand,
  type FileReceipt,
  type FileReceiptState,
  InitPayloadSchema,
  type Range,
  containsRange,
  coversAll,
  dispatchFileFilter,
  fileReceiptTopic,
  hashFile,
  normalizeRanges,
  parseFileTopic,
  sha256Hex,
  unionRanges,
} from '../protocol/file-transfer.ts';
import { type Fix, type TimeSource, decode, encode } from '../protocol/messages.ts';
import type { MqttSession } from '../common/mqtt-session.ts';
import type { Db } from '../common/sqlite.ts';
import { type VehicleRef, sharedFilter } from '../protocol/topics.ts';

export const FilesConfigSchema = z
  .object({
    /** Evidence folder: verified files go to {dir}/{fleet}/{vehicle}/, partial ones to {dir}/.partial/. */
    dir: z.string().min(1),
    /** Larger files are refused at init. */
    maxFileBytes: z.number().int().min(1).default(2 * 1024 ** 3),
    /** Larger segments are refused (the bus's files.segmentBytes must be at most this). */
    maxSegmentBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(EMQX_DEFAULT_MAX_PACKET_BYTES),
  })
  .strict();
export type FilesConfig = z.output<typeof FilesConfigSchema>;

/**
 * Tables for dispatch's database: append as one more step of its migrate()
 * list (protocol/sqlite.ts), or migrate a database of their own with it.
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

export interface FileReceiverEvents {
  /** A file verified against its SHA-256 and stored: once per file, however often the bus sends it. */
  stored: [file: StoredFile];
  /** A message refused, and why. */
  rejected: [topic: string, reason: string];
  receiptSent: [ref: VehicleRef, receipt: FileReceipt];
  /** attach(): the broker granted the file topics (after each connect). */
  ready: [];
}

export interface FileReceiverOptions {
  db: Db;
  config: FilesConfig;
  log: Logger;
  /** Publish (QoS 1) one receipt; the receiver's MQTT session does it. */
  publish: (topic: string, payload: Buffer) => void;
}

/** The more decisive answer wins when several are due for one file in the same tick. */
const RECEIPT_RANK: Record<FileReceiptState, number> = { receiving: 0, unknown: 1, incomplete: 2, complete: 3, corrupt: 4, rejected: 5 };

interface PendingReceipt {
  ref: VehicleRef;
  fileId: string;
  state: FileReceiptState;
  resend: Range[];
  reason?: string;
  init: boolean;
}

type Key = readonly [fleet: string, vehicle: string, fileId: string];

export class FileReceiver extends EventEmitter<FileReceiverEvents> {
  private readonly chains = new Map<string, Promise<void>>();
  private readonly pending = new Map<string, PendingReceipt>();
  private flushScheduled = false;
  private readonly q: ReturnType<typeof statements>;

  constructor(private readonly o: FileReceiverOptions) {
    super();
    const missing = ['evidence_files', 'evidence_ranges'].filter(
      (t) => !o.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t),
    );
    if (missing.length) {
      throw new Error(`SQLite ${o.db.name}: no table ${missing.join(', ')}; add DISPATCH_FILES_SCHEMA (dispatch/files.ts) to the database's migrate() steps`);
    }
    this.q = statements(o.db);
  }

  /**
   * For a session of its own (tests, a separate process): subscribe to every
   * vehicle's file topics on each connect and take their messages.
   */
  attach(session: MqttSession, sharedGroup: string | null): void {
    const subscribe = () =>
      session.subscribeChecked(sharedFilter(sharedGroup, dispatchFileFilter()), 'the file topics; check the broker ACL for user "dispatch"', () => {
        this.emit('ready');
      });
    session.on('connected', subscribe);
    if (session.connected) subscribe();
    session.on('message', (topic, payload) => this.handle(topic, payload));
  }

  /**
   * Take one message. Returns false when the topic is not a file topic (the
   * caller's business); true when it was taken (processed, or refused with a
   * log line). Processing goes on asynchronously, in order per file.
   */
  handle(topic: string, payload: Buffer): boolean {
    const t = parseFileTopic(topic);
    if (!t) return false;
    if (!t.ok) {
      this.reject(topic, t.error);
      return true;
    }
    const ref = t.ref;
    if (!ref) {
      this.reject(topic, '"$file" topics name no vehicle: this dispatch takes files on busguard/v1/{fleet}/{vehicle}/up/file/ only (set files.prefix "vehicle" on the bus)');
      return true;
    }
    const key = `${ref.fleet}/${ref.vehicle}/${t.fileId}`;
    const run = (this.chains.get(key) ?? Promise.resolve())
      .then(() => this.process(ref, t.fileId, t.command, topic, payload))
      .catch((err: Error) => {
        // A disk or database error: no receipt for this message, so the bus sends it again.
        this.o.log.error({ event: 'file.store-failed', topic, fleet: ref.fleet, vehicle: ref.vehicle, fileId: t.fileId, err: err.message }, 'could not store a file message; the bus will send it again');
      });
    this.chains.set(key, run);
    void run.then(() => {
      if (this.chains.get(key) === run) this.chains.delete(key);
    });
    return true;
  }

  /** Resolves once every message taken so far is processed and its receipt published. */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
    this.flushReceipts();
  }

  get(ref: VehicleRef, fileId: string): StoredFile | null {
    const r = this.q.get.get(ref.fleet, ref.vehicle, fileId);
    return r ? toFile(r) : null;
  }

  list(ref?: VehicleRef): StoredFile[] {
    const rows = ref ? this.q.listVehicle.all(ref.fleet, ref.vehicle) : this.q.listAll.all();
    return rows.map(toFile);
  }

  forAlarm(alarmId: string): StoredFile[] {
    return this.q.forAlarm.all(alarmId).map(toFile);
  }

  /** Where the bytes of a file still being received are kept. */
  partialPath(ref: VehicleRef, fileId: string): string {
    return join(this.o.config.dir, '.partial', ref.fleet, ref.vehicle, `${fileId}.part`);
  }

  private finalPath(ref: VehicleRef, fileId: string, name: string): string {
    return join(this.o.config.dir, ref.fleet, ref.vehicle, `${fileId}-${name}`);
  }

  private reject(topic: string, reason: string, ids: Record<string, unknown> = {}): void {
    this.o.log.warn({ event: 'file.rejected', topic, reason, ...ids }, 'file transfer message refused');
    this.emit('rejected', topic, reason);
  }

  private async process(ref: VehicleRef, fileId: string, cmd: FileCommand, topic: string, payload: Buffer): Promise<void> {
    switch (cmd.type) {
      case 'init':
        return this.onInit(ref, fileId, topic, payload);
      case 'segment':
        return this.onSegment(ref, fileId, cmd.offset, cmd.checksum, topic, payload);
      case 'fin':
        return this.onFin(ref, fileId, cmd.size, cmd.checksum, topic, payload);
    }
  }

  private onInit(ref: VehicleRef, fileId: string, topic: string, payload: Buffer): void {
    const ids = { fleet: ref.fleet, vehicle: ref.vehicle, fileId };
    const m = decode(InitPayloadSchema, payload);
    if (!m.ok) {
      this.reject(topic, `init: ${m.error}`, ids);
      this.queueReceipt(ref, fileId, 'rejected', { reason: `init refused: ${m.error}` });
      return;
    }
    const init = m.value;
    const meta = init.user_data;
    if (meta.fleet !== ref.fleet || meta.vehicle !== ref.vehicle) {
      const reason = `init names ${meta.fleet}/${meta.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`;
      this.reject(topic, reason, ids);
      this.queueReceipt(ref, fileId, 'rejected', { reason });
      return;
    }
    if (init.size > this.o.config.maxFileBytes) {
      const reason = `file of ${init.size} bytes is larger than files.maxFileBytes ${this.o.config.maxFileBytes}`;
      this.reject(topic, reason, ids);
      this.queueReceipt(ref, fileId, 'rejected', { reason });
      return;
    }
    const key: Key = [ref.fleet, ref.vehicle, fileId];
    const row = this.q.get.get(...key);
    if (!row) {
      const now = new Date().toISOString();
      this.q.insert.run(
        ...key, init.name, init.size, init.checksum, meta.kind, meta.alarmId, meta.capturedAt, meta.timeSource,
        meta.geotag ? JSON.stringify(meta.geotag) : null, JSON.stringify(meta), now,
      );
      this.o.log.info(
        { event: 'file.init', ...ids, fileName: init.name, size: init.size, kind: meta.kind, alarmId: meta.alarmId },
        `${meta.kind} ${init.name} (${init.size} bytes) announced`,
      );
      this.queueReceipt(ref, fileId, 'receiving', { init: true });
      return;
    }
    if (row.name !== init.name || row.size !== init.size || row.sha256 !== init.checksum) {
      const reason = `file id ${fileId} already names ${row.name} (${row.size} bytes, sha256 ${row.sha256}); got ${init.name} (${init.size} bytes, sha256 ${init.checksum}): a file id names one file`;
      this.reject(topic, reason, ids);
      this.queueReceipt(ref, fileId, 'rejected', { reason });
      return;
    }
    // The bus announces again after every reconnect or restart: answer with what we hold.
    this.o.log.debug({ event: 'file.init-again', ...ids, state: row.state }, 'init for a file already known');
    this.queueReceipt(ref, fileId, row.state === 'complete' ? 'complete' : 'receiving', { init: true });
  }

  private async onSegment(ref: VehicleRef, fileId: string, offset: number, checksum: string | null, topic: string, payload: Buffer): Promise<void> {
    const ids = { fleet: ref.fleet, vehicle: ref.vehicle, fileId, offset };
    const key: Key = [ref.fleet, ref.vehicle, fileId];
    const row = this.q.get.get(...key);
    if (!row) {
      this.reject(topic, `segment for unknown file ${fileId} (no init received); asking the bus to announce it again`, ids);
      this.queueReceipt(ref, fileId, 'unknown');
      return;
    }
    if (row.state === 'complete') {
      this.o.log.debug({ event: 'file.duplicate', ...ids }, 'segment of a file already stored');
      this.queueReceipt(ref, fileId, 'complete');
      return;
    }
    const len = payload.length;
    const range: Range = [offset, offset + len];
    if (len === 0) return this.reject(topic, 'empty segment', ids);
    if (len > this.o.config.maxSegmentBytes) {
      const reason = `segment of ${len} bytes is larger than files.maxSegmentBytes ${this.o.config.maxSegmentBytes}; lower the bus's files.segmentBytes`;
      this.reject(topic, reason, ids);
      this.queueReceipt(ref, fileId, 'rejected', { reason });
      return;
    }
    if (offset + len > row.size) {
      const reason = `segment [${offset}, ${offset + len}) runs past the file's ${row.size} bytes`;
      this.reject(topic, reason, ids);
      this.queueReceipt(ref, fileId, 'rejected', { reason });
      return;
    }
    if (checksum !== null) {
      const actual = sha256Hex(payload);
      if (actual !== checksum) {
        this.reject(topic, `segment [${offset}, ${offset + len}) fails its SHA-256 (topic says ${checksum}, bytes give ${actual}): corrupted on the way; asked for again`, ids);
        this.queueReceipt(ref, fileId, 'receiving', { resend: range });
        return;
      }
    }
    const have = this.ranges(key);
    if (containsRange(have, range)) {
      // Sent again after a lost receipt: already on disk, written once.
      this.o.log.debug({ event: 'file.duplicate', ...ids }, 'segment already held');
      this.queueReceipt(ref, fileId, 'receiving');
      return;
    }
    await writeAt(this.partialPath(ref, fileId), offset, payload);
    // The bytes are on disk (fsync'd) before the range says so: a crash in between costs a re-send, never a hole.
    this.addRange(key, range);
    this.o.log.debug({ event: 'file.segment', ...ids, bytes: len }, 'segment stored');
    this.queueReceipt(ref, fileId, 'receiving');
  }

  private async onFin(ref: VehicleRef, fileId: string, size: number, checksum: string | null, topic: string, payload: Buffer): Promise<void> {
    const ids = { fleet: ref.fleet, vehicle: ref.vehicle, fileId };
    const key: Key = [ref.fleet, ref.vehicle, fileId];
    if (payload.length > 0) return this.reject(topic, `fin carries no payload (got ${payload.length} bytes)`, ids);
    const row = this.q.get.get(...key);
    if (!row) {
      this.reject(topic, `fin for unknown file ${fileId} (no init received); asking the bus to announce it again`, ids);
      this.queueReceipt(ref, fileId, 'unknown');
      return;
    }
    if (row.state === 'complete') {
      this.o.log.info({ event: 'file.duplicate', ...ids, path: row.path }, 'fin for a file already stored; confirmed again');
      this.queueReceipt(ref, fileId, 'complete');
      return;
    }
    if (size !== row.size) {
      const reason = `fin says ${size} bytes, init said ${row.size}`;
      this.reject(topic, reason, ids);
      this.queueReceipt(ref, fileId, 'rejected', { reason });
      return;
    }
    const have = this.ranges(key);
    if (!coversAll(have, row.size)) {
      this.o.log.info({ event: 'file.incomplete', ...ids, have }, 'fin before every segment arrived; asking for the missing ranges');
      this.queueReceipt(ref, fileId, 'incomplete');
      return;
    }
    // EMQX's rule: a checksum on fin takes precedence over the one in init.
    const expected = checksum ?? row.sha256;
    const partial = this.partialPath(ref, fileId);
    const final = this.finalPath(ref, fileId, row.name);
    if (row.size === 0 && !existsSync(partial)) await writeAt(partial, 0, Buffer.alloc(0));
    // A crash between the rename and the database update leaves the file already in place.
    const source = existsSync(partial) ? partial : existsSync(final) ? final : null;
    const actual = source ? await hashFile(source) : null;
    if (!actual || actual.sha256 !== expected || actual.size !== row.size) {
      const reason = actual
        ? `SHA-256 mismatch: expected ${expected}, the ${actual.size} bytes received give ${actual.sha256}; discarded, send the whole file again`
        : 'the partial file is gone from dispatch\'s disk; send the whole file again';
      this.o.log.error({ event: 'file.checksum-mismatch', ...ids, fileName: row.name, expected, got: actual?.sha256 ?? null, attempt: row.attempt }, reason);
      await rm(partial, { force: true });
      this.o.db.transaction(() => {
        this.q.deleteRanges.run(...key);
        this.q.nextAttempt.run(...key);
      })();
      this.queueReceipt(ref, fileId, 'corrupt', { reason });
      return;
    }
    if (source === partial) {
      await mkdir(dirname(final), { recursive: true });
      await rename(partial, final);
      await fsyncDir(dirname(final));
    }
    let stored: StoredFile | null = null;
    this.o.db.transaction(() => {
      if (this.q.complete.run(expected, final, new Date().toISOString(), ...key).changes > 0) {
        this.q.deleteRanges.run(...key);
        stored = toFile(this.q.get.get(...key)!);
      }
    })();
    if (stored) {
      const s = stored as StoredFile;
      this.o.log.info(
        { event: 'file.stored', ...ids, kind: s.kind, alarmId: s.alarmId, fileName: s.name, size: s.size, sha256: s.sha256, path: s.path, geotag: s.geotag, attempt: s.attempt },
        `${s.kind} from ${ref.fleet}/${ref.vehicle} verified and stored`,
      );
      this.emit('stored', s);
    }
    this.queueReceipt(ref, fileId, 'complete');
  }

  private ranges(key: Key): Range[] {
    return this.q.ranges.all(...key).map((r): Range => [r.start_byte, r.end_byte]);
  }

  /** Read, merge and write back in one write transaction: receivers sharing the database cannot lose each other's ranges. */
  private addRange(key: Key, range: Range): void {
    this.o.db
      .transaction(() => {
        const merged = unionRanges(this.ranges(key), [range]);
        this.q.deleteRanges.run(...key);
        for (const [s, e] of merged) this.q.insertRange.run(...key, s, e);
      })
      .immediate();
  }

  /** Answer about a file, gathered within one tick: a burst of segments costs one receipt. */
  private queueReceipt(ref: VehicleRef, fileId: string, state: FileReceiptState, extra: { reason?: string; resend?: Range; init?: true } = {}): void {
    const key = `${ref.fleet}/${ref.vehicle}/${fileId}`;
    let p = this.pending.get(key);
    if (!p) {
      p = { ref, fileId, state, resend: [], init: false };
      this.pending.set(key, p);
    }
    if (RECEIPT_RANK[state] >= RECEIPT_RANK[p.state]) {
      p.state = state;
      if (extra.reason) p.reason = extra.reason;
    }
    if (extra.resend) p.resend.push(extra.resend);
    if (extra.init) p.init = true;
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flushReceipts());
  }

  private flushReceipts(): void {
    this.flushScheduled = false;
    const batch = [...this.pending.values()];
    this.pending.clear();
    for (const p of batch) {
      const key: Key = [p.ref.fleet, p.ref.vehicle, p.fileId];
      const row = this.q.get.get(...key);
      const have: Range[] = !row ? [] : row.state === 'complete' ? (row.size > 0 ? [[0, row.size]] : []) : this.ranges(key);
      const receipt: FileReceipt = {
        v: 1,
        fileId: p.fileId,
        state: p.state,
        attempt: row?.attempt ?? 0,
        have: have.slice(0, 4096),
        ...(p.resend.length ? { resend: normalizeRanges(p.resend).slice(0, 4096) } : {}),
        ...(p.reason ? { reason: p.reason.slice(0, 500) } : {}),
        ...(p.init ? { init: true as const } : {}),
      };
      this.o.publish(fileReceiptTopic(p.ref), encode(receipt));
      this.o.log.debug({ event: 'file.receipt-sent', fleet: p.ref.fleet, vehicle: p.ref.vehicle, ...receipt }, 'file receipt sent');
      this.emit('receiptSent', p.ref, receipt);
    }
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
    listAll: db.prepare<[], FileRow>('SELECT * FROM evidence_files ORDER BY received_at, file_id'),
    listVehicle: db.prepare<[string, string], FileRow>('SELECT * FROM evidence_files WHERE fleet = ? AND vehicle = ? ORDER BY received_at, file_id'),
    forAlarm: db.prepare<[string], FileRow>('SELECT * FROM evidence_files WHERE alarm_id = ? ORDER BY received_at, file_id'),
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

