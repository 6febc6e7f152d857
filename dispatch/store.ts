// Dispatch's SQLite: alarms and incidents (two queues in one table, told apart
// by kind), positions, and each vehicle's last status. Inserts are idempotent
// on the message id: a bus re-sends until it has our receipt, so the same
// alarm may arrive many times and must take effect once.

import { type Db, migrate, openDatabase } from '../protocol/sqlite.ts';
import type { AlarmKind, AlarmMessage, Fix, PositionMessage, StatusMessage, TimeSource, TrackPoint } from '../protocol/messages.ts';
import type { VehicleRef } from '../protocol/topics.ts';

export interface StoredAlarm {
  id: string;
  kind: AlarmKind;
  fleet: string;
  vehicle: string;
  route: string | null;
  raisedAt: string;
  /** Whether raisedAt was corrected to GPS time on the bus ('gps') or not ('system'). */
  timeSource: TimeSource;
  heldMs: number;
  fix: Fix | null;
  receivedAt: string;
  ackBy: string | null;
  ackAt: string | null;
  /** When the bus confirmed it had the acknowledgement (its LED shows it). */
  ackSeenAt: string | null;
}

const SCHEMA = `
CREATE TABLE alarms (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('emergency', 'incident')),
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  route TEXT,
  raised_at TEXT NOT NULL,
  time_source TEXT NOT NULL,
  held_ms INTEGER NOT NULL,
  fix TEXT,
  received_at TEXT NOT NULL,
  ack_by TEXT,
  ack_at TEXT,
  ack_seen_at TEXT
);
CREATE INDEX alarms_queue ON alarms (kind, ack_at, received_at);
CREATE TABLE positions (
  id TEXT PRIMARY KEY,          -- message id "/" index of the point in it
  message_id TEXT NOT NULL,
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  at TEXT NOT NULL,
  time_source TEXT NOT NULL,
  alarm_id TEXT,
  fix TEXT NOT NULL,
  received_at TEXT NOT NULL
);
CREATE INDEX positions_vehicle ON positions (fleet, vehicle, at);
CREATE TABLE vehicle_status (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  state TEXT NOT NULL,
  at TEXT NOT NULL,
  agent TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle)
);
`;

interface AlarmRow {
  id: string;
  kind: AlarmKind;
  fleet: string;
  vehicle: string;
  route: string | null;
  raised_at: string;
  time_source: TimeSource;
  held_ms: number;
  fix: string | null;
  received_at: string;
  ack_by: string | null;
  ack_at: string | null;
  ack_seen_at: string | null;
}

const toAlarm = (r: AlarmRow): StoredAlarm => ({
  id: r.id,
  kind: r.kind,
  fleet: r.fleet,
  vehicle: r.vehicle,
  route: r.route,
  raisedAt: r.raised_at,
  timeSource: r.time_source,
  heldMs: r.held_ms,
  fix: r.fix ? (JSON.parse(r.fix) as Fix) : null,
  receivedAt: r.received_at,
  ackBy: r.ack_by,
  ackAt: r.ack_at,
  ackSeenAt: r.ack_seen_at,
});

export class DispatchStore {
  readonly db: Db;

  constructor(path: string) {
    this.db = openDatabase(path);
    migrate(this.db, [SCHEMA]);
  }

