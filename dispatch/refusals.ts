// Every message dispatch refuses from a vehicle is recorded as a diagnostic of
// that vehicle (`dispatch.refused` in the diags table, beside what buses
// report themselves), so a fleet operator sees a broken or hostile bus in
// dispatch's data and not only in its log. One row per vehicle per minute at
// most, counting the refusals it folds in: a bus sending garbage as fast as
// it can adds a row a minute, not a row a message.

import { randomUUID } from 'node:crypto';
import type { Db } from '../common/sqlite.ts';
import { ID_PATTERN, ROOT, VERSION, type VehicleRef } from '../protocol/topics.ts';

const WINDOW_MS = 60_000;

export class RefusalLog {
  private readonly open = new Map<string, { id: string; since: number }>();

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
      this.db.prepare('UPDATE diags SET count = count + 1, reason = ? WHERE fleet = ? AND vehicle = ? AND id = ?').run(text, ref.fleet, ref.vehicle, cur.id);
      return;
    }
    const id = randomUUID();
    const at = new Date(t).toISOString();
    this.db
      .prepare("INSERT INTO diags (id, fleet, vehicle, at, event, lane, count, bytes, ranges, reason, received_at) VALUES (?, ?, ?, ?, 'dispatch.refused', NULL, 1, NULL, NULL, ?, ?)")
      .run(id, ref.fleet, ref.vehicle, at, text, at);
    this.open.set(key, { id, since: t });
    // Vehicles quiet for a window are forgotten: the map holds only the ones refusing now.
    if (this.open.size > 1000) for (const [k, v] of this.open) if (t - v.since >= WINDOW_MS) this.open.delete(k);
  }
}
