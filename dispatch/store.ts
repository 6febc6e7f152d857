// Dispatch's SQLite: alarms and incidents (two queues in one table, told apart
// by kind), positions, and each vehicle's last status. Inserts are idempotent
// on the message id: a bus re-sends until it has our receipt, so the same
// alarm may arrive many times and must take effect once.

import { randomBytes } from 'node:crypto';
import { type Db, joinTx, migrate, openDatabase } from '../common/sqlite.ts';
import { DISPATCH_FILES_SCHEMA } from './files.ts';
import { SIGNATURES_SCHEMA } from './signatures.ts';
import { META_SCHEMA, PENDING_SCHEMA, PERSONAL_COMMANDS_SCHEMA, REPEATS_SCHEMA, TRACK_BATCHES_SCHEMA, VEHICLE_KEYS_SCHEMA } from './store-schema.ts';
import { VEHICLES_SCHEMA, VehicleBook } from './vehicles.ts';
import { RECEIVERS_SCHEMA } from './receivers.ts';
import { RETENTION_SCHEMA } from './retention.ts';
import { DISPATCH_FOOTAGE_CAMERAS_SCHEMA, DISPATCH_FOOTAGE_SCHEMA, FootageBook } from './footage.ts';
import type Database from 'better-sqlite3';
import type { AlarmKind, AlarmMessage, DiagMessage, Envelope, Fix, PositionMessage, RepeatMessage, TimeSource, TrackPoint } from '../protocol/messages.ts';
import type { Lane } from '../protocol/lanes.ts';
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
  /** The acknowledgement as its person signed it, sent as is while valid (null: the receiver signs it in their name). */
  ackCommand: string | null;
  /** Presses of the button while this alarm was open, after the first (each may be an escalation). */
  repeats: number;
  /** When the last of them was made (bus time). */
  lastRepeatAt: string | null;
}


/** Per vehicle, outbox epoch and lane: everything up to `upto` is held; seqs above it seen so far. */
const LANE_SCHEMA = `
CREATE TABLE lane_progress (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  epoch TEXT NOT NULL,
  lane TEXT NOT NULL,
  upto INTEGER NOT NULL,
  PRIMARY KEY (fleet, vehicle, epoch, lane)
);
CREATE TABLE lane_seen (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  epoch TEXT NOT NULL,
  lane TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY (fleet, vehicle, epoch, lane, seq)
);
CREATE TABLE diags (
  id TEXT PRIMARY KEY,
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  at TEXT NOT NULL,
  event TEXT NOT NULL,
  lane TEXT,
  count INTEGER,
  bytes INTEGER,
  ranges TEXT,
  reason TEXT NOT NULL,
  received_at TEXT NOT NULL
);
`;


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
  lane TEXT,                    -- track or followup, and the message's seq in it (null for seq 0)
  seq INTEGER,
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
  ack_command: string | null;
  repeats: number;
  last_repeat_at: string | null;
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
  ackCommand: r.ack_command ?? null,
  repeats: r.repeats,
  lastRepeatAt: r.last_repeat_at,
});

export class DispatchStore {
  readonly db: Db;
  /** Footage requests to buses and their answers. */
  readonly footage: FootageBook;
  /** The vehicle table: status, health, faults, registration (dispatch/vehicles.ts). */
  readonly vehicles: VehicleBook;

  /** `mustExist`: for the commands that work on what a receiver stored: a missing file is an error, never a new empty database. */
  constructor(path: string, opts: { mustExist?: boolean } = {}) {
    this.db = openDatabase(path, { mustExist: opts.mustExist === true });
    migrate(this.db, [SCHEMA + LANE_SCHEMA, DISPATCH_FILES_SCHEMA, DISPATCH_FOOTAGE_SCHEMA, DISPATCH_FOOTAGE_CAMERAS_SCHEMA, REPEATS_SCHEMA, META_SCHEMA, PENDING_SCHEMA, SIGNATURES_SCHEMA, VEHICLE_KEYS_SCHEMA, PERSONAL_COMMANDS_SCHEMA, VEHICLES_SCHEMA, RECEIVERS_SCHEMA, TRACK_BATCHES_SCHEMA, RETENTION_SCHEMA]);
    this.footage = new FootageBook(this.db);
    this.vehicles = new VehicleBook(this.db);
  }

