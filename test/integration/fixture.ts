// One simulated bus and one dispatch receiver as real processes, for the
// integration tests: the testbed every test, bench and chaos run share
// (scripts/lib/testbed.ts), plus what the tests read from dispatch's
// database as a dispatcher's tool would.

import Database from 'better-sqlite3';
import type { SimOptions } from '../../hal/gps/route-sim.ts';
import { Testbed } from '../../scripts/lib/testbed.ts';
import type { StoredAlarm } from '../../dispatch/store.ts';
import { busguardRun } from '../helpers/process.ts';

export { until } from '../../scripts/lib/until.ts';

export class BusFixture extends Testbed {
  /** Start with these agent config keys over the testbed's defaults, and these GPS simulator options. */
  override async start(agentOverrides: Record<string, unknown> = {}, opts: { gps?: Partial<SimOptions> } = {}): Promise<this> {
    this.o = { ...this.o, agent: agentOverrides, ...(opts.gps ? { gps: opts.gps } : {}) };
    return super.start();
  }

  /** Read dispatch's SQLite as a dispatcher's tool would (a second connection). */
  dispatchAlarms(kind?: 'emergency' | 'incident'): StoredAlarm[] {
    const db = new Database(this.dispatchDb, { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT id, kind, fleet, vehicle, fix, ack_at AS ackAt, ack_seen_at AS ackSeenAt FROM alarms ORDER BY received_at').all() as (StoredAlarm & { fix: string | null })[];
      return rows.map((r) => ({ ...r, fix: r.fix ? JSON.parse(r.fix) : null })).filter((r) => kind === undefined || r.kind === kind);
    } finally {
      db.close();
    }
  }

  /** Track points at dispatch (all, or those sent while alarmId was open), with the message each came in. */
  dispatchPositions(alarmId?: string): { id: string; messageId: string; at: string; timeSource: string; fix: { lat: number; lon: number } }[] {
    const db = new Database(this.dispatchDb, { readonly: true, fileMustExist: true });
    try {
      const sql = 'SELECT id, message_id AS messageId, at, time_source AS timeSource, fix FROM positions';
      const rows = (alarmId === undefined ? db.prepare(`${sql} ORDER BY at`).all() : db.prepare(`${sql} WHERE alarm_id = ? ORDER BY at`).all(alarmId)) as {
        id: string;
        messageId: string;
        at: string;
        timeSource: string;
        fix: string;
      }[];
      return rows.map((r) => ({ ...r, fix: JSON.parse(r.fix) as { lat: number; lon: number } }));
    } finally {
      db.close();
    }
  }

  async ack(id: string): Promise<string> {
    const r = await busguardRun(['dispatch', 'ack', id, '--config', this.dispatchConfigPath, '--by', 'officer-7']);
    if (r.code !== 0) throw new Error(`dispatch ack failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }
}
