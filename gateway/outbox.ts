// The store-and-forward outbox, in lanes. A message is committed before
// anything is published, and leaves only when dispatch's application receipt
// covers it: a broker's PUBACK proves nothing about delivery (Mosquitto drops
// queued QoS 1 messages for a slow subscriber after PUBACKing them).
//
// Each lane numbers its messages 1, 2, 3... (persistently, within this
// database's epoch); dispatch confirms "everything up to N" per lane. The
// outbox has a byte quota: when a message would exceed it, lower lanes give
// way by their eviction rule, oldest first, and what was dropped is reported
// (onEvicted) so it can be recorded in the diag lane. Alarms, incidents and
// evidence are never evicted or expired before dispatch confirms them.

import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { type Db, writeTx } from '../common/sqlite.ts';
import { LANES, LANE_TABLE, type Lane, PROTECTED_LANES } from '../protocol/lanes.ts';

export type { Lane } from '../protocol/lanes.ts';

const LaneRuleSchema = z
  .object({
    /** Share of the link this lane gets against the others of tiers 1 and 2 (alarms and incidents always go first). */
    weight: z.number().int().min(1).max(100),
    /** Most messages of this lane one drain round takes in a row. */
    batch: z.number().int().min(1).max(1000),
    /** Messages older than this are dropped (and reported); null = kept until confirmed. Not allowed on protected lanes. */
    maxAgeS: z.number().int().min(60).nullable(),
    /** "oldest": gives way to other lanes when the outbox is full; "never": kept until confirmed. */
    evict: z.enum(['never', 'oldest']),
  })
  .strict();
export type LaneRule = z.infer<typeof LaneRuleSchema>;


export const OutboxConfigSchema = z
  .object({
    /** Quota for the outbox's messages, bytes (payloads plus ~100 bytes per row). */
    maxBytes: z.number().int().min(16 * 1024).default(256 * 1024 * 1024),
    /** Messages published and not yet PUBACKed, at most (alarms are never held back by it). */
    window: z.number().int().min(1).max(10_000).default(64),
    /** Bytes published and not yet PUBACKed, at most: keeps the socket queue short so a live alarm never waits behind a backlog. */
    windowBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(256 * 1024),
    /** Per-lane overrides of the lane's defaults in LANE_TABLE (protocol/lanes.ts). */
    lanes: z.partialRecord(z.enum(LANES), LaneRuleSchema.partial()).default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    for (const lane of PROTECTED_LANES) {
      const r = c.lanes[lane];
      if (r?.evict === 'oldest') ctx.addIssue({ code: 'custom', path: ['lanes', lane, 'evict'], message: `the ${lane} lane is never evicted before dispatch confirms it` });
      if (r?.maxAgeS != null) ctx.addIssue({ code: 'custom', path: ['lanes', lane, 'maxAgeS'], message: `the ${lane} lane never expires before dispatch confirms it` });
    }
  });
export type OutboxConfig = z.output<typeof OutboxConfigSchema>;

export function laneRules(config: OutboxConfig): Record<Lane, LaneRule> {
  const out = {} as Record<Lane, LaneRule>;
  for (const lane of LANES) {
    const { weight, batch, maxAgeS, evict } = LANE_TABLE[lane];
    out[lane] = { weight, batch, maxAgeS, evict, ...config.lanes[lane] };
  }
  return out;
}

export interface OutboxItem {
  lane: Lane;
  seq: number;
  id: string;
  topic: string;
  payload: Buffer;
  createdMs: number;
}

/** What a quota or expiry sweep dropped from one lane. */
export interface Eviction {
  lane: Lane;
  count: number;
  bytes: number;
  seqFrom: number;
  seqTo: number;
  reason: 'quota' | 'expired';
}

/** The outbox is full with messages that may not give way, and this one may not either push them out. */
export class OutboxFullError extends Error {}

/** Bytes counted per row on top of its payload: key, topic, index entries. */
const ROW_OVERHEAD = 100;

export const OUTBOX_SCHEMA = `
CREATE TABLE outbox (
  lane TEXT NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL UNIQUE,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  created_ms INTEGER NOT NULL,
  PRIMARY KEY (lane, seq)
);
CREATE TABLE outbox_lanes (
  lane TEXT PRIMARY KEY,
  next_seq INTEGER NOT NULL
);
CREATE TABLE outbox_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`;

interface Row {
  lane: Lane;
  seq: number;
  id: string;
  topic: string;
  payload: Buffer;
  created_ms: number;
}

const toItem = (r: Row): OutboxItem => ({ lane: r.lane, seq: r.seq, id: r.id, topic: r.topic, payload: r.payload, createdMs: r.created_ms });

export class Outbox {
  /** 16 hex digits, made once per database: dispatch keys its lane progress by it. */
  readonly epoch: string;
  readonly rules: Record<Lane, LaneRule>;
  /** Lanes that give way when the outbox is full, in the order they do: the least important first. */
  private readonly evictOrder: Lane[];
  private usedBytes: number;
  private readonly q;

