// The bus's end of the evidence file transfer (protocol/file-transfer.ts): a
// durable queue of files to send (SQLite), each sent as init, segments at
// byte offsets and fin, in EMQX's framing. What dispatch holds comes back in
// its receipts (down/file) as byte ranges, and is committed here as it
// arrives, so after a cut, a reconnect or a restart only what dispatch does
// not hold goes again. Before segments, the bus announces the file (init) and
// waits for dispatch's answer, which says what it already has: segments
// whose receipts were lost in a cut are not sent twice.
//
// Order: snapshots before clips (their lane order), oldest first; a file
// starts only when every segment of the one before is out. A window bounds
// the segments out and not yet receipted (in count and bytes), so at most
// that much file data sits in the socket in front of an alarm published
// now; `yieldTo` lets the agent stop new segments while an alarm waits.
//
// With prefix "$file" the commands go to EMQX's own file transfer: no
// dispatch receipts come, and the PUBACK reason codes of EMQX's synchronous
// mode are the confirmation instead (0x00 held, 0x80 segment again / file
// again after fin, 0x83 cancel, 0x97 pause, 0x10 file again).

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  type EvidenceKind,
  type EvidenceMeta,
  FILE_PREFIXES,
  type FileReceipt,
  FileReceiptSchema,
  type InitPayload,
  InitPayloadSchema,
  type Range,
  SHIPPED_MOSQUITTO_LIMIT_BYTES,
  coversAll,
  fileReceiptTopic,
  finTopic,
  hashFile,
  initTopic,
  missingRanges,
  normalizeRanges,
  segmentSizeProblem,
  segmentTopic,
  sha256Hex,
  unionRanges,
  containsRange,
} from '../protocol/file-transfer.ts';
import { LANES } from '../protocol/lanes.ts';
import { type Fix, type TimeSource, decode, encode, formatIssues } from '../protocol/messages.ts';
import type { MqttSession } from '../common/mqtt-session.ts';
import { type Db, writeTx } from '../common/sqlite.ts';
import type { VehicleRef } from '../protocol/topics.ts';

export const FileUploadConfigSchema = z
  .object({
    /** "vehicle": busguard/v1/{fleet}/{vehicle}/up/file/... to our dispatch; "$file": EMQX's own file transfer. */
    prefix: z.enum(FILE_PREFIXES).default('vehicle'),
    /**
     * Bytes per segment. Small enough that a segment ahead of an alarm in the
     * socket costs little time on a slow 4G uplink (64 KiB ≈ 1 s at 0.5 Mbit/s),
     * large enough that topic and receipt overhead stay under 1 %.
     */
    segmentBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(64 * 1024),
    /** The broker's packet limit (Mosquitto message_size_limit, EMQX max_packet_size): segments must fit under it with their topic. */
    brokerMaxPacketBytes: z.number().int().min(4096).default(SHIPPED_MOSQUITTO_LIMIT_BYTES),
    /** Segments out and not yet receipted, at most. */
    windowSegments: z.number().int().min(1).max(256).default(4),
    /** Bytes out and not yet receipted, at most (one segment may always go). */
    windowBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(256 * 1024),
    /** Send init, a segment or fin again when dispatch has not answered it after this long while connected. */
    resendS: z.number().min(0.5).max(3_600).default(30),
    /** Whole-file re-sends after SHA-256 failures at dispatch before the file is given up as failed. */
    maxRestarts: z.number().int().min(0).max(100).default(3),
    /** EMQX only: how long it keeps loose segments (init's segments_ttl). */
    segmentsTtlS: z.number().int().min(1).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const problem = segmentSizeProblem(c.segmentBytes, c.brokerMaxPacketBytes);
    if (problem) ctx.addIssue({ code: 'custom', path: ['segmentBytes'], message: problem });
  });
export type FileUploadConfig = z.output<typeof FileUploadConfigSchema>;

