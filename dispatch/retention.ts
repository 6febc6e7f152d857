// How long dispatch keeps what the buses send, per kind, and what it will
// not delete. A city fleet sends ~1 KB of track per bus every 30 s (about
// 3 GB a month for 1,000 buses) and every alarm brings photos and clips:
// without this, the receiver's disk fills and the alarm path fails with it.
//
//   track     track messages whose last point is older than trackDays
//   diags     diagnostics received longer ago than diagsDays
//   footage   clips asked for with `dispatch footage` (no alarm), stored
//             longer ago than footageDays
//   evidence  photos and clips of an alarm, stored longer ago than
//             evidenceDays, once the alarm is acknowledged
// Legal hold: nothing of an alarm that is still open (not acknowledged) or
// held (`busguard dispatch hold`, and the cases of the console) is deleted:
// not its evidence, not the track sent while it was open. null keeps a kind
// for ever. Every pass that deletes something writes what, how much and the
// time span into retention_log and the log (event retention.deleted).

import { rm } from 'node:fs/promises';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type Db, writeTx } from '../common/sqlite.ts';

const days = z.number().min(1).max(36_500).nullable();

export const RetentionConfigSchema = z
  .object({
    trackDays: days.default(90),
    diagsDays: days.default(365),
    footageDays: days.default(90),
    evidenceDays: days.default(365 * 3),
    /** A pass this often (the receiver runs one at start too). */
    everyS: z.number().min(60).max(7 * 86_400).default(3_600),
  })
  .strict();
export type RetentionConfig = z.output<typeof RetentionConfigSchema>;

/** Fourteenth step of dispatch's schema: holds, and the record of what retention deleted. */
export const RETENTION_SCHEMA = `
CREATE TABLE alarm_holds (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  alarm_id TEXT NOT NULL,
  reason TEXT NOT NULL,
  held_by TEXT NOT NULL,
  held_at TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle, alarm_id)
);
CREATE TABLE retention_log (
  at TEXT NOT NULL,
  kind TEXT NOT NULL,
  count INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  oldest TEXT,
  newest TEXT,
  cutoff TEXT NOT NULL
);
CREATE INDEX diags_received ON diags (received_at);
CREATE INDEX evidence_files_completed ON evidence_files (completed_at) WHERE state = 'complete';
`;

export interface RetentionDeleted {
  kind: 'track' | 'diags' | 'footage' | 'evidence';
  count: number;
  bytes: number;
  oldest: string | null;
  newest: string | null;
  cutoff: string;
}

/** An alarm still open or held: `a` names the row's fleet, vehicle and alarm id columns. */
const KEPT = (fleet: string, vehicle: string, alarmId: string) => `(
  EXISTS (SELECT 1 FROM alarms a WHERE a.fleet = ${fleet} AND a.vehicle = ${vehicle} AND a.id = ${alarmId} AND a.ack_at IS NULL)
  OR EXISTS (SELECT 1 FROM alarm_holds h WHERE h.fleet = ${fleet} AND h.vehicle = ${vehicle} AND h.alarm_id = ${alarmId}))`;

/** At most this many rows a transaction: a pass over months of track must not hold the alarm path's lock for long. */
const CHUNK = 2_000;

export class Retention {
  constructor(
    private readonly db: Db,
    private readonly config: RetentionConfig,
    private readonly log: Logger,
  ) {}