  constructor(
    private readonly db: Db,
    readonly config: OutboxConfig,
    /** Told what a quota or expiry sweep dropped; runs inside the dropping transaction. */
    private readonly onEvicted: (e: Eviction) => void = () => {},
  ) {
    this.rules = laneRules(config);
    this.evictOrder = [...LANES].filter((l) => this.rules[l].evict === 'oldest' && !PROTECTED_LANES.includes(l)).reverse();
    this.q = {
      insert: db.prepare('INSERT INTO outbox (lane, seq, id, topic, payload, created_ms) VALUES (?, ?, ?, ?, ?, ?)'),
      nextSeq: db.prepare<[string], { next_seq: number }>('SELECT next_seq FROM outbox_lanes WHERE lane = ?'),
      setSeq: db.prepare('INSERT INTO outbox_lanes (lane, next_seq) VALUES (?, ?) ON CONFLICT (lane) DO UPDATE SET next_seq = excluded.next_seq'),
      after: db.prepare<[string, number, number], Row>('SELECT lane, seq, id, topic, payload, created_ms FROM outbox WHERE lane = ? AND seq > ? ORDER BY seq LIMIT ?'),
      minSeq: db.prepare<[string], { s: number | null }>('SELECT min(seq) AS s FROM outbox WHERE lane = ?'),
      idsUpTo: db.prepare<[string, number], { id: string; bytes: number }>('SELECT id, length(payload) AS bytes FROM outbox WHERE lane = ? AND seq <= ?'),
      deleteUpTo: db.prepare('DELETE FROM outbox WHERE lane = ? AND seq <= ?'),
      byId: db.prepare<[string], { lane: Lane; seq: number; bytes: number }>('SELECT lane, seq, length(payload) AS bytes FROM outbox WHERE id = ?'),
      deleteId: db.prepare('DELETE FROM outbox WHERE id = ?'),
      replace: db.prepare('UPDATE outbox SET payload = ? WHERE id = ?'),
      oldest: db.prepare<[string, number], { seq: number; bytes: number }>('SELECT seq, length(payload) AS bytes FROM outbox WHERE lane = ? ORDER BY seq LIMIT ?'),
      olderThan: db.prepare<[string, number], { seq: number; bytes: number }>('SELECT seq, length(payload) AS bytes FROM outbox WHERE lane = ? AND created_ms < ? ORDER BY seq'),
      deleteSeqs: db.prepare('DELETE FROM outbox WHERE lane = ? AND seq BETWEEN ? AND ?'),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM outbox'),
      countLane: db.prepare<[string], { n: number }>('SELECT count(*) AS n FROM outbox WHERE lane = ?'),
      used: db.prepare<[], { b: number | null; n: number }>('SELECT sum(length(payload)) AS b, count(*) AS n FROM outbox'),
      lanes: db.prepare<[], { lane: Lane; depth: number; oldestMs: number }>('SELECT lane, count(*) AS depth, min(created_ms) AS oldestMs FROM outbox GROUP BY lane'),
    };
    this.epoch = persistentTag(db, 'epoch');
    const used = this.q.used.get()!;
    this.usedBytes = (used.b ?? 0) + used.n * ROW_OVERHEAD;
  }

  /**
   * Run `fn` (which appends, with other rows of the same database if need be)
   * in one transaction at the durability of `lane` (LANE_TABLE).
   */
  write<T>(lane: Lane, fn: () => T): T {
    const before = this.usedBytes;
    try {
      return writeTx(this.db, LANE_TABLE[lane].durability, fn);
    } catch (err) {
      this.usedBytes = before; // rolled back
      throw err;
    }
  }

  /** Inside a write() (or another transaction on the same database): an append joins it. */
  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  /**
   * Add one message to its lane and return its seq. Call inside write(). When
   * the quota would be exceeded, evictable lanes give way first (oldest
   * messages, least important lane first); a message of an evictable lane
   * that still does not fit is refused with OutboxFullError, one of a
   * protected lane is kept regardless (the quota is soft for alarms).
   */
  append(item: { id: string; lane: Lane; topic: string; payload: Buffer }, nowMs = Date.now()): number {
    const need = item.payload.length + ROW_OVERHEAD;
    if (this.usedBytes + need > this.config.maxBytes && LANE_TABLE[item.lane].makesRoom) this.makeRoom(need, item.lane);
    if (this.usedBytes + need > this.config.maxBytes && !PROTECTED_LANES.includes(item.lane)) {
      throw new OutboxFullError(
        `outbox full (${this.usedBytes} of ${this.config.maxBytes} bytes, held by lanes that may not give way): ${item.lane} message of ${item.payload.length} bytes dropped`,
      );
    }
    const seq = this.q.nextSeq.get(item.lane)?.next_seq ?? 1;
    this.q.insert.run(item.lane, seq, item.id, item.topic, item.payload, nowMs);
    this.q.setSeq.run(item.lane, seq + 1);
    this.usedBytes += need;
    return seq;
  }