/**
 * The queue's table: append as one more step of the bus database's migrate()
 * list (protocol/sqlite.ts), after the outbox's.
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

/** What the agent hands over: a finished evidence file and why it exists. */
export interface EvidenceFile {
  path: string;
  kind: EvidenceKind;
  alarmId: string | null;
  capturedAt: string;
  timeSource: TimeSource;
  geotag: Fix | null;
  mime?: string;
  /** Name at dispatch; the file's base name when not given. */
  name?: string;
  /** A stable id (the evidence's own) makes enqueue idempotent; a new UUID when not given. */
  id?: string;
  /** The footage request this clip answers. */
  requestId?: string;
}

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

const toQueued = (r: Row): QueuedFile => ({
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
});

/** A pending file as this process sends it. Everything but `row` lasts one process (or one connection). */
interface Active {
  row: Row;
  confirmed: Range[];
  /** Checked against its SHA-256 in this process (again after dispatch found it corrupt). */
  verified: 'no' | 'running' | 'yes';
  /** Per connection: dispatch (or EMQX) has answered our init. */
  init: 'none' | 'sent' | 'known';
  initSentAt: number;
  /** Segments out and not yet confirmed, by offset. */
  inflight: Map<number, { end: number; sentAt: number }>;
  finSentAt: number | null;
}

export interface SegmentSent {
  fileId: string;
  offset: number;
  length: number;
  /** Which connection (1, 2, ...) it went out on. */
  connection: number;
}

export interface FileUploadEvents {
  /** Dispatch verified and stored the file (or EMQX accepted fin). */
  delivered: [file: QueuedFile];
  /** Given up, with the reason in file.error (deleted or changed on the bus, refused by dispatch, ...). */
  failed: [file: QueuedFile];
  segmentSent: [s: SegmentSent];
}

export interface FileUploadOptions {
  ref: VehicleRef;
  /** A database migrated with FILE_UPLOAD_SCHEMA (the outbox's is fine). */
  db: Db;
  /** The MQTT session to publish on: the uplink's, or one of its own. */
  session: MqttSession;
  config: FileUploadConfig;
  log: Logger;
  /**
   * Subscribe to the receipt topic (down/file) at each connect: true for a
   * session of its own; leave false on the uplink's session, which already
   * subscribes to down/+ (subscribing twice gets every receipt twice).
   */
  subscribe?: boolean;
  /** True while something more urgent waits to go (an alarm not yet confirmed): no new segment starts then. Call kick() when it turns false. */
  yieldTo?: () => boolean;
}

/** EMQX file-transfer PUBACK reason codes (its synchronous mode). */
const RC = { ok: 0x00, noSubscribers: 0x10, unspecified: 0x80, specific: 0x83, notAuthorized: 0x87, tooLarge: 0x95, quota: 0x97 } as const;

export class FileUpload extends EventEmitter<FileUploadEvents> {
  private readonly active = new Map<string, Active>();
  private readonly q;
  private readonly resendMs: number;
  private connection = 0;
  private pumping = false;
  private pumpAgain = false;
  private pumpDone: Promise<void> = Promise.resolve();
  private paused = false;
  private pausedUntil = 0;
  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private inflightSegments = 0;
  private inflightBytes = 0;
  private readonly counters = { segmentsSent: 0, bytesSent: 0, initsSent: 0, finsSent: 0 };
  /** PUBACK reason codes by packet id: mqtt.js reports 0x10 as plain success, EMQX means "send the file again" by it. */
  private readonly pubackCodes = new Map<number, number>();
  private readonly handlers: { connected: () => void; disconnected: () => void; message: (t: string, p: Buffer) => void; packet: (p: { cmd: string; messageId?: number; reasonCode?: number }) => void };

