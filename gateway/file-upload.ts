// The bus's end of the evidence file transfer (protocol/file-transfer.ts): a
// durable queue of files to send, each sent as init, segments at byte
// offsets and fin, in EMQX's framing, until dispatch's receipts (down/file)
// say it holds the file whole, or EMQX's PUBACKs do with prefix "$file".
// This module is the front the agent uses: it queues evidence and hands the
// queue to the pump. The parts:
//
//   upload-queue.ts   the queue behind a store interface (UploadStore), in SQLite
//   upload-pump.ts    the pump: order, window, init / segments / fin, resends
//   upload-state.ts   each file's state: receipts, delivered, failed, restarted
//   upload-emqx.ts    EMQX's PUBACK reason codes and what they mean for the pump
//   upload-local.ts   the bus's own copy of a file: checked and read

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { type EvidenceKind, type EvidenceMeta, InitPayloadSchema, hashFile } from '../protocol/file-transfer.ts';
import { LANES } from '../protocol/lanes.ts';
import { type Fix, type TimeSource, formatIssues } from '../protocol/messages.ts';
import type { Db } from '../common/sqlite.ts';
import { UploadPump, type UploadPumpOptions } from './upload-pump.ts';
import { type QueuedFile, SqliteUploadStore, type UploadStore, toQueued } from './upload-queue.ts';
import type { FileUploadEvents } from './upload-state.ts';

export { FileUploadConfigSchema, type FileUploadConfig } from './upload-pump.ts';
export { FILE_UPLOAD_SCHEMA, type QueuedFile } from './upload-queue.ts';
export type { FileUploadEvents, SegmentSent } from './upload-state.ts';

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

export interface FileUploadOptions extends Omit<UploadPumpOptions, 'store' | 'events'> {
  /** A database migrated with FILE_UPLOAD_SCHEMA (the outbox's is fine). */
  db: Db;
}

export class FileUpload extends EventEmitter<FileUploadEvents> {
  private readonly store: UploadStore;
  private readonly pump: UploadPump;

  constructor(private readonly o: FileUploadOptions) {
    super();
    this.store = new SqliteUploadStore(o.db);
    const { ref, session, config, log, subscribe, yieldTo, trust, signer } = o;
    this.pump = new UploadPump({ ref, store: this.store, session, config, log, subscribe, yieldTo, trust, signer, events: this });
  }

  /** Take the queue up where the database left it and send whenever connected. */
  start(): void {
    this.pump.start();
  }

  /** Stop sending (the session stays up: it is the caller's). What is confirmed is in the database. */
  stop(): Promise<void> {
    return this.pump.stop();
  }

  /**
   * Queue a finished evidence file: hashed (SHA-256) and committed before
   * this resolves. With the id of a file already queued, returns that one.
   * Throws, with the reason, for a file that cannot be read or described.
   */
  async enqueue(e: EvidenceFile, nowMs = Date.now()): Promise<QueuedFile> {
    const id = e.id ?? randomUUID();
    const existing = this.store.get(id);
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
    const rec = this.store.put({
      id,
      path: e.path,
      name,
      size: hashed.size,
      sha256: hashed.sha256,
      mtimeMs: Math.trunc(st.mtimeMs),
      kind: e.kind,
      priority: LANES.indexOf(e.kind),
      alarmId: e.alarmId,
      meta: init.data.user_data,
      createdMs: nowMs,
    });
    this.o.log.info(
      { event: 'file.queued', fileId: id, kind: e.kind, alarmId: e.alarmId, fileName: name, size: hashed.size, sha256: hashed.sha256 },
      `${e.kind} ${name} queued for dispatch`,
    );
    if (this.pump.running && rec.state === 'pending') {
      this.pump.activate(rec);
      this.pump.kick();
    }
    return toQueued(rec);
  }

  /** Something changed (an alarm went out, resume()): send what can be sent. */
  kick(): void {
    this.pump.kick();
  }

  /** Resolves once the sending under way (if any) has gone as far as it can for now. */
  settled(): Promise<void> {
    return this.pump.settled();
  }

  /** Hold new segments (what is out still completes) until resume(). */
  pause(): void {
    this.pump.pause();
  }

  resume(): void {
    this.pump.resume();
  }

  /** Put a failed file back in the queue (after fixing what made it fail). */
  retry(id: string): boolean {
    if (!this.store.requeue(id, Date.now())) return false;
    if (this.pump.running) {
      this.pump.activate(this.store.get(id)!);
      this.pump.kick();
    }
    return true;
  }

  /** Forget delivered files last updated before this time; returns how many. */
  prune(beforeMs: number): number {
    return this.store.prune(beforeMs);
  }

  get(id: string): QueuedFile | null {
    const r = this.store.get(id);
    return r ? toQueued(r) : null;
  }

  list(state?: QueuedFile['state']): QueuedFile[] {
    return this.store.list(state).map(toQueued);
  }

  stats(): ReturnType<UploadPump['stats']> {
    return this.pump.stats();
  }

  /**
   * A message from the session: a receipt on this vehicle's down/file is
   * applied and true returned; anything else is left alone (false).
   */
  handleDownlink(topic: string, payload: Buffer): boolean {
    return this.pump.handleDownlink(topic, payload);
  }
}
