// Everything but alarms (track, diagnostics, footage answers, statuses, the
// buses' ack receipts), taken off the receiver's bulk connection and
// committed in batches: one transaction for up to sliceMs of work. Between
// slices the event loop is free, so an alarm arriving on the receiver's
// alarm connection is handled within a slice of arriving, whatever backlog
// the fleet has (after a 4G outage every bus sends an hour of track at once).
//
// Durability without blocking: a batch commits without fsync (synchronous
// NORMAL: in the WAL, in the OS's cache), then the WAL file is fdatasync'd on
// libuv's thread pool, and only when that returns do the receipts of every
// batch committed before it go out. Group commit, off the event loop: an
// fsync on the main thread (better-sqlite3 is synchronous) held up every
// alarm behind it (measured: 4 s of a 12 s storm, alarms at 100+ ms). The
// alarm path commits FULL itself, which makes the WAL before it durable too.
// If the WAL's frames were checkpointed into the database meanwhile, SQLite
// synced them there before reusing the WAL.
//
// The broker's PUBACK goes out as soon as a message is queued here: what a
// bus is owed is our receipt, sent only after the commit, and a message lost
// with this process is sent again by its bus. So the queue must not grow
// without bound: past highWater messages the PUBACK is held (mqtt.js reads
// the next packet only after it), the socket fills, and the broker keeps the
// rest in the session's queue until we are below lowWater again.

import { closeSync, fdatasync, openSync } from 'node:fs';
import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { type Db, writeTx } from '../common/sqlite.ts';

export interface BulkIngestOptions<R> {
  db: Db;
  /** Store one message (decode, check, apply, queue its receipt); throwing leaves the others of the batch unharmed. */
  handle: (topic: string, payload: Buffer, arrivedMonoMs: number) => void;
  /** The batch is committed: take its receipts (sent once it is on disk). */
  takeReceipts: () => R;
  /** These receipts' batches are on disk: send them. */
  sendReceipts: (receipts: R) => void;
  log: Logger;
  sliceMs?: number;
  highWater?: number;
  lowWater?: number;
}

interface Queued {
  topic: string;
  payload: Buffer;
  arrivedMonoMs: number;
}

export class BulkIngest<R> {
  private queue: Queued[] = [];
  private head = 0;
  private scheduled = false;
  /** PUBACKs held while the queue is over highWater. */
  private held: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private readonly sliceMs: number;
  private readonly highWater: number;
  private readonly lowWater: number;
  /** Messages committed, and batches (for the fleet bench). */
  readonly stats = { messages: 0, batches: 0, maxQueued: 0 };

  /** Receipts of committed batches waiting for the WAL to be on disk; the fdatasync under way. */
  private awaiting: R[] = [];
  private syncing = false;
  private walFd: number | null = null;

  constructor(private readonly o: BulkIngestOptions<R>) {
    this.sliceMs = o.sliceMs ?? 10;
    this.highWater = o.highWater ?? 5_000;
    this.lowWater = o.lowWater ?? Math.floor(this.highWater / 2);
  }

  get depth(): number {
    return this.queue.length - this.head;
  }

  /** Hold the client's PUBACKs while the queue is full (mqtt.js reads its next packet only after this answers). */
  attach(client: MqttClient): void {
    client.handleMessage = (_packet, callback) => {
      if (this.depth < this.highWater) callback();
      else this.held.push(() => callback());
    };
  }

  push(topic: string, payload: Buffer, arrivedMonoMs = performance.now()): void {
    this.queue.push({ topic, payload, arrivedMonoMs });
    if (this.depth > this.stats.maxQueued) this.stats.maxQueued = this.depth;
    this.schedule();
  }

  /** Resolves when everything queued so far is committed (before the receiver stops). */
  idle(): Promise<void> {
    if (this.isIdle) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** After idle(): let go of the WAL's file descriptor. */
  close(): void {
    if (this.walFd !== null) closeSync(this.walFd);
    this.walFd = null;
  }

  private get isIdle(): boolean {
    return this.depth === 0 && !this.syncing && this.awaiting.length === 0;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.slice());
  }

  private slice(): void {
    this.scheduled = false;
    if (this.depth === 0) return this.settle();
    const t0 = performance.now();
    let n = 0;
    try {
      if (!this.o.db.open) {
        // The store closed under us (stopping): nothing is receipted; the buses send it again.
        this.queue = [];
        this.head = 0;
        return this.settle();
      }
      writeTx(this.o.db, 'NORMAL', () => {
        while (this.head < this.queue.length && (n === 0 || performance.now() - t0 < this.sliceMs)) {
          const m = this.queue[this.head]!;
          this.queue[this.head++] = undefined as unknown as Queued; // let the payload go
          n++;
          try {
            this.o.handle(m.topic, m.payload, m.arrivedMonoMs);
          } catch (err) {
            // The message's own savepoint rolled back; no receipt for it, so its bus sends it again.
            this.o.log.error({ event: 'uplink.store-failed', topic: m.topic, err: (err as Error).message }, 'could not store message; the bus will re-send');
          }
        }
      });
      this.stats.messages += n;
      this.stats.batches++;
      this.awaiting.push(this.o.takeReceipts());
      this.sync();
    } catch (err) {
      this.o.takeReceipts(); // not committed: no receipt
      this.o.log.error({ event: 'uplink.batch-failed', messages: n, err: (err as Error).message }, 'could not commit a batch of uplink messages; their buses will re-send');
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.settle();
    if (this.depth > 0) this.schedule();
  }

  /** fdatasync the WAL (thread pool), then send the receipts of every batch committed before it began. */
  private sync(): void {
    if (this.syncing || this.awaiting.length === 0) return;
    const batches = this.awaiting;
    this.awaiting = [];
    this.syncing = true;
    let fd: number;
    try {
      fd = this.walFd ??= openSync(`${this.o.db.name}-wal`, 'r+');
    } catch (err) {
      this.syncing = false;
      this.o.log.error({ event: 'uplink.sync-failed', err: (err as Error).message }, 'cannot open the WAL to make a batch durable; its buses will re-send');
      return;
    }
    fdatasync(fd, (err) => {
      this.syncing = false;
      if (err) this.o.log.error({ event: 'uplink.sync-failed', err: err.message }, 'fdatasync of the WAL failed; no receipts for its batches, their buses will re-send');
      else for (const r of batches) this.o.sendReceipts(r);
      this.sync();
      this.settle();
    });
  }

  /** Release held PUBACKs below lowWater; wake idle() waiters when empty. */
  private settle(): void {
    if (this.depth <= this.lowWater && this.held.length) {
      const held = this.held;
      this.held = [];
      for (const release of held) release();
    }
    if (this.depth === 0) {
      this.queue = [];
      this.head = 0;
    }
    if (this.isIdle) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