  constructor(private readonly o: FileUploadOptions) {
    super();
    if (!o.db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'file_uploads'").get()) {
      throw new Error(`SQLite ${o.db.name}: no table file_uploads; add FILE_UPLOAD_SCHEMA (gateway/file-upload.ts) to the database's migrate() steps`);
    }
    this.resendMs = o.config.resendS * 1000;
    this.q = {
      insert: o.db.prepare(
        `INSERT OR IGNORE INTO file_uploads (id, path, name, size, sha256, mtime_ms, kind, priority, alarm_id, meta, created_ms, updated_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      get: o.db.prepare<[string], Row>('SELECT * FROM file_uploads WHERE id = ?'),
      pending: o.db.prepare<[], Row>("SELECT * FROM file_uploads WHERE state = 'pending' ORDER BY priority, created_ms, id"),
      list: o.db.prepare<[], Row>('SELECT * FROM file_uploads ORDER BY priority, created_ms, id'),
      progress: o.db.prepare('UPDATE file_uploads SET confirmed = ?, attempt = ?, restarts = ?, updated_ms = ? WHERE id = ?'),
      finish: o.db.prepare('UPDATE file_uploads SET state = ?, error = ?, confirmed = ?, updated_ms = ? WHERE id = ?'),
      mtime: o.db.prepare('UPDATE file_uploads SET mtime_ms = ? WHERE id = ?'),
      retry: o.db.prepare("UPDATE file_uploads SET state = 'pending', error = NULL, restarts = 0, updated_ms = ? WHERE id = ? AND state = 'failed'"),
      prune: o.db.prepare("DELETE FROM file_uploads WHERE state = 'delivered' AND updated_ms < ?"),
    };
    this.handlers = {
      connected: () => this.onConnected(),
      disconnected: () => this.onDisconnected(),
      message: (topic, payload) => this.handleDownlink(topic, payload),
      packet: (p) => {
        if (p.cmd === 'puback' && p.messageId !== undefined) this.pubackCodes.set(p.messageId, p.reasonCode ?? 0);
      },
    };
  }

  /** Take the queue up where the database left it and send whenever connected. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    for (const row of this.q.pending.all()) this.activate(row);
    const { session } = this.o;
    session.on('connected', this.handlers.connected);
    session.on('disconnected', this.handlers.disconnected);
    session.on('message', this.handlers.message);
    if (this.o.config.prefix === '$file') session.client.on('packetreceive', this.handlers.packet);
    this.timer = setInterval(() => this.tick(), Math.min(1000, this.resendMs));
    this.timer.unref();
    if (session.connected) this.onConnected();
  }

  /** Stop sending (the session stays up: it is the caller's). What is confirmed is in the database. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const { session } = this.o;
    session.off('connected', this.handlers.connected);
    session.off('disconnected', this.handlers.disconnected);
    session.off('message', this.handlers.message);
    session.client.off('packetreceive', this.handlers.packet);
    await this.pumpDone;
  }

  /**
   * Queue a finished evidence file: hashed (SHA-256) and committed before
   * this resolves. With the id of a file already queued, returns that one.
   * Throws, with the reason, for a file that cannot be read or described.
   */
  async enqueue(e: EvidenceFile, nowMs = Date.now()): Promise<QueuedFile> {
    const id = e.id ?? randomUUID();
    const existing = this.q.get.get(id);
    if (existing) return toQueued(existing);
    let st;
    let hashed;
    try {
      st = await stat(e.path);
      hashed = await hashFile(e.path);
    } catch (err) {
      throw new Error(`evidence file ${e.path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); nothing queued`);
    }
    const meta: EvidenceMeta = {
      v: 1,
      kind: e.kind,
      fleet: this.o.ref.fleet,
      vehicle: this.o.ref.vehicle,
      alarmId: e.alarmId,
      capturedAt: e.capturedAt,
      timeSource: e.timeSource,
      geotag: e.geotag,
      ...(e.mime ? { mime: e.mime } : {}),
      ...(e.requestId ? { requestId: e.requestId } : {}),
    };
    const name = e.name ?? basename(e.path);
    const init = InitPayloadSchema.safeParse({ name, size: hashed.size, checksum: hashed.sha256, user_data: meta });
    if (!init.success) throw new Error(`evidence file ${e.path} (id ${id}): cannot be described for sending: ${formatIssues(init.error.issues)}`);
    const priority = LANES.indexOf(e.kind);
    const insert = () => this.q.insert.run(id, e.path, name, hashed.size, hashed.sha256, Math.trunc(st.mtimeMs), e.kind, priority, e.alarmId, JSON.stringify(init.data.user_data), nowMs, nowMs);
    // As durable as the evidence lanes: the file is evidence from here on.
    writeTx(this.o.db, 'FULL', insert);
    const row = this.q.get.get(id)!;
    this.o.log.info(
      { event: 'file.queued', fileId: id, kind: e.kind, alarmId: e.alarmId, fileName: name, size: hashed.size, sha256: hashed.sha256 },
      `${e.kind} ${name} queued for dispatch`,
    );
    if (!this.stopped && row.state === 'pending') {
      this.activate(row);
      this.kick();
    }
    return toQueued(row);
  }

  /** Something changed (an alarm went out, resume()): send what can be sent. */
  kick(): void {
    if (this.stopped) return;
    this.pumpAgain = true;
    if (this.pumping) return;
    this.pumping = true;
    this.pumpDone = this.pump();
  }

  /** Resolves once the sending under way (if any) has gone as far as it can for now. */
  async settled(): Promise<void> {
    while (this.pumping) await this.pumpDone;
  }

  /** Hold new segments (what is out still completes) until resume(). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.kick();
  }

  /** Put a failed file back in the queue (after fixing what made it fail). */
  retry(id: string): boolean {
    if (writeTx(this.o.db, 'FULL', () => this.q.retry.run(Date.now(), id)).changes === 0) return false;
    if (!this.stopped) {
      this.activate(this.q.get.get(id)!);
      this.kick();
    }
    return true;
  }

  /** Forget delivered files last updated before this time; returns how many. */
  prune(beforeMs: number): number {
    return writeTx(this.o.db, 'NORMAL', () => this.q.prune.run(beforeMs)).changes;
  }

  get(id: string): QueuedFile | null {
    const r = this.q.get.get(id);
    return r ? toQueued(r) : null;
  }

  list(state?: QueuedFile['state']): QueuedFile[] {
    return this.q.list.all().map(toQueued).filter((f) => state === undefined || f.state === state);
  }

  stats(): { segmentsSent: number; bytesSent: number; initsSent: number; finsSent: number; inFlightSegments: number; inFlightBytes: number; connection: number } {
    return { ...this.counters, inFlightSegments: this.inflightSegments, inFlightBytes: this.inflightBytes, connection: this.connection };
  }

  /**
   * A message from the session: a receipt on this vehicle's down/file is
   * applied and true returned; anything else is left alone (false).
   */
  handleDownlink(topic: string, payload: Buffer): boolean {
    if (topic !== fileReceiptTopic(this.o.ref)) return false;
    const m = decode(FileReceiptSchema, payload);
    if (!m.ok) {
      this.o.log.warn({ event: 'file.receipt-rejected', topic, reason: m.error }, 'malformed file receipt ignored');
      return true;
    }
    const f = this.active.get(m.value.fileId);
    if (!f) {
      this.o.log.debug({ event: 'file.receipt-stale', fileId: m.value.fileId, state: m.value.state }, 'receipt for a file not pending here');
      return true;
    }
    try {
      this.applyReceipt(f, m.value);
    } catch (err) {
      // A full or failing disk must not take the agent down: the next receipt says the same again.
      this.o.log.error({ event: 'file.receipt-failed', fileId: f.row.id, err: (err as Error).message }, 'could not record a file receipt');
    }
    this.kick();
    return true;
  }

  // ------------------------------------------------------------ state

  private activate(row: Row): void {
    if (this.active.has(row.id)) return;
    this.active.set(row.id, {
      row,
      confirmed: normalizeRanges(JSON.parse(row.confirmed) as Range[]),
      verified: 'no',
      init: 'none',
      initSentAt: 0,
      inflight: new Map(),
      finSentAt: null,
    });
  }

  private ordered(): Active[] {
    return [...this.active.values()].sort((a, b) => a.row.priority - b.row.priority || a.row.created_ms - b.row.created_ms || (a.row.id < b.row.id ? -1 : 1));
  }

  private holding(): boolean {
    return this.paused || Date.now() < this.pausedUntil || (this.o.yieldTo?.() ?? false);
  }

  private onConnected(): void {
    this.resetConnection();
    if (this.o.subscribe) {
      this.o.session.subscribeChecked(fileReceiptTopic(this.o.ref), 'the file receipt topic: files cannot be confirmed; check the broker ACL');
    }
    this.kick();
  }

  private onDisconnected(): void {
    this.resetConnection();
  }

  /** Whatever was out on the old connection may be lost: the next one starts from what dispatch confirmed. */
  private resetConnection(): void {
    this.connection++;
    for (const f of this.active.values()) {
      f.init = 'none';
      f.finSentAt = null;
      this.clearInflight(f);
    }
    this.pubackCodes.clear();
  }

  private clearInflight(f: Active, only?: (offset: number, end: number) => boolean): void {
    for (const [offset, s] of f.inflight) {
      if (only && !only(offset, s.end)) continue;
      f.inflight.delete(offset);
      this.inflightSegments--;
      this.inflightBytes -= s.end - offset;
    }
  }

  private saveProgress(f: Active): void {
    f.row.confirmed = JSON.stringify(f.confirmed);
    f.row.updated_ms = Date.now();
    // Losing this to a power cut only makes the bus ask dispatch again which ranges it holds.
    writeTx(this.o.db, 'NORMAL', () => this.q.progress.run(f.row.confirmed, f.row.attempt, f.row.restarts, f.row.updated_ms, f.row.id));
  }

  private confirm(f: Active, have: readonly Range[], replace: boolean): void {
    const next = replace ? normalizeRanges(have) : unionRanges(f.confirmed, have);
    const changed = JSON.stringify(next) !== JSON.stringify(f.confirmed);
    f.confirmed = next;
    this.clearInflight(f, (s, e) => containsRange(next, [s, e]));
    if (changed) this.saveProgress(f);
  }

  private deliver(f: Active): void {
    this.clearInflight(f);
    this.active.delete(f.row.id);
    const all: Range[] = f.row.size > 0 ? [[0, f.row.size]] : [];
    // fsync'd before anyone deletes the file on the strength of it.
    writeTx(this.o.db, 'FULL', () => this.q.finish.run('delivered', null, JSON.stringify(all), Date.now(), f.row.id));
    const file = toQueued(this.q.get.get(f.row.id)!);
    this.o.log.info(
      { event: 'file.delivered', fileId: file.id, kind: file.kind, alarmId: file.alarmId, fileName: file.name, size: file.size, restarts: file.restarts },
      `${file.kind} ${file.name} delivered`,
    );
    this.emit('delivered', file);
    this.kick();
  }

  private fail(f: Active, reason: string): void {
    if (!this.active.has(f.row.id)) return;
    this.clearInflight(f);
    this.active.delete(f.row.id);
    writeTx(this.o.db, 'FULL', () => this.q.finish.run('failed', reason, JSON.stringify(f.confirmed), Date.now(), f.row.id));
    const file = toQueued(this.q.get.get(f.row.id)!);
    this.o.log.error({ event: 'file.failed', fileId: file.id, kind: file.kind, alarmId: file.alarmId, path: file.path, reason }, `${file.kind} ${file.name} not sent: ${reason}`);
    this.emit('failed', file);
    this.kick();
  }

  /** A whole-file re-send: check our own copy first, since the fault may be on this disk. */
  private restart(f: Active, why: string): void {
    f.row.restarts++;
    if (f.row.restarts > this.o.config.maxRestarts) {
      this.fail(f, `${why}; gave up after ${this.o.config.maxRestarts} whole-file re-sends`);
      return;
    }
    this.o.log.warn({ event: 'file.restart', fileId: f.row.id, restarts: f.row.restarts, reason: why }, 'sending the whole file again');
    f.verified = 'no';
    f.finSentAt = null;
    this.confirm(f, [], true);
    this.saveProgress(f);
  }

  private applyReceipt(f: Active, r: FileReceipt): void {
    this.o.log.debug({ event: 'file.receipt', fileId: r.fileId, state: r.state, attempt: r.attempt, have: r.have, init: r.init }, 'file receipt');
    if (r.state === 'rejected') return this.fail(f, `dispatch refused it: ${r.reason ?? 'no reason given'}`);
    if (r.state === 'unknown') {
      // Dispatch has no record of it (init lost, or its database is new): it holds nothing.
      f.row.attempt = 0;
      f.init = 'none';
      f.finSentAt = null;
      this.clearInflight(f);
      this.confirm(f, [], true);
      this.saveProgress(f);
      return;
    }
    if (r.attempt < f.row.attempt) {
      this.o.log.debug({ event: 'file.receipt-stale', fileId: r.fileId, attempt: r.attempt, known: f.row.attempt }, 'receipt of an earlier attempt ignored');
      return;
    }
    if (r.state === 'complete') return this.deliver(f);
    if (r.init) f.init = 'known';
    if (r.resend) this.clearInflight(f, (s, e) => r.resend!.some(([a, b]) => s < b && a < e));
    if (r.state === 'corrupt') {
      f.row.attempt = r.attempt;
      return this.restart(f, `dispatch found the file's SHA-256 wrong${r.reason ? ` (${r.reason})` : ''}`);
    }
    if (r.attempt > f.row.attempt) {
      // A newer attempt at dispatch: what it holds now is the whole truth.
      f.row.attempt = r.attempt;
      this.clearInflight(f);
      this.confirm(f, r.have, true);
      this.saveProgress(f);
      return;
    }
    if (r.state === 'incomplete') {
      f.finSentAt = null;
      this.confirm(f, r.have, true);
      return;
    }
    this.confirm(f, r.have, false);
  }

  // ------------------------------------------------------------ sending

  /**
   * Send until nothing more can go, and again while kicks came in meanwhile.
   * `pumping` is cleared in the same microtask as the last check of
   * `pumpAgain` (not in a .finally() after it), so no kick falls in between.
   */
  private async pump(): Promise<void> {
    try {
      while (this.pumpAgain && !this.stopped) {
        this.pumpAgain = false;
        await this.pumpOnce();
      }
    } catch (err) {
      this.o.log.error({ event: 'file.pump-failed', err: (err as Error).message }, 'file sending stopped on an error; it resumes at the next kick');
    } finally {
      this.pumping = false;
    }
  }

  private windowFull(nextBytes: number): boolean {
    const c = this.o.config;
    return this.inflightSegments >= c.windowSegments || (this.inflightSegments > 0 && this.inflightBytes + nextBytes > c.windowBytes);
  }

  private async pumpOnce(): Promise<void> {
    const connection = this.connection;
    const live = () => !this.stopped && this.o.session.connected && connection === this.connection;
    for (const f of this.ordered()) {
      if (!live() || this.holding()) return;
      if (!this.active.has(f.row.id)) continue;
      if (f.verified !== 'yes') {
        if (f.verified === 'no') void this.verify(f);
        return; // in order: the next file waits for this one
      }
      if (f.init !== 'known') {
        if (f.init === 'none') this.publishInit(f);
        return;
      }
      for (;;) {
        if (!live() || this.holding() || !this.active.has(f.row.id)) return;
        const seg = this.nextSegment(f);
        if (!seg) break;
        if (this.windowFull(seg[1] - seg[0])) return;
        this.addInflight(f, seg);
        const data = await this.readSegment(f, seg);
        if (!data) return; // the file failed; pump again to go on with the next
        if (!live() || !f.inflight.has(seg[0])) {
          this.clearInflight(f, (s) => s === seg[0]);
          return;
        }
        this.publishSegment(f, seg, data);
      }
      if (coversAll(f.confirmed, f.row.size)) {
        if (f.finSentAt === null) this.publishFin(f);
        continue;
      }
      // Every segment is out; the next file may start while these are confirmed.
    }
  }

  /** The next range nobody has confirmed and nothing is carrying, cut to the segment size. */
  private nextSegment(f: Active): Range | null {
    const out = [...f.inflight].map(([s, { end }]): Range => [s, end]);
    const gap = missingRanges(unionRanges(f.confirmed, out), f.row.size)[0];
    if (!gap) return null;
    return [gap[0], Math.min(gap[1], gap[0] + this.o.config.segmentBytes)];
  }

  private addInflight(f: Active, [s, e]: Range): void {
    f.inflight.set(s, { end: e, sentAt: Date.now() });
    this.inflightSegments++;
    this.inflightBytes += e - s;
  }

  /** Check the file on disk against what was queued; fail it with the reason if it changed or went away. */
  private async verify(f: Active): Promise<void> {
    f.verified = 'running';
    const problem = await this.localProblem(f, true);
    // Stopped meanwhile: the database may be closed; the next start() checks again.
    if (this.stopped) return;
    if (problem) {
      this.fail(f, problem);
    } else {
      f.verified = 'yes';
    }
    this.kick();
  }

  private async localProblem(f: Active, fullHash: boolean): Promise<string | null> {
    const { path, size, sha256 } = f.row;
    try {
      const st = await stat(path);
      if (st.size !== size) return `file ${path} changed on the bus before it was sent: queued with ${size} bytes, now ${st.size}`;
      if (!fullHash && Math.trunc(st.mtimeMs) === f.row.mtime_ms) return null;
      const now = await hashFile(path);
      if (now.sha256 !== sha256) return `file ${path} changed or is corrupted on the bus: queued with sha256 ${sha256}, now ${now.sha256}`;
      if (Math.trunc(st.mtimeMs) !== f.row.mtime_ms) {
        f.row.mtime_ms = Math.trunc(st.mtimeMs);
        writeTx(this.o.db, 'NORMAL', () => this.q.mtime.run(f.row.mtime_ms, f.row.id));
      }
      return null;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return `file ${path} was deleted on the bus before it was sent`;
      return `file ${path} cannot be read (${code ?? (err as Error).message})`;
    }
  }

  private async readSegment(f: Active, [s, e]: Range): Promise<Buffer | null> {
    const problem = await this.localProblem(f, false);
    if (problem) {
      this.fail(f, problem);
      return null;
    }
    try {
      const fh = await open(f.row.path, 'r');
      try {
        const buf = Buffer.alloc(e - s);
        let got = 0;
        while (got < buf.length) {
          const { bytesRead } = await fh.read(buf, got, buf.length - got, s + got);
          if (bytesRead === 0) break;
          got += bytesRead;
        }
        if (got !== buf.length) {
          this.fail(f, `file ${f.row.path} is shorter than queued: ${got} bytes at offset ${s}, expected ${buf.length}`);
          return null;
        }
        return buf;
      } finally {
        await fh.close();
      }
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      this.fail(f, code === 'ENOENT' ? `file ${f.row.path} was deleted on the bus before it was sent` : `file ${f.row.path} cannot be read (${code ?? (err as Error).message})`);
      return null;
    }
  }

  private publishInit(f: Active): void {
    const { prefix } = this.o.config;
    const payload: InitPayload = {
      name: f.row.name,
      size: f.row.size,
      checksum: f.row.sha256,
      ...(this.o.config.segmentsTtlS ? { segments_ttl: this.o.config.segmentsTtlS } : {}),
      user_data: JSON.parse(f.row.meta) as EvidenceMeta,
    };
    f.init = 'sent';
    f.initSentAt = Date.now();
    this.counters.initsSent++;
    const connection = this.connection;
    this.o.log.debug({ event: 'file.init-sent', fileId: f.row.id, size: f.row.size }, 'file announced');
    this.o.session.client.publish(initTopic(prefix, this.o.ref, f.row.id), encode(payload), { qos: 1 }, (err, packet) => {
      if (this.stopped || connection !== this.connection || !this.active.has(f.row.id)) return;
      const rc = this.reasonCode(err, packet);
      if (prefix === '$file') {
        if (rc === RC.ok || rc === RC.noSubscribers) {
          f.init = 'known';
          this.kick();
          return;
        }
        this.onEmqxError(f, rc, 'init', err);
        return;
      }
      if (err) this.onRefused(f, rc, 'init', err);
    });
  }

  private publishSegment(f: Active, [s, e]: Range, data: Buffer): void {
    const { prefix } = this.o.config;
    const connection = this.connection;
    this.counters.segmentsSent++;
    this.counters.bytesSent += data.length;
    const sent: SegmentSent = { fileId: f.row.id, offset: s, length: data.length, connection };
    this.emit('segmentSent', sent);
    this.o.log.debug({ event: 'file.segment-sent', ...sent }, 'segment sent');
    this.o.session.client.publish(segmentTopic(prefix, this.o.ref, f.row.id, s, sha256Hex(data)), data, { qos: 1 }, (err, packet) => {
      if (this.stopped || connection !== this.connection || !this.active.has(f.row.id)) return;
      const rc = this.reasonCode(err, packet);
      if (prefix === '$file') {
        if (rc === RC.ok) {
          this.confirm(f, [[s, e]], false);
          this.kick();
        } else if (rc === RC.noSubscribers) {
          this.restart(f, 'EMQX asked for every segment again (0x10)');
          this.kick();
        } else {
          this.clearInflight(f, (o) => o === s);
          this.onEmqxError(f, rc, 'segment', err);
        }
        return;
      }
      if (err) {
        this.clearInflight(f, (o) => o === s);
        this.onRefused(f, rc, 'segment', err);
      }
    });
  }

  private publishFin(f: Active): void {
    const { prefix } = this.o.config;
    const connection = this.connection;
    f.finSentAt = Date.now();
    this.counters.finsSent++;
    this.o.log.debug({ event: 'file.fin-sent', fileId: f.row.id }, 'file finished');
    this.o.session.client.publish(finTopic(prefix, this.o.ref, f.row.id, f.row.size, f.row.sha256), Buffer.alloc(0), { qos: 1 }, (err, packet) => {
      if (this.stopped || connection !== this.connection || !this.active.has(f.row.id)) return;
      const rc = this.reasonCode(err, packet);
      if (prefix === '$file') {
        if (rc === RC.ok) this.deliver(f);
        else if (rc === RC.noSubscribers || rc === RC.unspecified) this.restart(f, `EMQX refused fin (0x${rc.toString(16)}): every segment again`);
        else this.onEmqxError(f, rc, 'fin', err);
        this.kick();
        return;
      }
      if (err) this.onRefused(f, rc, 'fin', err);
    });
  }

  private reasonCode(err: Error | undefined, packet: { messageId?: number } | undefined): number {
    if (err) return (err as Error & { code?: number }).code ?? RC.unspecified;
    const id = packet?.messageId;
    if (id === undefined) return RC.ok;
    const rc = this.pubackCodes.get(id) ?? RC.ok;
    this.pubackCodes.delete(id);
    return rc;
  }

  /** Our broker refused a publish (vehicle prefix): an ACL or size problem will not go away by itself. */
  private onRefused(f: Active, rc: number, what: string, err: Error): void {
    if (rc === RC.notAuthorized) return this.fail(f, `the broker refused the ${what} (not authorized, 0x87): check the broker ACL and files.prefix`);
    if (rc === RC.tooLarge) return this.fail(f, `the broker refused the ${what} as too large (0x95): lower files.segmentBytes or raise files.brokerMaxPacketBytes to the broker's real limit`);
    if (rc === RC.quota) this.pausedUntil = Date.now() + this.resendMs;
    this.o.log.warn({ event: 'file.publish-refused', fileId: f.row.id, what, rc, err: err.message }, 'broker refused a file message; sent again later');
  }

  /** EMQX's file-transfer reason codes, synchronous mode. */
  private onEmqxError(f: Active, rc: number, what: string, err: Error | undefined): void {
    if (rc === RC.specific) return this.fail(f, `EMQX cancelled the transfer at ${what} (0x83)`);
    if (rc === RC.notAuthorized || rc === RC.tooLarge) return this.onRefused(f, rc, what, err ?? new Error(`reason 0x${rc.toString(16)}`));
    if (rc === RC.quota) this.pausedUntil = Date.now() + this.resendMs;
    if (what === 'init') f.init = 'none';
    this.o.log.warn({ event: 'file.emqx-retry', fileId: f.row.id, what, rc, err: err?.message }, `EMQX asked for the ${what} again`);
  }

  /** Once a second: what has waited longer than resendS for an answer goes again. */
  private tick(): void {
    if (this.stopped || !this.o.session.connected) return;
    const cutoff = Date.now() - this.resendMs;
    let due = 0;
    for (const f of this.active.values()) {
      if (f.init === 'sent' && f.initSentAt <= cutoff) {
        f.init = 'none';
        due++;
      }
      if (f.finSentAt !== null && f.finSentAt <= cutoff) {
        f.finSentAt = null;
        due++;
      }
      const before = f.inflight.size;
      this.clearInflight(f, (s) => f.inflight.get(s)!.sentAt <= cutoff);
      due += before - f.inflight.size;
    }
    if (due) this.o.log.info({ event: 'file.resend-due', count: due }, 'file messages unanswered: sending again');
    this.kick();
  }
}
