// Dispatch's end of the evidence file transfer on MQTT (protocol/file-transfer.ts):
// takes init / segment / fin from every vehicle's .../up/file/ topics, checks
// each (a segment against its own SHA-256), has the evidence store
// (dispatch/evidence-store.ts) keep the bytes and the ranges held, verifies
// the whole file's SHA-256 at fin and has it stored with its vehicle, alarm,
// kind and geotag. After each step the bus gets a receipt (down/file) saying
// what is held, so after a cut or a crash on either side only what is missing
// goes again. A file whose SHA-256 fails is discarded and asked for again whole.
//
// Every message of one file is handled in arrival order on its own promise
// chain; files of different vehicles go side by side. Nothing a bus sends
// can crash this: every topic and payload is checked, and what fails is
// logged with the reason (and answered, when the bus can act on it).

import { EventEmitter } from 'node:events';
import { statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  EMQX_DEFAULT_MAX_PACKET_BYTES,
  type FileCommand,
  type FileReceipt,
  type FileReceiptState,
  InitPayloadSchema,
  type Range,
  containsRange,
  coversAll,
  dispatchFileFilter,
  normalizeRanges,
  parseFileTopic,
  sha256Hex,
} from '../protocol/file-transfer.ts';
import { decode } from '../protocol/messages.ts';
import type { MqttSession } from '../common/mqtt-session.ts';
import type { Db } from '../common/sqlite.ts';
import { type VehicleRef, sharedFilter } from '../protocol/topics.ts';
import { EvidenceStore, type StoredFile } from './evidence-store.ts';
import type { SignatureBook } from './signatures.ts';
import { fileSigningText } from '../protocol/signed-evidence.ts';

export const FilesConfigSchema = z
  .object({
    /** Evidence folder: verified files go to {dir}/{fleet}/{vehicle}/, partial ones to {dir}/.partial/. */
    dir: z.string().min(1),
    /** Larger files are refused at init. */
    maxFileBytes: z.number().int().min(1).default(2 * 1024 ** 3),
    /** Larger segments are refused (the bus's files.segmentBytes must be at most this). */
    maxSegmentBytes: z.number().int().min(1024).max(256 * 1024 * 1024).default(EMQX_DEFAULT_MAX_PACKET_BYTES),
    /**
     * Segment bytes taken off the wire and not yet on disk, at most, for one
     * vehicle and for all: past that a segment is dropped without a receipt
     * (the bus sends it again), so one bus's flood cannot fill dispatch's memory.
     */
    maxBufferedBytesPerVehicle: z.number().int().min(1024 * 1024).default(16 * 1024 * 1024),
    maxBufferedBytes: z.number().int().min(1024 * 1024).default(64 * 1024 * 1024),
    /** A vehicle's files still being received, in bytes of their announced sizes, at most: a new one waits past that. */
    maxReceivingBytesPerVehicle: z.number().int().min(1024 * 1024).default(4 * 1024 ** 3),
    /** A vehicle's files announced in the last 24 h, in bytes, at most (stored or not): past that a new one waits, so one bus cannot fill the evidence disk for every other. */
    maxBytesPerVehiclePerDay: z.number().int().min(1024 * 1024).default(8 * 1024 ** 3),
    /** A new file is taken only if the evidence disk keeps at least this free after it (room for alarms in dispatch's database). */
    minFreeBytes: z.number().int().min(0).default(1024 ** 3),
    /** A file still incomplete this long after its init is forgotten, partial bytes and all (the bus would start it afresh). */
    unfinishedExpiryS: z.number().int().min(60).default(7 * 86_400),
  })
  .strict();
export type FilesConfig = z.output<typeof FilesConfigSchema>;

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
  /** Each file's signature, checked at init and sealed in a sidecar once stored (dispatch/signatures.ts). */
  signatures: SignatureBook;
  /** Sign and publish (QoS 1) one receipt to its bus; the receiver's MQTT session does it. */
  sendReceipt: (ref: VehicleRef, receipt: FileReceipt) => void;
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

export class FileReceiver extends EventEmitter<FileReceiverEvents> {
  private readonly chains = new Map<string, Promise<void>>();
  /** Segment bytes taken and not yet processed, per vehicle and in all (bounded by files.maxBuffered*). */
  private readonly buffered = new Map<string, number>();
  private bufferedTotal = 0;
  private readonly pending = new Map<string, PendingReceipt>();
  private flushScheduled = false;
  private readonly store: EvidenceStore;

