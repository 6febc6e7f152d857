// The receivers running on this dispatch's database, one row per identity,
// refreshed every few seconds while each runs. A second receiver started
// with an identity that is in use (a copied config, a unit file started
// twice) is refused at start with who holds it, instead of the two taking
// the broker session from each other every half second, silently, each
// losing what was in flight. Receivers on other databases (another host's
// SQLite) cannot see this table; where the broker says "session taken over"
// (MQTT 5 DISCONNECT 0x8E) the receiver that lost its session stops
// (dispatch/receiver.ts), but Mosquitto 2.0.11 closes such a session without
// saying why, so there only a shared database tells them apart.

import { hostname } from 'node:os';
import { type Db, writeTx } from '../common/sqlite.ts';

/** Twelfth step of dispatch's schema. */
export const RECEIVERS_SCHEMA = `
CREATE TABLE receivers (
  identity TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at TEXT NOT NULL,
  seen_at TEXT NOT NULL
);
`;

/** How often a running receiver refreshes its row; a row older than three of these is a receiver gone. */
export const RECEIVER_BEAT_MS = 5_000;
const STALE_MS = 3 * RECEIVER_BEAT_MS;

export class DuplicateReceiverError extends Error {
  override readonly name = 'DuplicateReceiverError';
}

interface Row {
  identity: string;
  host: string;
  pid: number;
  started_at: string;
  seen_at: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class ReceiverRegistry {
  private readonly host = hostname();

  constructor(
    private readonly db: Db,
    private readonly now: () => number = Date.now,
  ) {}

  /** Take the identity for this process, or throw saying who holds it. */
  claim(identity: string): void {
    writeTx(this.db, 'FULL', () => {
      const row = this.db.prepare<[string], Row>('SELECT * FROM receivers WHERE identity = ?').get(identity);
      const mine = row && row.host === this.host && row.pid === process.pid;
      // A row of this host whose process is gone (a kill -9) holds nothing, however fresh.
      const held = row && !mine && this.now() - Date.parse(row.seen_at) < STALE_MS && (row.host !== this.host || alive(row.pid));
      if (held) {
        throw new DuplicateReceiverError(
          `receiver identity "${identity}" is in use by the receiver on ${row.host} (pid ${row.pid}, running since ${row.started_at}, last seen ${row.seen_at}): ` +
            'two receivers with one identity would take each other\'s broker session over. Give this one its own: mqtt.username "dispatch/NAME" with its password (busguard broker acl) or certificate',
        );
      }
      const at = new Date(this.now()).toISOString();
      this.db
        .prepare(
          `INSERT INTO receivers (identity, host, pid, started_at, seen_at) VALUES (?, ?, ?, ?, ?)
           ON CONFLICT (identity) DO UPDATE SET host = excluded.host, pid = excluded.pid, started_at = excluded.started_at, seen_at = excluded.seen_at`,
        )
        .run(identity, this.host, process.pid, at, at);
    });
  }

  /** Still here (a lost beat is no evidence: written without fsync). */
  beat(identity: string): void {
    if (!this.db.open) return;
    writeTx(this.db, 'NORMAL', () =>
      this.db.prepare('UPDATE receivers SET seen_at = ? WHERE identity = ? AND host = ? AND pid = ?').run(new Date(this.now()).toISOString(), identity, this.host, process.pid),
    );
  }

  /** Stopped: the identity is free at once. */
  release(identity: string): void {
    writeTx(this.db, 'NORMAL', () => this.db.prepare('DELETE FROM receivers WHERE identity = ? AND host = ? AND pid = ?').run(identity, this.host, process.pid));
  }
}
