// Everything but alarms (track, diagnostics, footage answers, statuses, the
// buses' ack receipts), taken off the receiver's bulk connection and
// committed in batches: one transaction (one fsync) for up to a slice of
// sliceMs of work, then its receipts. Between slices the event loop is free,
// so an alarm arriving on the receiver's alarm connection is handled within a
// slice of arriving, whatever backlog the fleet has (after a 4G outage every
// bus sends an hour of track at once).
//
// The broker's PUBACK goes out as soon as a message is queued here: what a
// bus is owed is our receipt, sent only after the commit, and a message lost
// with this process is sent again by its bus. So the queue must not grow
// without bound: past highWater messages the PUBACK is held (mqtt.js reads
// the next packet only after it), the socket fills, and the broker keeps the
// rest in the session's queue until we are below lowWater again.

import type { MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { type Db, writeTx } from '../common/sqlite.ts';

export interface BulkIngestOptions {
  db: Db;
  /** Store one message (decode, check, apply, queue its receipt); throwing leaves the others of the batch unharmed. */
  handle: (topic: string, payload: Buffer, arrivedMonoMs: number) => void;
  /** The batch is committed: send its receipts. */
  committed: () => void;
  /** The batch could not be committed: forget its receipts (the buses send it all again). */
  failed: () => void;
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

export class BulkIngest {
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

  constructor(private readonly o: BulkIngestOptions) {
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
    if (this.depth === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
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
      writeTx(this.o.db, 'FULL', () => {
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
      this.o.committed();
    } catch (err) {
      this.o.failed();
      this.o.log.error({ event: 'uplink.batch-failed', messages: n, err: (err as Error).message }, 'could not commit a batch of uplink messages; their buses will re-send');
    }
    if (this.head > 4096 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    this.settle();
    if (this.depth > 0) this.schedule();
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
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
