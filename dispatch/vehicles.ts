// The vehicle table: every bus this dispatch knows (registered in the fleet's
// identities file, or heard from), whether it is online, since when, its
// faults and health as it last reported them (protocol/health.ts), its last
// position, and its open alarms. `busguard dispatch vehicles` reads it.
//
// Nothing here costs the ingest path a write: "last seen" follows from the
// status a bus keeps retained on the broker (online since its connect; when
// the broker published its will, offline since then), and the last position
// is read from the track at listing time.

import { type Db, joinTx, writeTx } from '../common/sqlite.ts';
import { type Health, HealthSchema } from '../protocol/health.ts';
import type { Fix, StatusMessage } from '../protocol/messages.ts';
import type { VehicleRef } from '../protocol/topics.ts';

/** Eleventh step: health and faults with the status, the times it changed, and the registered buses. */
export const VEHICLES_SCHEMA = `
ALTER TABLE vehicle_status ADD COLUMN health TEXT;
ALTER TABLE vehicle_status ADD COLUMN faults TEXT NOT NULL DEFAULT '[]';
ALTER TABLE vehicle_status ADD COLUMN since TEXT;
UPDATE vehicle_status SET since = CASE WHEN state = 'online' THEN at ELSE updated_at END;
CREATE TABLE registered_vehicles (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  registered_at TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle)
);
`;

export interface VehicleRow {
  fleet: string;
  vehicle: string;
  /** Listed in the fleet's identities file (dispatch config fleet.identitiesFile). */
  registered: boolean;
  /** 'never-seen': registered, and no status from it yet. */
  state: 'online' | 'offline' | 'never-seen';
  /** Online: since it connected (its own clock); offline: since dispatch heard the broker say so. */
  since: string | null;
  agent: string | null;
  /** Fault codes as it last reported them (kept while it is offline: its last word). */
  faults: string[];
  health: Health | null;
  lastFix: Fix | null;
  lastFixAt: string | null;
  openEmergencies: number;
  openIncidents: number;
  /** Why it is at the top of the list, or null. */
  attention: string | null;
}

interface Row {
  fleet: string;
  vehicle: string;
  registered: number;
  state: 'online' | 'offline' | null;
  since: string | null;
  agent: string | null;
  faults: string | null;
  health: string | null;
  fix: string | null;
  fix_at: string | null;
  emergencies: number;
  incidents: number;
}

const LIST_SQL = `
WITH known AS (SELECT fleet, vehicle FROM vehicle_status UNION SELECT fleet, vehicle FROM registered_vehicles)
SELECT k.fleet, k.vehicle,
  EXISTS (SELECT 1 FROM registered_vehicles r WHERE r.fleet = k.fleet AND r.vehicle = k.vehicle) AS registered,
  s.state, s.since, s.agent, s.faults, s.health,
  (SELECT json_extract(t.points, '$[#-1].fix') FROM track_batches t WHERE t.fleet = k.fleet AND t.vehicle = k.vehicle ORDER BY t.last_at DESC LIMIT 1) AS fix,
  (SELECT t.last_at FROM track_batches t WHERE t.fleet = k.fleet AND t.vehicle = k.vehicle ORDER BY t.last_at DESC LIMIT 1) AS fix_at,
  (SELECT count(*) FROM alarms a WHERE a.fleet = k.fleet AND a.vehicle = k.vehicle AND a.kind = 'emergency' AND a.ack_at IS NULL) AS emergencies,
  (SELECT count(*) FROM alarms a WHERE a.fleet = k.fleet AND a.vehicle = k.vehicle AND a.kind = 'incident' AND a.ack_at IS NULL) AS incidents
FROM known k LEFT JOIN vehicle_status s ON s.fleet = k.fleet AND s.vehicle = k.vehicle
`;

function parseHealth(text: string | null): Health | null {
  if (!text) return null;
  const h = HealthSchema.safeParse(JSON.parse(text));
  return h.success ? h.data : null;
}

/** Most urgent first: offline with an open emergency, an open emergency, faulty or offline, then the rest; by name within each. */
function rank(v: VehicleRow): number {
  if (v.openEmergencies > 0 && v.state !== 'online') return 0;
  if (v.openEmergencies > 0) return 1;
  if (v.faults.length > 0 || v.state === 'offline') return 2;
  return 3;
}

export class VehicleBook {
  constructor(private readonly db: Db) {}