  /**
   * Take one lane message exactly once: in one transaction, decide whether
   * (vehicle, epoch, lane, seq) is new, run `apply` (which stores its effect)
   * only if it is, and advance the lane's "everything up to" mark, which is
   * what the receipt tells the bus. A message with seq 0 (the bus could not
   * store it) is applied each time; `apply` must be idempotent for it.
   */
  accept(ref: VehicleRef, env: Envelope, apply: () => void): { fresh: boolean; upTo: number } {
    return joinTx(this.db, 'FULL', () => {
      const key = [ref.fleet, ref.vehicle, env.epoch, env.lane] as const;
      const current = this.q.progress.get(...key)?.upto ?? 0;
      if (env.seq === 0) {
        apply();
        return { fresh: true, upTo: current };
      }
      // The common case, in order (the next seq, nothing above it seen): no row in lane_seen to add and
      // delete again, so the commit writes fewer pages (and its fsync is shorter) on the alarm's path.
      if (env.seq === current + 1 && env.floor - 1 <= env.seq && !this.q.isSeen.get(...key, env.seq + 1)) {
        apply();
        this.q.setProgress.run(...key, env.seq);
        return { fresh: true, upTo: env.seq };
      }
      let fresh = false;
      if (env.seq > current && this.q.seen.run(...key, env.seq).changes > 0) {
        apply();
        fresh = true;
      }
      // Everything below the bus's floor is settled on its side; then close up any run of seen seqs.
      let upTo = Math.max(current, env.floor - 1);
      while (this.q.isSeen.get(...key, upTo + 1)) upTo++;
      if (upTo !== current) {
        this.q.setProgress.run(...key, upTo);
        this.q.forget.run(...key, upTo);
      }
      return { fresh, upTo };
    });
  }

  /** Store a diagnostics record from a bus (idempotent). */
  addDiag(d: DiagMessage, receivedAt = new Date().toISOString()): boolean {
    return (
      this.db
        .prepare(
          'INSERT OR IGNORE INTO diags (id, fleet, vehicle, at, event, lane, count, bytes, ranges, reason, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
        )
        .run(d.id, d.fleet, d.vehicle, d.at, d.event, d.affectedLane ?? null, d.count ?? null, d.bytes ?? null, d.ranges ? JSON.stringify(d.ranges) : null, d.reason, receivedAt).changes > 0
    );
  }

  diags(ref?: VehicleRef): DiagMessage[] {
    const rows = this.db.prepare<[], Record<string, unknown>>('SELECT * FROM diags ORDER BY received_at, at').all();
    return rows
      .filter((r) => !ref || (r.fleet === ref.fleet && r.vehicle === ref.vehicle))
      .map((r) => ({
        v: 1 as const,
        id: r.id as string,
        fleet: r.fleet as string,
        vehicle: r.vehicle as string,
        at: r.at as string,
        event: r.event as string,
        ...(r.lane != null ? { affectedLane: r.lane as Lane } : {}),
        ...(r.count != null ? { count: r.count as number } : {}),
        ...(r.bytes != null ? { bytes: r.bytes as number } : {}),
        ...(r.ranges != null ? { ranges: JSON.parse(r.ranges as string) as [number, number][] } : {}),
        reason: r.reason as string,
      }));
  }

  private get q() {
    const db = this.db;
    const cache = (this.stmts ??= {
      progress: db.prepare<[string, string, string, string], { upto: number }>('SELECT upto FROM lane_progress WHERE fleet = ? AND vehicle = ? AND epoch = ? AND lane = ?'),
      setProgress: db.prepare(
        'INSERT INTO lane_progress (fleet, vehicle, epoch, lane, upto) VALUES (?, ?, ?, ?, ?) ON CONFLICT (fleet, vehicle, epoch, lane) DO UPDATE SET upto = excluded.upto',
      ),
      seen: db.prepare('INSERT OR IGNORE INTO lane_seen (fleet, vehicle, epoch, lane, seq) VALUES (?, ?, ?, ?, ?)'),
      isSeen: db.prepare<[string, string, string, string, number], { x: number }>(
        'SELECT 1 AS x FROM lane_seen WHERE fleet = ? AND vehicle = ? AND epoch = ? AND lane = ? AND seq = ?',
      ),
      forget: db.prepare('DELETE FROM lane_seen WHERE fleet = ? AND vehicle = ? AND epoch = ? AND lane = ? AND seq <= ?'),
    });
    return cache;
  }
  private stmts: {
    progress: Database.Statement<[string, string, string, string], { upto: number }>;
    setProgress: Database.Statement;
    seen: Database.Statement;
    isSeen: Database.Statement<[string, string, string, string, number], { x: number }>;
    forget: Database.Statement;
  } | undefined;

