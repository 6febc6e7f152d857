// The alarm clips the bus owes dispatch, on disk. A clip cannot be cut until
// its post-roll has been recorded, and an agent stopped in between (an
// attacker who cuts the power right after the press is exactly the case the
// clip is for, a crash, an update) used to forget it although its pinned
// segments were still on disk. So every clip is a row here from the moment
// it is pinned (committed with fsync, in the same breath as the alarm's
// evidence starts) until its MP4 is queued for upload; at start-up every row
// left is cut from what the pin folder and the ring still hold, the clip
// stating the outage the stop caused.
//
// The press is kept in UTC as read now; while this process runs it is a
// monotonic instant, and the row is rewritten when the clock's mapping moves
// (GPS time learned after the press), so a later run cuts the same window.

import type { Fix, TimeSource } from '../protocol/messages.ts';
import { type Db, writeTx } from '../common/sqlite.ts';

/** The agent's migrate step for the table. */
export const CLIP_JOBS_SCHEMA = `
CREATE TABLE alarm_clips (
  alarm_id TEXT NOT NULL,
  camera TEXT NOT NULL,
  kind TEXT NOT NULL,
  press_ms REAL NOT NULL,
  time_source TEXT NOT NULL,
  fix TEXT,
  created_at TEXT NOT NULL,
  PRIMARY KEY (alarm_id, camera)
);
`;

export interface ClipJob {
  alarmId: string;
  camera: string;
  kind: 'emergency' | 'incident';
  /** UTC of the press, by the clock when it was last written. */
  pressMs: number;
  timeSource: TimeSource;
  fix: Fix | null;
  createdAt: string;
}

interface Row {
  alarm_id: string;
  camera: string;
  kind: 'emergency' | 'incident';
  press_ms: number;
  time_source: TimeSource;
  fix: string | null;
  created_at: string;
}

export class ClipJobBook {
  constructor(private readonly db: Db) {}

  /** A clip is owed (idempotent). */
  add(job: ClipJob): void {
    writeTx(this.db, 'FULL', () =>
      this.db
        .prepare('INSERT OR IGNORE INTO alarm_clips (alarm_id, camera, kind, press_ms, time_source, fix, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(job.alarmId, job.camera, job.kind, job.pressMs, job.timeSource, job.fix ? JSON.stringify(job.fix) : null, job.createdAt),
    );
  }

  /** The clip is queued for upload, or will never be (failed, camera gone). */
  done(alarmId: string, camera: string): void {
    writeTx(this.db, 'FULL', () => this.db.prepare('DELETE FROM alarm_clips WHERE alarm_id = ? AND camera = ?').run(alarmId, camera));
  }

  /** The press read through a clock that has moved since. */
  repress(alarmId: string, camera: string, pressMs: number, timeSource: TimeSource): void {
    writeTx(this.db, 'FULL', () => this.db.prepare('UPDATE alarm_clips SET press_ms = ?, time_source = ? WHERE alarm_id = ? AND camera = ?').run(pressMs, timeSource, alarmId, camera));
  }

  /** Clips still owed, oldest press first. */
  pending(): ClipJob[] {
    return (this.db.prepare('SELECT * FROM alarm_clips ORDER BY press_ms').all() as Row[]).map((r) => ({
      alarmId: r.alarm_id,
      camera: r.camera,
      kind: r.kind,
      pressMs: r.press_ms,
      timeSource: r.time_source,
      fix: r.fix ? (JSON.parse(r.fix) as Fix) : null,
      createdAt: r.created_at,
    }));
  }
}
