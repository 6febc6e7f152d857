// The bus's own record of its alarms and where each one is on its journey:
// stored → delivered (dispatch's receipt) → acknowledged (a dispatcher).
// It lives in the outbox's SQLite file so an alarm and its outbox row are
// committed in one transaction, and the LED comes back right after a restart.
// Every change is committed with fsync (FULL) whatever the last write on the
// connection was: the bus tells dispatch it has an acknowledgement once it is
// recorded here, and dispatch stops re-sending it then, so a change lost to a
// power cut would leave the alarm open for ever (see common/sqlite.ts).

import { type Db, writeTx } from '../common/sqlite.ts';
import type { AlarmKind } from '../protocol/messages.ts';

export type JourneyState = 'stored' | 'delivered' | 'acknowledged';

export interface JournalEntry {
  id: string;
  kind: AlarmKind;
  raisedAt: string;
  /** The state of the latest press: a repeated press is 'stored' again until dispatch has it. */
  state: JourneyState;
  /** Presses of the button for this alarm, the first included. */
  presses: number;
  deliveredAt: string | null;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
}

export const JOURNAL_SCHEMA = `
CREATE TABLE IF NOT EXISTS alarms (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  raised_at TEXT NOT NULL,
  state TEXT NOT NULL,
  delivered_at TEXT,
  acknowledged_at TEXT,
  acknowledged_by TEXT
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (state) WHERE state != 'acknowledged';
`;

/** A later migrate step: presses repeated while the alarm is open (up/repeat). */
export const JOURNAL_REPEATS_SCHEMA = `
ALTER TABLE alarms ADD COLUMN presses INTEGER NOT NULL DEFAULT 1;
ALTER TABLE alarms ADD COLUMN pending_repeat TEXT;
`;

interface Row {
  id: string;
  kind: AlarmKind;
  raised_at: string;
  state: JourneyState;
  delivered_at: string | null;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  presses: number;
  pending_repeat: string | null;
}

const toEntry = (r: Row): JournalEntry => ({
  id: r.id,
  kind: r.kind,
  raisedAt: r.raised_at,
  state: r.state,
  presses: r.presses,
  deliveredAt: r.delivered_at,
  acknowledgedAt: r.acknowledged_at,
  acknowledgedBy: r.acknowledged_by,
});

export class AlarmJournal {
  constructor(private readonly db: Db) {}

  insert(e: { id: string; kind: AlarmKind; raisedAt: string }): void {
    writeTx(this.db, 'FULL', () =>
      this.db.prepare("INSERT INTO alarms (id, kind, raised_at, state) VALUES (?, ?, ?, 'stored')").run(e.id, e.kind, e.raisedAt),
    );
  }

  /** Alarms not yet acknowledged, newest first. */
  open(kind?: AlarmKind): JournalEntry[] {
    const rows = kind
      ? this.db.prepare<[string], Row>("SELECT * FROM alarms WHERE state != 'acknowledged' AND kind = ? ORDER BY raised_at DESC").all(kind)
      : this.db.prepare<[], Row>("SELECT * FROM alarms WHERE state != 'acknowledged' ORDER BY raised_at DESC").all();
    return rows.map(toEntry);
  }

  get(id: string): JournalEntry | null {
    const r = this.db.prepare<[string], Row>('SELECT * FROM alarms WHERE id = ?').get(id);
    return r ? toEntry(r) : null;
  }

  /** The most recent acknowledged alarm, of one kind or any (for the LED, also after a restart). */
  lastAcknowledged(kind?: AlarmKind): JournalEntry | null {
    const r = kind
      ? this.db.prepare<[string], Row>("SELECT * FROM alarms WHERE state = 'acknowledged' AND kind = ? ORDER BY acknowledged_at DESC LIMIT 1").get(kind)
      : this.db.prepare<[], Row>("SELECT * FROM alarms WHERE state = 'acknowledged' ORDER BY acknowledged_at DESC LIMIT 1").get();
    return r ? toEntry(r) : null;
  }

  /**
   * The driver pressed again while this alarm is open: count the press and
   * show it as 'stored' until dispatch has the repeat (`repeatId`). Call
   * inside the outbox write that stores the repeat. Returns the press count.
   */
  repeat(id: string, repeatId: string): number {
    const r = writeTx(this.db, 'FULL', () =>
      this.db
        .prepare("UPDATE alarms SET presses = presses + 1, pending_repeat = ?, state = 'stored' WHERE id = ? AND state != 'acknowledged' RETURNING presses")
        .get(repeatId, id),
    ) as { presses: number } | undefined;
    if (!r) throw new Error(`alarm ${id} is not open: cannot repeat it`);
    return r.presses;
  }

  /**
   * Dispatch holds these messages (alarm ids, repeat ids): an alarm whose
   * latest press is now at dispatch becomes 'delivered'. Returns the alarms
   * changed.
   */
  markDelivered(ids: readonly string[], at: string): string[] {
    const first = this.db.prepare('UPDATE alarms SET delivered_at = COALESCE(delivered_at, ?) WHERE id = ?');
    const alarm = this.db.prepare("UPDATE alarms SET state = 'delivered' WHERE id = ? AND state = 'stored' AND pending_repeat IS NULL");
    const repeat = this.db.prepare(
      "UPDATE alarms SET pending_repeat = NULL, state = CASE WHEN state = 'stored' AND delivered_at IS NOT NULL THEN 'delivered' ELSE state END WHERE pending_repeat = ? RETURNING id, state",
    );
    const changed: string[] = [];
    writeTx(this.db, 'FULL', () => {
      for (const id of ids) {
        first.run(at, id);
        if (alarm.run(id).changes > 0) changed.push(id);
        const r = repeat.get(id) as { id: string; state: JourneyState } | undefined;
        if (r?.state === 'delivered') changed.push(r.id);
      }
    });
    return changed;
  }

  /** Returns false when the alarm is unknown or already acknowledged (a re-sent ack). */
  markAcknowledged(id: string, by: string, at: string): boolean {
    const r = writeTx(this.db, 'FULL', () =>
      this.db
        .prepare(
          "UPDATE alarms SET state = 'acknowledged', delivered_at = COALESCE(delivered_at, ?), acknowledged_at = ?, acknowledged_by = ? WHERE id = ? AND state != 'acknowledged'",
        )
        .run(at, at, by, id),
    );
    return r.changes > 0;
  }
}