  /**
   * A bus's status. "online" carries when it connected and, from agents that
   * measure it, its health (kept until the next). A retained status the
   * broker hands a reconnecting receiver again changes nothing: "since" moves
   * only when the state (or, online, the connect time) changes.
   */
  setStatus(ref: VehicleRef, s: StatusMessage, receivedAt = new Date().toISOString()): void {
    const since = s.state === 'online' ? s.at : receivedAt;
    // A status is no evidence: without an fsync of its own (inside the bulk batch, it commits with it).
    joinTx(this.db, 'NORMAL', () =>
      this.db
        .prepare(
          `INSERT INTO vehicle_status (fleet, vehicle, state, at, agent, updated_at, health, faults, since) VALUES (@fleet, @vehicle, @state, @at, @agent, @now, @health, @faults, @since)
           ON CONFLICT (fleet, vehicle) DO UPDATE SET
             since = CASE WHEN vehicle_status.state = excluded.state AND vehicle_status.at = excluded.at THEN vehicle_status.since ELSE excluded.since END,
             state = excluded.state, at = excluded.at, agent = excluded.agent, updated_at = excluded.updated_at,
             health = coalesce(excluded.health, vehicle_status.health),
             faults = CASE WHEN excluded.health IS NULL THEN vehicle_status.faults ELSE excluded.faults END`,
        )
        .run({
          fleet: ref.fleet,
          vehicle: ref.vehicle,
          state: s.state,
          at: s.at,
          agent: s.agent,
          now: receivedAt,
          health: s.health ? JSON.stringify(s.health) : null,
          faults: JSON.stringify(s.health?.faults ?? []),
          since,
        }),
    );
  }

  /** Every vehicle with a status, sorted (the footage command's hint). */
  refs(): VehicleRef[] {
    return this.db.prepare<[], VehicleRef>('SELECT fleet, vehicle FROM vehicle_status ORDER BY fleet, vehicle').all();
  }

  /** The fleet's registered buses are exactly these (the identities file, read at the receiver's start). */
  register(refs: readonly VehicleRef[], at = new Date().toISOString()): { added: number; removed: number } {
    return writeTx(this.db, 'FULL', () => {
      const keep = new Set(refs.map((r) => `${r.fleet}/${r.vehicle}`));
      let removed = 0;
      for (const r of this.db.prepare<[], VehicleRef>('SELECT fleet, vehicle FROM registered_vehicles').all()) {
        if (!keep.has(`${r.fleet}/${r.vehicle}`)) removed += this.db.prepare('DELETE FROM registered_vehicles WHERE fleet = ? AND vehicle = ?').run(r.fleet, r.vehicle).changes;
      }
      const insert = this.db.prepare('INSERT OR IGNORE INTO registered_vehicles (fleet, vehicle, registered_at) VALUES (?, ?, ?)');
      let added = 0;
      for (const r of refs) added += insert.run(r.fleet, r.vehicle, at).changes;
      return { added, removed };
    });
  }

  /** The vehicle table, most urgent first (rank), filtered as `busguard dispatch vehicles` asks. */
  list(filter: { offline?: boolean; faulty?: boolean } = {}): VehicleRow[] {
    const rows = this.db.prepare<[], Row>(LIST_SQL).all().map(
      (r): VehicleRow => {
        const state = r.state ?? 'never-seen';
        const v: VehicleRow = {
          fleet: r.fleet,
          vehicle: r.vehicle,
          registered: r.registered === 1,
          state,
          since: r.since,
          agent: r.agent,
          faults: r.faults ? (JSON.parse(r.faults) as string[]) : [],
          health: parseHealth(r.health),
          lastFix: r.fix ? (JSON.parse(r.fix) as Fix) : null,
          lastFixAt: r.fix_at,
          openEmergencies: r.emergencies,
          openIncidents: r.incidents,
          attention: null,
        };
        if (v.openEmergencies > 0) v.attention = state === 'online' ? 'open emergency' : `OFFLINE WITH ${v.openEmergencies} OPEN EMERGENCY${v.openEmergencies > 1 ? ' ALARMS' : ''}`;
        return v;
      },
    );
    return rows
      .filter((v) => (!filter.offline || v.state !== 'online') && (!filter.faulty || v.faults.length > 0))
      .sort((a, b) => rank(a) - rank(b) || a.fleet.localeCompare(b.fleet) || a.vehicle.localeCompare(b.vehicle));
  }
}