  constructor(private readonly o: FileReceiverOptions) {
    super();
    this.store = new EvidenceStore(o.db, o.config.dir);
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
    const vehicle = `${ref.fleet}/${ref.vehicle}`;
    const bytes = t.command.type === 'segment' ? payload.length : 0;
    const ofVehicle = this.buffered.get(vehicle) ?? 0;
    if (bytes > 0 && (ofVehicle + bytes > this.o.config.maxBufferedBytesPerVehicle || this.bufferedTotal + bytes > this.o.config.maxBufferedBytes)) {
      // Not written, not receipted: the bus sends it again once its resend time has passed.
      this.o.log.warn(
        { event: 'file.segment-deferred', topic, fleet: ref.fleet, vehicle: ref.vehicle, fileId: t.fileId, bytes, bufferedVehicle: ofVehicle, bufferedTotal: this.bufferedTotal },
        'segment dropped unreceipted: too many bytes waiting for the disk',
      );
      return true;
    }
    this.buffered.set(vehicle, ofVehicle + bytes);
    this.bufferedTotal += bytes;
    const release = () => {
      const left = (this.buffered.get(vehicle) ?? bytes) - bytes;
      if (left > 0) this.buffered.set(vehicle, left);
      else this.buffered.delete(vehicle);
      this.bufferedTotal -= bytes;
    };
    const run = (this.chains.get(key) ?? Promise.resolve())
      .then(() => this.process(ref, t.fileId, t.command, topic, payload))
      .finally(release)
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

  /** Forget the files still incomplete files.unfinishedExpiryS after their init (a bus gone for good, a hostile one); returns how many. */
  async expireUnfinished(nowMs = Date.now()): Promise<number> {
    const old = this.store.unfinishedSince(new Date(nowMs - this.o.config.unfinishedExpiryS * 1000).toISOString());
    for (const f of old) {
      const ref = { fleet: f.fleet, vehicle: f.vehicle };
      // In its file's chain: never under a segment being written.
      const key = `${f.fleet}/${f.vehicle}/${f.fileId}`;
      const run = (this.chains.get(key) ?? Promise.resolve()).then(() => this.store.forget(ref, f.fileId));
      const queued = run.catch(() => {});
      this.chains.set(key, queued);
      try {
        await run;
      } finally {
        if (this.chains.get(key) === queued) this.chains.delete(key);
      }
      this.o.log.warn({ event: 'file.expired', fleet: f.fleet, vehicle: f.vehicle, fileId: f.fileId, fileName: f.name, size: f.size, receivedAt: f.receivedAt }, `unfinished ${f.name} forgotten`);
    }
    return old.length;
  }

  /** Resolves once every message taken so far is processed and its receipt published. */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
    this.flushReceipts();
  }

  get(ref: VehicleRef, fileId: string): StoredFile | null {
    return this.store.get(ref, fileId);
  }

  list(ref?: VehicleRef): StoredFile[] {
    return this.store.list(ref);
  }

  forAlarm(ref: VehicleRef, alarmId: string): StoredFile[] {
    return this.store.forAlarm(ref, alarmId);
  }

  /** Where the bytes of a file still being received are kept. */
  partialPath(ref: VehicleRef, fileId: string): string {
    return this.store.partialPath(ref, fileId);
  }

  private reject(topic: string, reason: string, ids: Record<string, unknown> = {}): void {
    this.o.log.warn({ event: 'file.rejected', topic, reason, ...ids }, 'file transfer message refused');
    this.emit('rejected', topic, reason);
  }

  /** Refuse a message and tell the bus the file will never be taken. */
  private refuse(ref: VehicleRef, fileId: string, topic: string, reason: string, ids: Record<string, unknown>): void {
    this.reject(topic, reason, ids);
    this.queueReceipt(ref, fileId, 'rejected', { reason });
  }

  /** A segment or fin of a file without an init here: the bus announces it again. */
  private unknown(ref: VehicleRef, fileId: string, topic: string, what: 'segment' | 'fin', ids: Record<string, unknown>): void {
    this.reject(topic, `${what} for unknown file ${fileId} (no init received); asking the bus to announce it again`, ids);
    this.queueReceipt(ref, fileId, 'unknown');
  }

