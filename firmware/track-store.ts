// Track points wait in the agent's SQLite until the next batch goes out: a
// point is stored when the thinner keeps it, and a batch moves up to batchMax
// of them into one outbox message in the same transaction that deletes them,
// so a crash between the two can neither lose nor double a point.

import type { Db } from '../protocol/sqlite.ts';
import type { TrackPoint } from '../protocol/messages.ts';

export const TRACK_SCHEMA = `
CREATE TABLE track_points (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  point TEXT NOT NULL
);
`;

export class TrackStore {
  private readonly insert;
  private readonly oldest;
  private readonly remove;
  private readonly count;

  constructor(private readonly db: Db) {
    this.insert = db.prepare<[string]>('INSERT INTO track_points (point) VALUES (?)');
    this.oldest = db.prepare<[number], { seq: number; point: string }>('SELECT seq, point FROM track_points ORDER BY seq LIMIT ?');
    this.remove = db.prepare<[number]>('DELETE FROM track_points WHERE seq <= ?');
    this.count = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM track_points');
  }

  add(point: TrackPoint): void {
    this.insert.run(JSON.stringify(point));
  }

  size(): number {
    return this.count.get()?.n ?? 0;
  }

  /**
   * Hand the oldest points (at most max) to `send`, which must store them
   * elsewhere in the same database; they are deleted in the same transaction.
   * Returns how many were moved.
   */
  drain(max: number, send: (points: TrackPoint[]) => void): number {
    return this.db.transaction(() => {
      const rows = this.oldest.all(max);
      const last = rows.at(-1);
      if (!last) return 0;
      send(rows.map((r) => JSON.parse(r.point) as TrackPoint));
      this.remove.run(last.seq);
      return rows.length;
    })();
  }
}
