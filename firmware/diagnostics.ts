// Diagnostics records for dispatch (lane diag, topic up/diag): what the bus
// dropped and why, a camera or a clip that failed, a quota exceeded. Drops of
// one lane during one outage go into one record, amended while it has not
// been published, so the record of what the track lost never grows into a
// flood that crowds out the track.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Eviction, Outbox } from '../gateway/outbox.ts';
import { laneItem } from '../gateway/lane-item.ts';
import { type DiagMessage, encode } from '../protocol/messages.ts';
import type { VehicleRef } from '../protocol/topics.ts';

/** A record as its producer writes it; the envelope (id, vehicle, time) is added here. */
export type DiagInput = Omit<DiagMessage, 'v' | 'id' | 'fleet' | 'vehicle' | 'at'>;

type EvictionRecord = DiagMessage & { count: number; bytes: number; ranges: [number, number][] };

export interface DiagnosticsOptions {
  ref: VehicleRef;
  outbox: Outbox;
  /** Whether the uplink has read a message for sending (an eviction record may be amended only until then: what is sent is what was read). */
  takenForSending: (id: string) => boolean;
  /** Corrected UTC now. */
  now: () => string;
  log: Logger;
}

export class Diagnostics {
  private recordingEviction = false;
  /** The latest eviction record per lane and reason, amended while still unpublished. */
  private readonly evictionRecords = new Map<string, EvictionRecord>();

  constructor(private readonly o: DiagnosticsOptions) {}

  /** Store a record (inside the caller's transaction when there is one). May throw (a failing disk). */
  record(d: DiagInput): void {
    this.append(this.message(d));
  }

  /** What a quota or expiry sweep dropped: logged, and recorded (runs inside the dropping transaction). */
  onEvicted(e: Eviction): void {
    this.o.log.warn({ event: 'outbox.evicted', ...e }, `outbox dropped ${e.count} ${e.lane} message(s) (${e.reason})`);
    // Dropped diagnostics are logged only: recording them would add a record for
    // each one dropped. The record goes to the ledger lane, which is never evicted
    // and drops nothing to get in, so recording an eviction never causes another.
    if (e.lane === 'diag' || this.recordingEviction) return;
    this.recordingEviction = true;
    try {
      const key = `${e.lane}/${e.reason}`;
      const open = this.evictionRecords.get(key);
      if (open && !this.o.takenForSending(open.id) && open.ranges.length < 1000) {
        const last = open.ranges.at(-1);
        if (last && last[1] + 1 === e.seqFrom) last[1] = e.seqTo;
        else open.ranges.push([e.seqFrom, e.seqTo]);
        open.count += e.count;
        open.bytes += e.bytes;
        if (this.o.outbox.replace(open.id, encode(open))) return;
      }
      const msg = this.message({ event: 'evicted', affectedLane: e.lane, count: e.count, bytes: e.bytes, ranges: [[e.seqFrom, e.seqTo]], reason: e.reason });
      this.append(msg, 'ledger');
      this.evictionRecords.set(key, msg as EvictionRecord);
    } catch (err) {
      this.o.log.error({ event: 'diag.store-failed', err: (err as Error).message }, 'could not record the eviction');
    } finally {
      this.recordingEviction = false;
    }
  }

  private message(d: DiagInput): DiagMessage {
    return { v: 1, id: randomUUID(), fleet: this.o.ref.fleet, vehicle: this.o.ref.vehicle, at: this.o.now(), ...d };
  }

  private append(msg: DiagMessage, lane: 'diag' | 'ledger' = 'diag'): void {
    const item = laneItem(this.o.ref, 'diag', lane, msg);
    if (this.o.outbox.inTransaction) this.o.outbox.append(item);
    else this.o.outbox.write(lane, () => this.o.outbox.append(item));
  }
}
