// Every message dispatch refuses from a vehicle is recorded as a diagnostic of
// that vehicle (`dispatch.refused` in the diags table, beside what buses
// report themselves), so a fleet operator sees a broken or hostile bus in
// dispatch's data and not only in its log. One row per vehicle per minute at
// most, counting the refusals it folds in, its count written at most once a
// second and without fsync (a count lost in a power cut is a diagnostic, not
// evidence): a bus sending garbage as fast as it can costs dispatch a row a
// minute and a write a second, not a disk flush a message.

import { randomUUID } from 'node:crypto';
import { type Db, writeTx } from '../common/sqlite.ts';
import { ID_PATTERN, ROOT, VERSION, type VehicleRef } from '../protocol/topics.ts';

const WINDOW_MS = 60_000;

export class RefusalLog {
  private readonly open = new Map<string, { ref: VehicleRef; id: string; since: number; count: number; reason: string; dirty: boolean }>();
  private flushTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  /** The vehicle a topic of ours names (from the topic: the broker checked who published it), or null. */
  static vehicleOf(topic: string): VehicleRef | null {
    const [root, version, fleet, vehicle] = topic.split('/');
    return root === ROOT && version === VERSION && fleet && vehicle && ID_PATTERN.test(fleet) && ID_PATTERN.test(vehicle) ? { fleet, vehicle } : null;
  }

  record(topic: string, reason: string): void {
    const ref = RefusalLog.vehicleOf(topic);
    if (!ref) return;
    const key = `${ref.fleet}/${ref.vehicle}`;
    const t = this.now();
    const text = `${topic.split('/').slice(4).join('/')}: ${reason}`.slice(0, 500);
    const cur = this.open.get(key);
    if (cur && t - cur.since < WINDOW_MS) {
      cur.count++;
      cur.reason = text;
      cur.dirty = true;
      this.flushTimer ??= setTimeout(() => this.flush(), 1000).unref();
      return;
    }
    if (cur?.dirty) this.flush();
    const id = randomUUID();
    const at = new Date(t).toISOString();
    writeTx(this.db, 'NORMAL', () =>
      this.db
        .prepare("INSERT INTO diags (id, fleet, vehicle, at, event, lane, count, bytes, ranges, reason, received_at) VALUES (?, ?, ?, ?, 'dispatch.refused', NULL, 1, NULL, NULL, ?, ?)")
        .run(id, ref.fleet, ref.vehicle, at, text, at),
    );
    this.open.set(key, { ref, id, since: t, count: 1, reason: text, dirty: false });
    // Vehicles quiet for a window are forgotten: the map holds only the ones refusing now.
    if (this.open.size > 1000) for (const [k, v] of this.open) if (t - v.since >= WINDOW_MS && !v.dirty) this.open.delete(k);
  }

  /** Write the counts gathered since the last flush (also called before the receiver stops). */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const dirty = [...this.open.values()].filter((v) => v.dirty);
    // Nothing to write, or the store already closed (a count lost is a diagnostic, not evidence).
    if (dirty.length === 0 || !this.db.open) return;
    writeTx(this.db, 'NORMAL', () => {
      const update = this.db.prepare('UPDATE diags SET count = ?, reason = ? WHERE fleet = ? AND vehicle = ? AND id = ?');
      for (const v of dirty) {
        update.run(v.count, v.reason, v.ref.fleet, v.ref.vehicle, v.id);
        v.dirty = false;
      }
    });
  }
}
