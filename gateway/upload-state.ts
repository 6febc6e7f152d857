// Where each pending evidence file stands while the bus sends it
// (gateway/upload-pump.ts sends; this keeps the state): which byte ranges
// dispatch has confirmed, which segments are out, whether init and fin are
// answered, and the moves between them: a receipt applied, a file delivered,
// failed, or sent again whole after a SHA-256 failure. What is confirmed is
// saved to the queue's store as it changes (gateway/upload-queue.ts).

import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type FileReceipt, type Range, containsRange, missingRanges, normalizeRanges, unionRanges } from '../protocol/file-transfer.ts';
import { type QueuedFile, type UploadRecord, type UploadStore, toQueued } from './upload-queue.ts';

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

/** A pending file as this process sends it. Everything but `rec` lasts one process (or one connection). */
export interface FileUnderWay {
  rec: UploadRecord;
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

export interface UploadStateOptions {
  store: UploadStore;
  log: Logger;
  /** Where deliveries and failures are announced. */
  events: EventEmitter<FileUploadEvents>;
  segmentBytes: number;
  maxRestarts: number;
  /** Something changed: the pump may send more. */
  kick: () => void;
}

export class UploadState {
  private readonly active = new Map<string, FileUnderWay>();
  private segmentsOut = 0;
  private bytesOut = 0;

  constructor(private readonly o: UploadStateOptions) {}

  /** Segments out and not yet confirmed, of every file. */
  get inflightSegments(): number {
    return this.segmentsOut;
  }

  get inflightBytes(): number {
    return this.bytesOut;
  }

  /** Start keeping a pending file (once: a file already under way is left as it is). */
  activate(rec: UploadRecord): void {
    if (this.active.has(rec.id)) return;
    this.active.set(rec.id, {
      rec,
      confirmed: normalizeRanges(rec.confirmed),
      verified: 'no',
      init: 'none',
      initSentAt: 0,
      inflight: new Map(),
      finSentAt: null,
    });
  }

  get(id: string): FileUnderWay | undefined {
    return this.active.get(id);
  }

  has(id: string): boolean {
    return this.active.has(id);
  }

  /** In send order: priority (snapshots before clips), then oldest, then id. */
  ordered(): FileUnderWay[] {
    return [...this.active.values()].sort((a, b) => a.rec.priority - b.rec.priority || a.rec.createdMs - b.rec.createdMs || (a.rec.id < b.rec.id ? -1 : 1));
  }

  /** Whatever was out on the old connection may be lost: the next one starts from what dispatch confirmed. */
  forgetSent(): void {
    for (const f of this.active.values()) {
      f.init = 'none';
      f.finSentAt = null;
      this.clearInflight(f);
    }
  }

  /** What has waited for an answer since `cutoff` or longer goes again; returns how many. */
  expire(cutoff: number): number {
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
    return due;
  }

  /** The next range nobody has confirmed and nothing is carrying, cut to the segment size. */
  nextSegment(f: FileUnderWay): Range | null {
    const out = [...f.inflight].map(([s, { end }]): Range => [s, end]);
    const gap = missingRanges(unionRanges(f.confirmed, out), f.rec.size)[0];
    if (!gap) return null;
    return [gap[0], Math.min(gap[1], gap[0] + this.o.segmentBytes)];
  }

  addInflight(f: FileUnderWay, [s, e]: Range): void {
    f.inflight.set(s, { end: e, sentAt: Date.now() });
    this.segmentsOut++;
    this.bytesOut += e - s;
  }

  clearInflight(f: FileUnderWay, only?: (offset: number, end: number) => boolean): void {
    for (const [offset, s] of f.inflight) {
      if (only && !only(offset, s.end)) continue;
      f.inflight.delete(offset);
      this.segmentsOut--;
      this.bytesOut -= s.end - offset;
    }
  }

  private saveProgress(f: FileUnderWay): void {
    f.rec.confirmed = f.confirmed;
    f.rec.updatedMs = Date.now();
    // Losing this to a power cut only makes the bus ask dispatch again which ranges it holds.
    this.o.store.update(f.rec.id, f.rec);
  }

