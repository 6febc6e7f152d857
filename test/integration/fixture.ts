// One simulated bus and one dispatch receiver as real processes, for the
// integration tests: the testbed every test, bench and chaos run share
// (scripts/lib/testbed.ts), plus what a person does to it (hold the button,
// acknowledge at dispatch) and what the tests read from dispatch's database
// as a dispatcher's tool would.

import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { SimOptions } from '../../hal/gps/route-sim.ts';
import { simPress } from '../../hal/panel/sim-client.ts';
import { DISPATCH_KEY_ID, Testbed } from '../../scripts/lib/testbed.ts';
import { signCommand } from '../../protocol/signed-command.ts';
import type { DownlinkKind } from '../../protocol/topics.ts';
import type { StoredAlarm } from '../../dispatch/store.ts';
import { type LogLine, busguardRun } from '../helpers/process.ts';

export { until } from '../../scripts/lib/until.ts';

/** A row of dispatch's evidence_files, under the table's own column names. */
export interface EvidenceFileRow {
  file_id: string;
  name: string;
  sha256: string;
  size: number;
  kind: string;
  alarm_id: string;
  geotag: string;
  state: string;
  path: string;
}

/** An alarm raised by a hold: its id, dispatch's emergency.received line, and log marks from before the press. */
export interface HeldAlarm {
  alarmId: string;
  received: LogLine;
  /** The agent's log before the press. */
  from: number;
  /** Dispatch's log before the press. */
  dFrom: number;
}

export class BusFixture extends Testbed {
  /** Start with these agent config keys over the testbed's defaults, and these GPS simulator options. */
  override async start(agentOverrides: Record<string, unknown> = {}, opts: { gps?: Partial<SimOptions> } = {}): Promise<this> {
    this.o = { ...this.o, agent: agentOverrides, ...(opts.gps ? { gps: opts.gps } : {}) };
    return super.start();
  }

  /** Press and hold; return the agent's alarm.stored line for it. */
  async holdAndStore(holdMs = 600): Promise<LogLine> {
    const from = this.agent.mark();
    await simPress(this.socket, { holdMs });
    return this.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
  }

  /**
   * Hold the panic button past the hold time; wait until the agent has stored
   * the alarm and dispatch has received it. `onStored` runs in between, at once
   * (to break something during the post-roll).
   */
  async holdToDispatch(o: { receivedWithinMs?: number; onStored?: () => void } = {}): Promise<HeldAlarm> {
    const from = this.agent.mark();
    const dFrom = this.dispatch.mark();
    await simPress(this.socket, { holdMs: 600 });
    const stored = await this.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
    const alarmId = stored.alarmId as string;
    o.onStored?.();
    const received = await this.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === alarmId, o.receivedWithinMs ?? 10_000, dFrom);
    return { alarmId, received, from, dFrom };
  }

  /** Read dispatch's SQLite as a dispatcher's tool would (a second connection). */
  dispatchAlarms(kind?: 'emergency' | 'incident'): StoredAlarm[] {
    const rows = this.readDispatch(
      (db) => db.prepare('SELECT id, kind, fleet, vehicle, fix, ack_at AS ackAt, ack_seen_at AS ackSeenAt FROM alarms ORDER BY received_at').all() as (StoredAlarm & { fix: string | null })[],
    );
    return rows.map((r) => ({ ...r, fix: r.fix ? JSON.parse(r.fix) : null })).filter((r) => kind === undefined || r.kind === kind);
  }

  /** Track points at dispatch (all, or those sent while alarmId was open), with the message each came in. */
  dispatchPositions(alarmId?: string): { id: string; messageId: string; at: string; timeSource: string; fix: { lat: number; lon: number } }[] {
    const sql = 'SELECT id, message_id AS messageId, at, time_source AS timeSource, fix FROM positions';
    const rows = this.readDispatch(
      (db) =>
        (alarmId === undefined ? db.prepare(`${sql} ORDER BY at`).all() : db.prepare(`${sql} WHERE alarm_id = ? ORDER BY at`).all(alarmId)) as {
          id: string;
          messageId: string;
          at: string;
          timeSource: string;
          fix: string;
        }[],
    );
    return rows.map((r) => ({ ...r, fix: JSON.parse(r.fix) as { lat: number; lon: number } }));
  }

  /** The evidence files of one kind dispatch holds for an alarm, by name. */
  evidenceFiles(alarmId: string, kind: 'snapshot' | 'clip'): EvidenceFileRow[] {
    return this.readDispatch((db) => db.prepare('SELECT * FROM evidence_files WHERE alarm_id = ? AND kind = ? ORDER BY name').all(alarmId, kind) as EvidenceFileRow[]);
  }

  /** A command signed with this testbed's dispatch key for its bus, as dispatch sends it (protocol/signed-command.ts). */
  signed(kind: DownlinkKind, message: object): Buffer {
    const privateKey = createPrivateKey(readFileSync(this.dispatchKey.privateKeyFile));
    return signCommand({ keyId: DISPATCH_KEY_ID, privateKey, by: 'test@dispatch' }, kind, { fleet: 'city', vehicle: this.o.vehicle ?? 'bus-1' }, message, new Date(), 3600);
  }

  async ack(id: string): Promise<string> {
    // --wait 0: recorded, and sent by the running receiver; what reaches the bus, each test waits for itself.
    const r = await busguardRun(['dispatch', 'ack', id, '--config', this.dispatchConfigPath, '--by', 'officer-7', '--wait', '0']);
    if (r.code !== 0) throw new Error(`dispatch ack failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  /** Acknowledge at dispatch and wait until the agent has the ack. */
  async ackAndSee(alarmId: string, withinMs = 15_000): Promise<void> {
    const from = this.agent.mark();
    await this.ack(alarmId);
    await this.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === alarmId, withinMs, from);
  }

  private readDispatch<T>(read: (db: Database.Database) => T): T {
    const db = new Database(this.dispatchDb, { readonly: true, fileMustExist: true });
    try {
      return read(db);
    } finally {
      db.close();
    }
  }
}