  /**
   * Why a new file of `size` bytes may not be taken now, or null: the vehicle's files still being
   * received would pass files.maxReceivingBytesPerVehicle, or the evidence disk would keep less than
   * files.minFreeBytes free (the room dispatch's database needs to store every other bus's alarms).
   */
  private noRoomFor(ref: VehicleRef, size: number): string | null {
    const receiving = this.store.receivingBytes(ref);
    if (receiving + size > this.o.config.maxReceivingBytesPerVehicle) {
      return `${ref.fleet}/${ref.vehicle} has ${receiving} bytes of files still being received; files.maxReceivingBytesPerVehicle is ${this.o.config.maxReceivingBytesPerVehicle}`;
    }
    const day = this.store.bytesSince(ref, new Date(Date.now() - 86_400_000).toISOString());
    if (day + size > this.o.config.maxBytesPerVehiclePerDay) {
      return `${ref.fleet}/${ref.vehicle} announced ${day} bytes of files in the last 24 h; files.maxBytesPerVehiclePerDay is ${this.o.config.maxBytesPerVehiclePerDay}`;
    }
    const free = freeBytes(this.o.config.dir);
    if (free !== null && free - size < this.o.config.minFreeBytes) {
      return `${free} bytes free on the evidence disk, files.minFreeBytes keeps ${this.o.config.minFreeBytes}`;
    }
    return null;
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
      return this.refuse(ref, fileId, topic, `init names ${meta.fleet}/${meta.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`, ids);
    }
    if (init.size > this.o.config.maxFileBytes) {
      return this.refuse(ref, fileId, topic, `file of ${init.size} bytes is larger than files.maxFileBytes ${this.o.config.maxFileBytes}`, ids);
    }
    const row = this.store.get(ref, fileId);
    if (!row) {
      const full = this.noRoomFor(ref, init.size);
      if (full) {
        // No receipt: the bus sends init again after its resend time, and gets in once there is room.
        this.o.log.warn({ event: 'file.init-deferred', ...ids, fileName: init.name, size: init.size, reason: full }, `${init.name} not taken yet: ${full}`);
        return;
      }
      this.store.announce(ref, fileId, init);
      const verdict = this.o.signatures.record('file', ref, fileId, fileSigningText(ref, fileId, init), init.signature, new Date(meta.capturedAt));
      if (!verdict.startsWith('verified')) this.o.log.warn({ event: 'file.signature', ...ids, fileName: init.name, verdict }, `${init.name}: ${verdict}`);
      this.o.log.info(
        { event: 'file.init', ...ids, fileName: init.name, size: init.size, kind: meta.kind, alarmId: meta.alarmId },
        `${meta.kind} ${init.name} (${init.size} bytes) announced`,
      );
      this.queueReceipt(ref, fileId, 'receiving', { init: true });
      return;
    }
    if (row.name !== init.name || row.size !== init.size || row.sha256 !== init.checksum) {
      const reason = `file id ${fileId} already names ${row.name} (${row.size} bytes, sha256 ${row.sha256}); got ${init.name} (${init.size} bytes, sha256 ${init.checksum}): a file id names one file`;
      return this.refuse(ref, fileId, topic, reason, ids);
    }
    // The bus announces again after every reconnect or restart: answer with what we hold.
    this.o.log.debug({ event: 'file.init-again', ...ids, state: row.state }, 'init for a file already known');
    this.queueReceipt(ref, fileId, row.state === 'complete' ? 'complete' : 'receiving', { init: true });
  }

  private async onSegment(ref: VehicleRef, fileId: string, offset: number, checksum: string | null, topic: string, payload: Buffer): Promise<void> {
    const ids = { fleet: ref.fleet, vehicle: ref.vehicle, fileId, offset };
    const row = this.store.get(ref, fileId);
    if (!row) return this.unknown(ref, fileId, topic, 'segment', ids);
    if (row.state === 'complete') {
      this.o.log.debug({ event: 'file.duplicate', ...ids }, 'segment of a file already stored');
      this.queueReceipt(ref, fileId, 'complete');
      return;
    }
    const len = payload.length;
    const range: Range = [offset, offset + len];
    if (len === 0) return this.reject(topic, 'empty segment', ids);
    if (len > this.o.config.maxSegmentBytes) {
      return this.refuse(ref, fileId, topic, `segment of ${len} bytes is larger than files.maxSegmentBytes ${this.o.config.maxSegmentBytes}; lower the bus's files.segmentBytes`, ids);
    }
    if (offset + len > row.size) return this.refuse(ref, fileId, topic, `segment [${offset}, ${offset + len}) runs past the file's ${row.size} bytes`, ids);
    if (checksum !== null) {
      const actual = sha256Hex(payload);
      if (actual !== checksum) {
        this.reject(topic, `segment [${offset}, ${offset + len}) fails its SHA-256 (topic says ${checksum}, bytes give ${actual}): corrupted on the way; asked for again`, ids);
        this.queueReceipt(ref, fileId, 'receiving', { resend: range });
        return;
      }
    }
    if (containsRange(this.store.ranges(ref, fileId), range)) {
      // Sent again after a lost receipt: already on disk, written once.
      this.o.log.debug({ event: 'file.duplicate', ...ids }, 'segment already held');
      this.queueReceipt(ref, fileId, 'receiving');
      return;
    }
    await this.store.putSegment(ref, fileId, offset, payload);
    this.o.log.debug({ event: 'file.segment', ...ids, bytes: len }, 'segment stored');
    this.queueReceipt(ref, fileId, 'receiving');
  }

  private async onFin(ref: VehicleRef, fileId: string, size: number, checksum: string | null, topic: string, payload: Buffer): Promise<void> {
    const ids = { fleet: ref.fleet, vehicle: ref.vehicle, fileId };
    if (payload.length > 0) return this.reject(topic, `fin carries no payload (got ${payload.length} bytes)`, ids);
    const row = this.store.get(ref, fileId);
    if (!row) return this.unknown(ref, fileId, topic, 'fin', ids);
    if (row.state === 'complete') {
      this.o.log.info({ event: 'file.duplicate', ...ids, path: row.path }, 'fin for a file already stored; confirmed again');
      this.queueReceipt(ref, fileId, 'complete');
      return;
    }
    if (size !== row.size) return this.refuse(ref, fileId, topic, `fin says ${size} bytes, init said ${row.size}`, ids);
    const have = this.store.ranges(ref, fileId);
    if (!coversAll(have, row.size)) {
      this.o.log.info({ event: 'file.incomplete', ...ids, have }, 'fin before every segment arrived; asking for the missing ranges');
      this.queueReceipt(ref, fileId, 'incomplete');
      return;
    }
    // EMQX's rule: a checksum on fin takes precedence over the one in init.
    const expected = checksum ?? row.sha256;
    const actual = await this.store.received(ref, row);
    if (!actual || actual.sha256 !== expected || actual.size !== row.size) {
      const reason = actual
        ? `SHA-256 mismatch: expected ${expected}, the ${actual.size} bytes received give ${actual.sha256}; discarded, send the whole file again`
        : 'the partial file is gone from dispatch\'s disk; send the whole file again';
      this.o.log.error({ event: 'file.checksum-mismatch', ...ids, fileName: row.name, expected, got: actual?.sha256 ?? null, attempt: row.attempt }, reason);
      await this.store.discard(ref, fileId);
      this.queueReceipt(ref, fileId, 'corrupt', { reason });
      return;
    }
    const s = await this.store.complete(ref, row, expected, actual.inPlace);
    if (s) {
      const signature = await this.o.signatures.sealStored({ ...s, path: s.path! });
      this.o.log.info(
        { event: 'file.stored', ...ids, kind: s.kind, alarmId: s.alarmId, fileName: s.name, size: s.size, sha256: s.sha256, path: s.path, geotag: s.geotag, attempt: s.attempt, signature },
        `${s.kind} from ${ref.fleet}/${ref.vehicle} verified and stored`,
      );
      this.emit('stored', s);
    }
    this.queueReceipt(ref, fileId, 'complete');
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
      const row = this.store.get(p.ref, p.fileId);
      const have: Range[] = !row ? [] : row.state === 'complete' ? (row.size > 0 ? [[0, row.size]] : []) : this.store.ranges(p.ref, p.fileId);
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
      this.o.sendReceipt(p.ref, receipt);
      this.o.log.debug({ event: 'file.receipt-sent', fleet: p.ref.fleet, vehicle: p.ref.vehicle, ...receipt }, 'file receipt sent');
      this.emit('receiptSent', p.ref, receipt);
    }
  }
}

/** Free bytes for this user on the file system holding `dir` (or its nearest existing parent); null when it cannot be told. */
function freeBytes(dir: string): number | null {
  for (let d = resolve(dir); ; d = dirname(d)) {
    try {
      const st = statfsSync(d);
      return Number(st.bavail) * Number(st.bsize);
    } catch {
      if (dirname(d) === d) return null;
    }
  }
}