  confirm(f: FileUnderWay, have: readonly Range[], replace: boolean): void {
    const next = replace ? normalizeRanges(have) : unionRanges(f.confirmed, have);
    const changed = JSON.stringify(next) !== JSON.stringify(f.confirmed);
    f.confirmed = next;
    this.clearInflight(f, (s, e) => containsRange(next, [s, e]));
    if (changed) this.saveProgress(f);
  }

  deliver(f: FileUnderWay): void {
    this.clearInflight(f);
    this.active.delete(f.rec.id);
    const all: Range[] = f.rec.size > 0 ? [[0, f.rec.size]] : [];
    // fsync'd before anyone deletes the file on the strength of it.
    const file = toQueued(this.o.store.finish(f.rec.id, 'delivered', null, all, Date.now())!);
    this.o.log.info(
      { event: 'file.delivered', fileId: file.id, kind: file.kind, alarmId: file.alarmId, fileName: file.name, size: file.size, restarts: file.restarts },
      `${file.kind} ${file.name} delivered`,
    );
    this.o.events.emit('delivered', file);
    this.o.kick();
  }

  fail(f: FileUnderWay, reason: string): void {
    if (!this.active.has(f.rec.id)) return;
    this.clearInflight(f);
    this.active.delete(f.rec.id);
    const file = toQueued(this.o.store.finish(f.rec.id, 'failed', reason, f.confirmed, Date.now())!);
    this.o.log.error({ event: 'file.failed', fileId: file.id, kind: file.kind, alarmId: file.alarmId, path: file.path, reason }, `${file.kind} ${file.name} not sent: ${reason}`);
    this.o.events.emit('failed', file);
    this.o.kick();
  }

  /** A whole-file re-send: check our own copy first, since the fault may be on this disk. */
  restart(f: FileUnderWay, why: string): void {
    f.rec.restarts++;
    if (f.rec.restarts > this.o.maxRestarts) {
      this.fail(f, `${why}; gave up after ${this.o.maxRestarts} whole-file re-sends`);
      return;
    }
    this.o.log.warn({ event: 'file.restart', fileId: f.rec.id, restarts: f.rec.restarts, reason: why }, 'sending the whole file again');
    f.verified = 'no';
    f.finSentAt = null;
    this.confirm(f, [], true);
    this.saveProgress(f);
  }

  /** Dispatch's word on a file (down/file). */
  applyReceipt(f: FileUnderWay, r: FileReceipt): void {
    this.o.log.debug({ event: 'file.receipt', fileId: r.fileId, state: r.state, attempt: r.attempt, have: r.have, init: r.init }, 'file receipt');
    if (r.state === 'rejected') return this.fail(f, `dispatch refused it: ${r.reason ?? 'no reason given'}`);
    if (r.state === 'unknown') {
      // Dispatch has no record of it (init lost, or its database is new): it holds nothing.
      f.rec.attempt = 0;
      f.init = 'none';
      f.finSentAt = null;
      this.clearInflight(f);
      this.confirm(f, [], true);
      this.saveProgress(f);
      return;
    }
    if (r.attempt < f.rec.attempt) {
      this.o.log.debug({ event: 'file.receipt-stale', fileId: r.fileId, attempt: r.attempt, known: f.rec.attempt }, 'receipt of an earlier attempt ignored');
      return;
    }
    if (r.state === 'complete') return this.deliver(f);
    if (r.init) f.init = 'known';
    if (r.resend) this.clearInflight(f, (s, e) => r.resend!.some(([a, b]) => s < b && a < e));
    if (r.state === 'corrupt') {
      f.rec.attempt = r.attempt;
      return this.restart(f, `dispatch found the file's SHA-256 wrong${r.reason ? ` (${r.reason})` : ''}`);
    }
    if (r.attempt > f.rec.attempt) {
      // A newer attempt at dispatch: what it holds now is the whole truth.
      f.rec.attempt = r.attempt;
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
}