  /** Returns true when the alarm is new; false for a re-sent duplicate. Committed (fsync) on return. */
  addAlarm(a: AlarmMessage, receivedAt = new Date().toISOString()): boolean {
    const r = this.db
      .prepare(
        `INSERT OR IGNORE INTO alarms (id, kind, fleet, vehicle, route, raised_at, time_source, held_ms, fix, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(a.id, a.kind, a.fleet, a.vehicle, a.route, a.raisedAt, a.timeSource, a.heldMs, a.fix ? JSON.stringify(a.fix) : null, receivedAt);
    return r.changes > 0;
  }

  /** Store every point of a track message in one transaction; returns how many were new. */
  addPosition(p: PositionMessage, receivedAt = new Date().toISOString()): number {
    const insert = this.db.prepare(
      'INSERT OR IGNORE INTO positions (id, message_id, fleet, vehicle, at, time_source, alarm_id, fix, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    return this.db.transaction(() => {
      let added = 0;
      p.points.forEach((pt, i) => {
        added += insert.run(`${p.id}/${i}`, p.id, p.fleet, p.vehicle, pt.at, pt.timeSource, p.alarmId, JSON.stringify(pt.fix), receivedAt).changes;
      });
      return added;
    })();
  }

  setStatus(ref: VehicleRef, s: StatusMessage): void {
    this.db
      .prepare(
        `INSERT INTO vehicle_status (fleet, vehicle, state, at, agent, updated_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (fleet, vehicle) DO UPDATE SET state = excluded.state, at = excluded.at, agent = excluded.agent, updated_at = excluded.updated_at`,
      )
      .run(ref.fleet, ref.vehicle, s.state, s.at, s.agent, new Date().toISOString());
  }

  /** The queue a dispatcher works from: not yet acknowledged, oldest first. */
  openQueue(kind: AlarmKind): StoredAlarm[] {
    return this.db
      .prepare<[string], AlarmRow>('SELECT * FROM alarms WHERE kind = ? AND ack_at IS NULL ORDER BY received_at, id')
      .all(kind)
      .map(toAlarm);
  }

  all(kind: AlarmKind): StoredAlarm[] {
    return this.db.prepare<[string], AlarmRow>('SELECT * FROM alarms WHERE kind = ? ORDER BY received_at, id').all(kind).map(toAlarm);
  }

  get(id: string): StoredAlarm | null {
    const r = this.db.prepare<[string], AlarmRow>('SELECT * FROM alarms WHERE id = ?').get(id);
    return r ? toAlarm(r) : null;
  }

  /** Find by full id or a unique prefix (at least 4 characters), as a dispatcher types it. */
  find(idOrPrefix: string): StoredAlarm {
    const needle = idOrPrefix.trim().toLowerCase();
    if (!/^[0-9a-f-]{4,36}$/.test(needle)) {
      throw new Error(`alarm id "${idOrPrefix}": give the id or at least its first 4 characters (hex), as "busguard dispatch alarms" prints it`);
    }
    const rows = this.db
      .prepare<[string], AlarmRow>("SELECT * FROM alarms WHERE id LIKE ? || '%' ORDER BY received_at LIMIT 5")
      .all(needle);
    if (rows.length === 0) throw new Error(`alarm id "${idOrPrefix}": no such alarm or incident at dispatch`);
    if (rows.length > 1) {
      throw new Error(`alarm id "${idOrPrefix}" is ambiguous: matches ${rows.map((r) => r.id).join(', ')}; type more of it`);
    }
    return toAlarm(rows[0]!);
  }

  /** Record the acknowledgement; false if it was already acknowledged (the first one stands). */
  acknowledge(id: string, by: string, at: string): boolean {
    return this.db.prepare('UPDATE alarms SET ack_by = ?, ack_at = ? WHERE id = ? AND ack_at IS NULL').run(by, at, id).changes > 0;
  }

  markAckSeen(ids: readonly string[], at = new Date().toISOString()): number {
    const stmt = this.db.prepare('UPDATE alarms SET ack_seen_at = ? WHERE id = ? AND ack_at IS NOT NULL AND ack_seen_at IS NULL');
    let n = 0;
    this.db.transaction(() => {
      for (const id of ids) n += stmt.run(at, id).changes;
    })();
    return n;
  }

  /** Acknowledgements the bus has not confirmed yet (to re-send). */
  unseenAcks(ref?: VehicleRef): StoredAlarm[] {
    const sql = 'SELECT * FROM alarms WHERE ack_at IS NOT NULL AND ack_seen_at IS NULL';
    const rows = ref
      ? this.db.prepare<[string, string], AlarmRow>(`${sql} AND fleet = ? AND vehicle = ?`).all(ref.fleet, ref.vehicle)
      : this.db.prepare<[], AlarmRow>(sql).all();
    return rows.map(toAlarm);
  }

  /** A vehicle's track points, oldest first; only those sent while alarmId was open when given. */
  positions(ref: VehicleRef, alarmId?: string): (TrackPoint & { alarmId: string | null })[] {
    const rows = this.db
      .prepare<[string, string], { at: string; time_source: TimeSource; alarm_id: string | null; fix: string }>(
        'SELECT at, time_source, alarm_id, fix FROM positions WHERE fleet = ? AND vehicle = ? ORDER BY at',
      )
      .all(ref.fleet, ref.vehicle);
    return rows
      .filter((r) => alarmId === undefined || r.alarm_id === alarmId)
      .map((r) => ({ at: r.at, timeSource: r.time_source, alarmId: r.alarm_id, fix: JSON.parse(r.fix) as Fix }));
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