  /**
   * Evict from the lanes that give way to `forLane` (by evictOrder) until
   * `need` more bytes fit, plus a tenth of the quota: evicting in chunks
   * keeps the diag records of what was dropped few (one per chunk, not one
   * per message), so they do not crowd out what they report on.
   */
  private makeRoom(minNeed: number, forLane: Lane): void {
    const need = minNeed + Math.floor(this.config.maxBytes / 10);
    for (const lane of this.evictOrder) {
      if (this.usedBytes + need <= this.config.maxBytes) return;
      if (!givesWay(lane, forLane)) continue;
      while (this.usedBytes + need > this.config.maxBytes) {
        const rows = this.q.oldest.all(lane, 64);
        if (rows.length === 0) break;
        let freed = 0;
        let upTo = rows[0]!.seq;
        let count = 0;
        for (const r of rows) {
          freed += r.bytes + ROW_OVERHEAD;
          upTo = r.seq;
          count++;
          if (this.usedBytes - freed + need <= this.config.maxBytes) break;
        }
        const before = this.usedBytes;
        this.dropRange(lane, rows[0]!.seq, upTo, count, freed, 'quota');
        // onEvicted may append (a diag record): if that ate what was freed, stop rather than spin.
        if (this.usedBytes >= before) break;
      }
    }
  }

  private dropRange(lane: Lane, from: number, to: number, count: number, bytes: number, reason: Eviction['reason']): void {
    this.q.deleteSeqs.run(lane, from, to);
    this.usedBytes -= bytes;
    this.onEvicted({ lane, count, bytes: bytes - count * ROW_OVERHEAD, seqFrom: from, seqTo: to, reason });
  }

  /** Drop messages past their lane's maxAgeS (never protected lanes). */
  expire(nowMs = Date.now()): void {
    for (const lane of LANES) {
      const maxAgeS = this.rules[lane].maxAgeS;
      if (maxAgeS === null || PROTECTED_LANES.includes(lane)) continue;
      this.write(lane, () => {
        const rows = this.q.olderThan.all(lane, nowMs - maxAgeS * 1000);
        if (rows.length === 0) return;
        const bytes = rows.reduce((n, r) => n + r.bytes + ROW_OVERHEAD, 0);
        this.dropRange(lane, rows[0]!.seq, rows.at(-1)!.seq, rows.length, bytes, 'expired');
      });
    }
  }

  /**
   * Replace a message's payload in place (same lane, same seq); false when it
   * is no longer here. Only for a message never published: dispatch takes a
   * seq once, so a changed payload under a seq it already has would be lost.
   */
  replace(id: string, payload: Buffer): boolean {
    const row = this.q.byId.get(id);
    if (!row) return false;
    this.q.replace.run(payload, id);
    this.usedBytes += payload.length - row.bytes;
    return true;
  }

  /** Up to `limit` messages of a lane with seq > afterSeq, in order. */
  after(lane: Lane, afterSeq: number, limit: number): OutboxItem[] {
    return this.q.after.all(lane, afterSeq, limit).map(toItem);
  }

  /** Everything of the lane below this is settled: the lowest seq still held, or the next seq when none is. */
  floor(lane: Lane): number {
    return this.q.minSeq.get(lane)?.s ?? this.q.nextSeq.get(lane)?.next_seq ?? 1;
  }

  /** The highest seq this lane has given a message (0 when none). */
  lastSeq(lane: Lane): number {
    return (this.q.nextSeq.get(lane)?.next_seq ?? 1) - 1;
  }

  /** Dispatch holds the lane up to `upTo`: drop those. Returns the ids that were still here. */
  confirmUpTo(lane: Lane, upTo: number): string[] {
    return this.write(lane, () => {
      const rows = this.q.idsUpTo.all(lane, upTo);
      if (rows.length === 0) return [];
      this.q.deleteUpTo.run(lane, upTo);
      this.usedBytes -= rows.reduce((n, r) => n + r.bytes + ROW_OVERHEAD, 0);
      return rows.map((r) => r.id);
    });
  }

  size(lane?: Lane): number {
    return (lane ? this.q.countLane.get(lane) : this.q.count.get())!.n;
  }

  /** Each lane with messages waiting: how many, and when the oldest was stored (the unit's health). */
  laneSummary(): { lane: Lane; depth: number; oldestMs: number }[] {
    return this.q.lanes.all();
  }

  /** Bytes held, as counted against maxBytes. */
  bytes(): number {
    return this.usedBytes;
  }
}

/**
 * Whether `lane` gives way to a message of `forLane` at the quota: every
 * evictable lane to alarms, incidents and evidence and to its own newer
 * messages; the routine track also to alarm follow-ups. Diagnostics never give
 * way to the track: they are the record of what the track lost.
 */
/** A random 16-hex-digit value made once per database and kept in outbox_meta under `key`. */
function persistentTag(db: Db, key: string): string {
  const row = db.prepare<[string], { value: string }>('SELECT value FROM outbox_meta WHERE key = ?').get(key);
  if (row) return row.value;
  const value = randomBytes(8).toString('hex');
  db.prepare('INSERT INTO outbox_meta (key, value) VALUES (?, ?)').run(key, value);
  return value;
}

export function givesWay(lane: Lane, forLane: Lane): boolean {
  return lane === forLane || PROTECTED_LANES.includes(forLane) || (lane === 'track' && forLane === 'followup');
}

