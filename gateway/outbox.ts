// The store-and-forward outbox. A message is appended (committed, fsync'd)
// before anything is published, and leaves only when dispatch's application
// receipt names it: a broker's PUBACK proves nothing about delivery (Mosquitto
// drops queued QoS 1 messages for a slow subscriber after PUBACKing them).
// Verbs, as mqtt.js's Store interface taught: append, due, markSent, confirm.

import type { Db } from '../protocol/sqlite.ts';

/** Lower number goes first. Alarms never wait behind anything. */
export const LANE_PRIORITY = { alarm: 0, incident: 1, position: 2 } as const;
export type Lane = keyof typeof LANE_PRIORITY;

export interface OutboxItem {
  seq: number;
  id: string;
  lane: Lane;
  topic: string;
  payload: Buffer;
  createdMs: number;
  attempts: number;
}

export const OUTBOX_SCHEMA = `
CREATE TABLE IF NOT EXISTS outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  lane TEXT NOT NULL,
  priority INTEGER NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_sent_ms INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, seq);
`;

interface Row {
  seq: number;
  id: string;
  lane: Lane;
  topic: string;
  payload: Buffer;
  created_ms: number;
  attempts: number;
}

export class Outbox {
  private readonly insert;
  private readonly selectDue;
  private readonly updateSent;
  private readonly deleteOne;
  private readonly countAll;
  private readonly countLane;

  constructor(private readonly db: Db) {
    this.insert = db.prepare(
      'INSERT INTO outbox (id, lane, priority, topic, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?)',
    );
    this.selectDue = db.prepare<[number, number], Row>(
      `SELECT seq, id, lane, topic, payload, created_ms, attempts FROM outbox
       WHERE last_sent_ms IS NULL OR last_sent_ms <= ?
       ORDER BY priority, seq LIMIT ?`,
    );
    this.updateSent = db.prepare('UPDATE outbox SET attempts = attempts + 1, last_sent_ms = ? WHERE id = ?');
    this.deleteOne = db.prepare('DELETE FROM outbox WHERE id = ?');
    this.countAll = db.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox');
    this.countLane = db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM outbox WHERE lane = ?');
  }

  /** Commit one message. Call inside a db.transaction to make it atomic with other rows. */
  append(item: { id: string; lane: Lane; topic: string; payload: Buffer }, nowMs = Date.now()): void {
    this.insert.run(item.id, item.lane, LANE_PRIORITY[item.lane], item.topic, item.payload, nowMs);
  }

  /** Messages to (re)send now: never sent, or sent before `sentBeforeMs`; highest priority first. */
  due(sentBeforeMs: number, limit: number): OutboxItem[] {
    return this.selectDue.all(sentBeforeMs, limit).map((r) => ({
      seq: r.seq,
      id: r.id,
      lane: r.lane,
      topic: r.topic,
      payload: r.payload,
      createdMs: r.created_ms,
      attempts: r.attempts,
    }));
  }

  markSent(ids: readonly string[], nowMs = Date.now()): void {
    // Bookkeeping only: losing it in a crash means one extra re-send, so it
    // rides on the next fsync instead of forcing one of its own.
    this.db.transaction(() => {
      for (const id of ids) this.updateSent.run(nowMs, id);
    })();
  }

  /** Forget send times so everything goes out again now (after a reconnect). */
  resetSent(): void {
    this.db.prepare('UPDATE outbox SET last_sent_ms = NULL').run();
  }

  /** Dispatch holds these: drop them. Returns the ids that were still here. */
  confirm(ids: readonly string[]): string[] {
    const removed: string[] = [];
    this.db.transaction(() => {
      for (const id of ids) if (this.deleteOne.run(id).changes > 0) removed.push(id);
    })();
    return removed;
  }

  size(lane?: Lane): number {
    return (lane ? this.countLane.get(lane) : this.countAll.get())!.n;
  }
}
