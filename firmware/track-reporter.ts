// The bus's track: every fix offered to the thinner, the points kept waiting
// in memory, and sent in batches (position.batchMax points a message) every
// position.intervalS; while an emergency is open, every
// position.alarmIntervalS, in the follow-up lane, tagged with the alarm, and
// with the last fix repeated (with its age) when the receiver has gone quiet.
// The lane is chosen here and nowhere else.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { GpsFix } from '../hal/gps/types.ts';
import { laneItem } from '../gateway/lane-item.ts';
import { type Outbox, OutboxFullError } from '../gateway/outbox.ts';
import type { Fix, PositionMessage, TrackPoint } from '../protocol/messages.ts';
import type { VehicleRef } from '../protocol/topics.ts';
import type { GpsClock } from './clock.ts';
import type { AgentConfig } from './config.ts';
import type { DiagInput } from './diagnostics.ts';
import { toFix } from './position.ts';
import { TrackThinner } from './track.ts';

export interface TrackReporterOptions {
  ref: VehicleRef;
  position: AgentConfig['position'];
  outbox: Outbox;
  /** Something was stored: send it when the link allows. */
  kick: () => void;
  clock: GpsClock;
  /** The latest fix with its age, for the repeated point. */
  fix: () => Fix | null;
  /** The open emergency's id, or null. */
  emergency: () => string | null;
  diag: (d: DiagInput) => void;
  log: Logger;
}

export class TrackReporter {
  private readonly thinner: TrackThinner;
  /** Thinned points waiting for the next batch, stamped when the batch is made (a point kept before GPS time was known gets it too). */
  private pending: { mono: number; fix: Fix }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private fast = false;

  constructor(private readonly o: TrackReporterOptions) {
    this.thinner = new TrackThinner(o.position);
  }

  /** A fix from the receiver: kept as a point if the thinning rules say so. */
  offer(f: GpsFix): void {
    const p = this.o.position;
    // Without routine reporting, points are kept only while an emergency is open.
    if (!this.fast && p.intervalS <= 0) return;
    if (!this.thinner.offer(f, this.fast ? p.alarmIntervalS : p.maxGapS)) return;
    this.pending.push({ mono: f.receivedAtMs, fix: toFix(f, p.staleAfterS) });
    // A link down for days must not grow memory without bound: batches go to the outbox, whose quota governs.
    if (this.pending.length >= p.batchMax * 10) this.send();
  }

  /** Follow the alarms: the alarm rate while an emergency is open, the routine rate otherwise. */
  reschedule(): void {
    const fast = this.o.emergency() !== null;
    if (this.timer && fast === this.fast) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.fast = fast;
    const intervalS = fast ? this.o.position.alarmIntervalS : this.o.position.intervalS;
    if (intervalS <= 0) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.send();
      this.reschedule();
    }, intervalS * 1000);
    this.timer.unref();
  }

  /** Stop the timer; what is waiting is stored (a clean stop, the engine switched off with a shutdown, keeps it). */
  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.send();
  }

  /** Move the waiting points into outbox messages. */
  send(): void {
    const alarmId = this.o.emergency();
    if (alarmId && this.pending.length === 0) {
      // The receiver went quiet during an emergency: dispatch keeps hearing where the bus last was.
      const fix = this.o.fix();
      if (fix) this.pending.push({ mono: performance.now(), fix });
    }
    if (this.pending.length === 0) return;
    // Positions while an emergency is open are its follow-ups: their own lane, drained before the routine track.
    const lane = alarmId ? 'followup' : 'track';
    const points: TrackPoint[] = this.pending.map((p) => {
      const stamp = this.o.clock.stampAt(p.mono);
      return { at: stamp.iso, timeSource: stamp.timeSource, fix: p.fix };
    });
    this.pending = [];
    const { batchMax } = this.o.position;
    const batches: PositionMessage[] = [];
    for (let i = 0; i < points.length; i += batchMax) {
      batches.push({ v: 1, id: randomUUID(), fleet: this.o.ref.fleet, vehicle: this.o.ref.vehicle, alarmId, points: points.slice(i, i + batchMax) });
    }
    try {
      this.o.outbox.write(lane, () => {
        for (const msg of batches) this.o.outbox.append(laneItem(this.o.ref, 'position', lane, msg));
      });
    } catch (err) {
      const full = err instanceof OutboxFullError;
      this.o.log.error({ event: 'position.store-failed', lane, points: points.length, err: (err as Error).message }, 'could not store a track batch');
      try {
        this.o.diag({ event: 'dropped', affectedLane: lane, count: batches.length, reason: `${points.length} track points not stored: ${full ? 'outbox full' : (err as Error).message}` });
      } catch {
        // the disk refuses even that: the log line above is all there is
      }
      return;
    }
    this.o.log.debug({ event: 'position.stored', lane, alarmId, points: points.length, batches: batches.length }, 'track batch stored');
    this.o.kick();
  }
}