  /** One pass; `dryRun` counts what would go and deletes nothing. */
  async run(opts: { dryRun?: boolean; now?: number } = {}): Promise<RetentionDeleted[]> {
    const now = opts.now ?? Date.now();
    const cutoff = (d: number | null) => (d === null ? null : new Date(now - d * 86_400_000).toISOString());
    const out: RetentionDeleted[] = [];
    const c = this.config;
    const track = cutoff(c.trackDays);
    if (track) out.push(this.rows('track', 'track_batches', 'last_at', 'points', track, `alarm_id IS NULL OR NOT ${KEPT('t.fleet', 't.vehicle', 't.alarm_id')}`, 't', opts.dryRun));
    const diags = cutoff(c.diagsDays);
    if (diags) out.push(this.rows('diags', 'diags', 'received_at', 'reason', diags, '1', 'd', opts.dryRun));
    const footage = cutoff(c.footageDays);
    if (footage) out.push(await this.files('footage', footage, 'alarm_id IS NULL', opts.dryRun));
    const evidence = cutoff(c.evidenceDays);
    if (evidence) out.push(await this.files('evidence', evidence, `alarm_id IS NOT NULL AND NOT ${KEPT('f.fleet', 'f.vehicle', 'f.alarm_id')}`, opts.dryRun));
    const deleted = out.filter((d) => d.count > 0);
    if (!opts.dryRun && deleted.length) {
      writeTx(this.db, 'FULL', () => {
        const at = new Date(now).toISOString();
        const insert = this.db.prepare('INSERT INTO retention_log (at, kind, count, bytes, oldest, newest, cutoff) VALUES (?, ?, ?, ?, ?, ?, ?)');
        for (const d of deleted) insert.run(at, d.kind, d.count, d.bytes, d.oldest, d.newest, d.cutoff);
      });
      for (const d of deleted) {
        this.log.info({ event: 'retention.deleted', ...d }, `retention: deleted ${d.count} ${d.kind} (${d.bytes} bytes, ${d.oldest} to ${d.newest}), older than ${d.cutoff}`);
      }
    }
    return out;
  }

  /** Rows of one table older than the cutoff, in chunks by rowid. */
  private rows(kind: RetentionDeleted['kind'], table: string, timeCol: string, bytesCol: string, cutoff: string, keep: string, alias: string, dryRun = false): RetentionDeleted {
    const where = `${alias}.${timeCol} < ? AND (${keep})`;
    const d: RetentionDeleted = { kind, count: 0, bytes: 0, oldest: null, newest: null, cutoff };
    for (;;) {
      const rows = this.db
        .prepare<[string, number], { rowid: number; t: string; b: number }>(`SELECT ${alias}.rowid AS rowid, ${alias}.${timeCol} AS t, length(${alias}.${bytesCol}) AS b FROM ${table} ${alias} WHERE ${where} LIMIT ?`)
        .all(cutoff, CHUNK);
      for (const r of rows) {
        d.count++;
        d.bytes += r.b ?? 0;
        if (d.oldest === null || r.t < d.oldest) d.oldest = r.t;
        if (d.newest === null || r.t > d.newest) d.newest = r.t;
      }
      if (dryRun || rows.length === 0) return d;
      writeTx(this.db, 'NORMAL', () => {
        const del = this.db.prepare(`DELETE FROM ${table} WHERE rowid = ?`);
        for (const r of rows) del.run(r.rowid);
      });
      if (rows.length < CHUNK) return d;
    }
  }

  /** Evidence files older than the cutoff: the file, its signature sidecar, then its row. */
  private async files(kind: 'footage' | 'evidence', cutoff: string, keep: string, dryRun = false): Promise<RetentionDeleted> {
    const d: RetentionDeleted = { kind, count: 0, bytes: 0, oldest: null, newest: null, cutoff };
    const rows = this.db
      .prepare<[string], { fleet: string; vehicle: string; file_id: string; path: string | null; size: number; completed_at: string }>(
        `SELECT f.fleet, f.vehicle, f.file_id, f.path, f.size, f.completed_at FROM evidence_files f WHERE f.state = 'complete' AND f.completed_at < ? AND (${keep})`,
      )
      .all(cutoff);
    for (const r of rows) {
      if (!dryRun) {
        // The file first: a row without its file would claim evidence that is gone; a file without its row is found by nobody.
        if (r.path) {
          await rm(r.path, { force: true });
          await rm(`${r.path}.sig.json`, { force: true });
        }
        writeTx(this.db, 'FULL', () => this.db.prepare('DELETE FROM evidence_files WHERE fleet = ? AND vehicle = ? AND file_id = ?').run(r.fleet, r.vehicle, r.file_id));
      }
      d.count++;
      d.bytes += r.size;
      if (d.oldest === null || r.completed_at < d.oldest) d.oldest = r.completed_at;
      if (d.newest === null || r.completed_at > d.newest) d.newest = r.completed_at;
    }
    return d;
  }
}