  /** Returns true when the alarm is new; false for a re-sent duplicate. Committed (fsync) on return. */
  addAlarm(a: AlarmMessage, receivedAt = new Date().toISOString()): boolean {
    const r = this.alarmStmts.insert.run(a.id, a.kind, a.fleet, a.vehicle, a.route, a.raisedAt, a.timeSource, a.heldMs, a.fix ? JSON.stringify(a.fix) : null, receivedAt);
    // Repeats that arrived before their alarm (re-sent out of order): rare, so only looked for, not recounted.
    if (r.changes > 0 && this.alarmStmts.anyRepeat.get(a.fleet, a.vehicle, a.id)) this.countRepeats(a, a.id);
    return r.changes > 0;
  }

  /** The statements of the alarm's path, prepared once. */
  private get alarmStmts() {
    return (this.alarmStmtCache ??= {
      insert: this.db.prepare(
        `INSERT OR IGNORE INTO alarms (id, kind, fleet, vehicle, route, raised_at, time_source, held_ms, fix, received_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      anyRepeat: this.db.prepare<[string, string, string], { x: number }>('SELECT 1 AS x FROM alarm_repeats WHERE fleet = ? AND vehicle = ? AND alarm_id = ? LIMIT 1'),
    });
  }
  private alarmStmtCache: { insert: Database.Statement; anyRepeat: Database.Statement<[string, string, string], { x: number }> } | undefined;

  /**
   * Store a repeated press (idempotent by its vehicle and id). Returns 'new',
   * 'duplicate', or the reason it is refused: a repeat of an alarm of another
   * kind changes nothing; a repeat names only its own vehicle's alarms (another
   * vehicle's with the same id are not even seen). A repeat of an alarm not
   * (yet) here is kept: the alarm follows in the same lane.
   */
  addRepeat(r: RepeatMessage, receivedAt = new Date().toISOString()): 'new' | 'duplicate' | { refused: string } {
    const alarm = this.get(r.alarmId, r);
    if (alarm && alarm.kind !== r.kind) return { refused: `alarm ${r.alarmId} is an ${alarm.kind}, the repeat says ${r.kind}` };
    const fresh =
      this.db
        .prepare('INSERT OR IGNORE INTO alarm_repeats (id, alarm_id, fleet, vehicle, at, held_ms, count, fix, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(r.id, r.alarmId, r.fleet, r.vehicle, r.at, r.heldMs, r.count, r.fix ? JSON.stringify(r.fix) : null, receivedAt).changes > 0;
    if (fresh) this.countRepeats(r, r.alarmId);
    return fresh ? 'new' : 'duplicate';
  }

  private countRepeats(ref: VehicleRef, alarmId: string): void {
    const mine = 'fleet = @fleet AND vehicle = @vehicle';
    this.db
      .prepare(
        `UPDATE alarms SET repeats = (SELECT count(*) FROM alarm_repeats WHERE ${mine} AND alarm_id = @id), last_repeat_at = (SELECT max(at) FROM alarm_repeats WHERE ${mine} AND alarm_id = @id) WHERE ${mine} AND id = @id`,
      )
      .run({ id: alarmId, fleet: ref.fleet, vehicle: ref.vehicle });
  }

  /** Store a track message (its points in one row, dispatch/store-schema.ts); returns how many points were new. */
  addPosition(p: PositionMessage & Partial<Envelope>, receivedAt = new Date().toISOString()): number {
    const insert = (this.insertPosition ??= this.db.prepare(
      `INSERT OR IGNORE INTO track_batches (fleet, vehicle, message_id, lane, seq, alarm_id, first_at, last_at, count, points, received_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ));
    let first = p.points[0]!.at;
    let last = first;
    for (const pt of p.points) {
      if (pt.at < first) first = pt.at;
      if (pt.at > last) last = pt.at;
    }
    const points = JSON.stringify(p.points.map((pt) => ({ at: pt.at, timeSource: pt.timeSource, fix: pt.fix })));
    const fresh = insert.run(p.fleet, p.vehicle, p.id, p.lane ?? null, p.seq || null, p.alarmId, first, last, p.points.length, points, receivedAt).changes > 0;
    return fresh ? p.points.length : 0;
  }

  private insertPosition: Database.Statement | undefined;

  /** Has this dispatch ever heard from the vehicle (a status, an alarm, a position or a file)? */
  knowsVehicle(ref: VehicleRef): boolean {
    const q = (table: string) => this.db.prepare(`SELECT 1 FROM ${table} WHERE fleet = ? AND vehicle = ? LIMIT 1`).get(ref.fleet, ref.vehicle) !== undefined;
    return q('vehicle_status') || q('alarms') || q('positions') || q('evidence_files');
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

  /** A vehicle's alarm; without the vehicle, the first alarm with that id (ids are the buses': two vehicles may share one). */
  get(id: string, ref?: VehicleRef): StoredAlarm | null {
    const r = ref
      ? this.db.prepare<[string, string, string], AlarmRow>('SELECT * FROM alarms WHERE fleet = ? AND vehicle = ? AND id = ?').get(ref.fleet, ref.vehicle, id)
      : this.db.prepare<[string], AlarmRow>('SELECT * FROM alarms WHERE id = ? ORDER BY received_at LIMIT 1').get(id);
    return r ? toAlarm(r) : null;
  }

  /** Find by full id or a unique prefix (at least 4 characters), as a dispatcher types it, optionally as FLEET/VEHICLE/ID. */
  find(idOrPrefix: string): StoredAlarm {
    const parts = idOrPrefix.trim().toLowerCase().split('/');
    const needle = parts.at(-1)!;
    const ref = parts.length === 3 ? { fleet: parts[0]!, vehicle: parts[1]! } : null;
    if (!/^[0-9a-f-]{4,36}$/.test(needle) || (parts.length !== 1 && !ref)) {
      throw new Error(`alarm id "${idOrPrefix}": give the id or at least its first 4 characters (hex), as "busguard dispatch alarms" prints it, or FLEET/VEHICLE/ID`);
    }
    const rows = (
      ref
        ? this.db.prepare<[string, string, string], AlarmRow>("SELECT * FROM alarms WHERE fleet = ? AND vehicle = ? AND id LIKE ? || '%' ORDER BY received_at LIMIT 5").all(ref.fleet, ref.vehicle, needle)
        : this.db.prepare<[string], AlarmRow>("SELECT * FROM alarms WHERE id LIKE ? || '%' ORDER BY received_at LIMIT 5").all(needle)
    );
    if (rows.length === 0) throw new Error(`alarm id "${idOrPrefix}": no such alarm or incident at dispatch`);
    if (rows.length > 1) {
      const sameId = rows.every((r) => r.id === rows[0]!.id);
      throw new Error(`alarm id "${idOrPrefix}" is ambiguous: matches ${rows.map((r) => (sameId ? `${r.fleet}/${r.vehicle}/${r.id}` : r.id)).join(', ')}; ${sameId ? 'give it as FLEET/VEHICLE/ID' : 'type more of it'}`);
    }
    return toAlarm(rows[0]!);
  }

  /** Record the acknowledgement of a vehicle's alarm; false if it was already acknowledged (the first one stands). */
  acknowledge(alarm: VehicleRef & { id: string }, by: string, at: string, command: string | null = null): boolean {
    return (
      this.db
        .prepare('UPDATE alarms SET ack_by = ?, ack_at = ?, ack_command = ? WHERE fleet = ? AND vehicle = ? AND id = ? AND ack_at IS NULL')
        .run(by, at, command, alarm.fleet, alarm.vehicle, alarm.id).changes > 0
    );
  }

  /** The bus has these acknowledgements; only its own alarms (`ref`) are marked. */
  markAckSeen(ids: readonly string[], ref: VehicleRef, at = new Date().toISOString()): number {
    const stmt = this.db.prepare('UPDATE alarms SET ack_seen_at = ? WHERE id = ? AND fleet = ? AND vehicle = ? AND ack_at IS NOT NULL AND ack_seen_at IS NULL');
    let n = 0;
    joinTx(this.db, 'FULL', () => {
      for (const id of ids) n += stmt.run(at, id, ref.fleet, ref.vehicle).changes;
    });
    return n;
  }

  /**
   * Of these alarm ids, those of this vehicle that were acknowledged and seen
   * by the bus: the bus says it does not have the ack after all. Their
   * ack_seen_at is cleared so the acknowledgement is re-sent. Returns them.
   */
  reopenAcks(ref: VehicleRef, ids: readonly string[]): string[] {
    const stmt = this.db.prepare('UPDATE alarms SET ack_seen_at = NULL WHERE id = ? AND fleet = ? AND vehicle = ? AND ack_at IS NOT NULL AND ack_seen_at IS NOT NULL');
    const out: string[] = [];
    joinTx(this.db, 'FULL', () => {
      for (const id of ids) if (stmt.run(id, ref.fleet, ref.vehicle).changes > 0) out.push(id);
    });
    return out;
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
