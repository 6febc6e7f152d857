// Footage on request, dispatch's side: a dispatcher asks a bus for a window
// of video (`busguard dispatch footage FLEET/VEHICLE --from T1 --to T2`).
// The request is recorded; a running receiver signs it and sends it to the
// bus's down/footage, re-sends it whenever the bus comes online, and records the bus's answers (up/footage, one per camera) and
// the clip when its file is stored verified.

import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import type { Logger } from 'pino';
import { type FootageAnswer, type FootageRequest, FootageRequestSchema, footageWindowProblem } from '../protocol/messages.ts';
import type { Db } from '../common/sqlite.ts';
import type { VehicleRef } from '../protocol/topics.ts';
import type { PersonSigner } from './person-signer.ts';
import { printable } from './printable.ts';
import type { DispatchConfig } from './config.ts';

export const DISPATCH_FOOTAGE_SCHEMA = `
CREATE TABLE footage_requests (
  id TEXT PRIMARY KEY,
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  request TEXT NOT NULL,
  requested_at TEXT NOT NULL,
  answered_at TEXT
);
CREATE TABLE footage_answers (
  id TEXT PRIMARY KEY,
  request_id TEXT NOT NULL,
  camera TEXT,
  status TEXT NOT NULL,
  reason TEXT NOT NULL,
  ring TEXT,
  file_id TEXT,
  received_at TEXT NOT NULL
);
CREATE INDEX footage_answers_request ON footage_answers (request_id);
`;

/** Second step: the cameras each answer says the request covers (JSON array; null from buses that do not say). */
export const DISPATCH_FOOTAGE_CAMERAS_SCHEMA = `
ALTER TABLE footage_answers ADD COLUMN cameras TEXT;
`;

/** A clip (or its GeoJSON) of a request, verified and stored at dispatch. */
export interface FootageFileAtDispatch {
  fileId: string;
  name: string;
  path: string;
  sha256: string;
  bytes: number;
  mime: string | null;
}

export interface FootageStatus {
  request: FootageRequest & VehicleRef;
  requestedAt: string;
  answers: Array<Pick<FootageAnswer, 'camera' | 'status' | 'reason' | 'ring' | 'fileId'> & { receivedAt: string; cameras: string[] | null; delivered: FootageFileAtDispatch | null }>;
  /** Every camera the bus said the request covers, once any answer says (null: no answer yet, or a bus that does not say). */
  cameras: string[] | null;
  /** Every camera answered and every clip announced is stored: nothing more will come. */
  complete: boolean;
}

export class FootageBook {
  constructor(private readonly db: Db) {}

  /** `command`: the request as its person signed it (dispatch/person-signer.ts), sent as is while valid. */
  add(ref: VehicleRef, req: FootageRequest, at = new Date().toISOString(), command: string | null = null): void {
    this.db
      .prepare('INSERT OR IGNORE INTO footage_requests (id, fleet, vehicle, request, requested_at, command) VALUES (?, ?, ?, ?, ?, ?)')
      .run(req.id, ref.fleet, ref.vehicle, JSON.stringify(req), at, command);
  }

  /**
   * Record a bus's answer (idempotent by answer id): 'new', 'duplicate', or why it is refused: an
   * answer to a request made of another vehicle, or to none dispatch made, changes nothing.
   */
  answer(ref: VehicleRef, a: FootageAnswer, at = new Date().toISOString()): 'new' | 'duplicate' | { refused: string } {
    const req = this.db.prepare('SELECT fleet, vehicle FROM footage_requests WHERE id = ?').get(a.requestId) as { fleet: string; vehicle: string } | undefined;
    if (!req) return { refused: `footage answer to request ${a.requestId}, which dispatch never made` };
    if (req.fleet !== ref.fleet || req.vehicle !== ref.vehicle) return { refused: `footage request ${a.requestId} was made of ${req.fleet}/${req.vehicle}` };
    const fresh =
      this.db
        .prepare('INSERT OR IGNORE INTO footage_answers (id, request_id, camera, status, reason, ring, file_id, received_at, cameras) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
        .run(a.id, a.requestId, a.camera, a.status, a.reason, a.ring ? JSON.stringify(a.ring) : null, a.fileId, at, a.cameras ? JSON.stringify(a.cameras) : null).changes > 0;
    this.db.prepare('UPDATE footage_requests SET answered_at = coalesce(answered_at, ?) WHERE id = ?').run(at, a.requestId);
    return fresh ? 'new' : 'duplicate';
  }

  /** Requests of this vehicle no answer has come back for: re-sent when the bus comes online. */
  unanswered(ref: VehicleRef): FootageRequest[] {
    return (this.db.prepare('SELECT request FROM footage_requests WHERE fleet = ? AND vehicle = ? AND answered_at IS NULL').all(ref.fleet, ref.vehicle) as { request: string }[]).map(
      (r) => JSON.parse(r.request) as FootageRequest,
    );
  }

  /** Every unanswered request of every vehicle, oldest first. */
  pending(): { ref: VehicleRef; request: FootageRequest; command: string | null }[] {
    const rows = this.db.prepare('SELECT fleet, vehicle, request, command FROM footage_requests WHERE answered_at IS NULL ORDER BY requested_at').all() as { fleet: string; vehicle: string; request: string; command: string | null }[];
    return rows.map((r) => ({ ref: { fleet: r.fleet, vehicle: r.vehicle }, request: JSON.parse(r.request) as FootageRequest, command: r.command }));
  }

  get(id: string): FootageStatus | null {
    const r = this.db.prepare('SELECT * FROM footage_requests WHERE id = ?').get(id) as { fleet: string; vehicle: string; request: string; requested_at: string } | undefined;
    if (!r) return null;
    // Delivered is read from the stored files themselves, not kept as a flag: the clip may be stored before or after its answer arrives.
    const rows = this.db
      .prepare(
        `SELECT a.*, f.name AS f_name, f.path AS f_path, f.sha256 AS f_sha256, f.size AS f_size, f.meta AS f_meta
         FROM footage_answers a
         LEFT JOIN evidence_files f ON f.fleet = ? AND f.vehicle = ? AND f.file_id = a.file_id AND f.state = 'complete'
         WHERE a.request_id = ? ORDER BY a.received_at, a.rowid`,
      )
      .all(r.fleet, r.vehicle, id) as Record<string, string | number | null>[];
    const answers = rows.map((a) => ({
      camera: (a.camera as string | null) ?? null,
      status: a.status as FootageAnswer['status'],
      reason: a.reason as string,
      ring: a.ring ? (JSON.parse(a.ring as string) as FootageAnswer['ring']) : null,
      fileId: (a.file_id as string | null) ?? null,
      receivedAt: a.received_at as string,
      cameras: a.cameras ? (JSON.parse(a.cameras as string) as string[]) : null,
      delivered:
        a.f_path && a.file_id
          ? {
              fileId: a.file_id as string,
              name: a.f_name as string,
              path: a.f_path as string,
              sha256: a.f_sha256 as string,
              bytes: a.f_size as number,
              mime: ((JSON.parse(a.f_meta as string) as { mime?: string }).mime ?? null) as string | null,
            }
          : null,
    }));
    const cameras = answers.find((a) => a.cameras)?.cameras ?? null;
    const answered = new Set(answers.map((a) => a.camera ?? '*'));
    const everyCamera = cameras ? (cameras.length === 0 ? answered.has('*') : cameras.every((c) => answered.has(c))) : answers.length > 0;
    const complete = everyCamera && answers.every((a) => !a.fileId || a.delivered);
    return { request: { ...(JSON.parse(r.request) as FootageRequest), fleet: r.fleet, vehicle: r.vehicle }, requestedAt: r.requested_at, answers, cameras, complete };
  }

  /** The footage request a stored file answers (its meta's requestId), or null. */
  requestOfFile(file: { fleet: string; vehicle: string; fileId: string }): string | null {
    const row = this.db.prepare('SELECT meta FROM evidence_files WHERE fleet = ? AND vehicle = ? AND file_id = ?').get(file.fleet, file.vehicle, file.fileId) as { meta: string } | undefined;
    if (!row) return null;
    try {
      const requestId = (JSON.parse(row.meta) as { requestId?: unknown }).requestId;
      return typeof requestId === 'string' ? requestId : null;
    } catch {
      return null;
    }
  }
}

export interface FootageCommandOptions {
  from: string;
  to: string;
  camera: string | null;
  by: string;
  /** Signed with this person's own key (dispatch/person-signer.ts); `by` is then theirs. */
  person?: PersonSigner;
  waitS: number;
  json: boolean;
}

/** Exit codes of `busguard dispatch footage`. */
export const FOOTAGE_EXIT = { delivered: 0, usage: 2, unavailable: 3, timedOut: 4 } as const;

/** How --from and --to may be written (the CLI's help and its errors say the same). */
export const WHEN_FORMS = 'an ISO 8601 time with a zone (2026-11-23T08:15:00Z), "now", or a span before or after now ("-90s", "-5m", "-1h", "+40s")';

/** The farthest from 1970 a JavaScript Date reaches. */
const MAX_DATE_MS = 8.64e15;

/**
 * A time for --from/--to: ISO 8601 with Z or an offset (2026-11-23T08:15:00Z,
 * 2026-11-23T09:15:00+01:00, seconds and fractions optional), "now", or a
 * span before or after now: "-90s", "-5m", "-1h", "+40s" ("-90" is seconds;
 * a window may end ahead, the bus waits for it). A time without a zone is
 * refused: dispatch and the bus may not share one.
 */
export function parseWhen(text: string, nowMs = Date.now()): number | null {
  const t = text.trim();
  if (t === 'now') return nowMs;
  const rel = /^([-+])(\d+(?:\.\d+)?)([smh]?)$/.exec(t);
  if (rel) {
    const ms = nowMs + (rel[1] === '-' ? -1 : 1) * Number(rel[2]) * (rel[3] === 'h' ? 3_600_000 : rel[3] === 'm' ? 60_000 : 1000);
    // "-99999999999999999999h" is no time a Date can hold (found by npm run fuzz: it crashed the command).
    return Math.abs(ms) <= MAX_DATE_MS ? ms : null;
  }
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$/i.test(t)) return null;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * The gaps a clip's busguard comment states, as [from, to] epoch ms pairs a
 * Date can hold, or null when the tag has no such list or a malformed one (the
 * bus wrote it: a malformed one made "dispatch footage" crash on "Invalid
 * time value").
 */
function gapsOf(comment: unknown): [number, number][] | null {
  const gaps = comment !== null && typeof comment === 'object' ? (comment as Record<string, unknown>)['busguard:gaps'] : undefined;
  if (!Array.isArray(gaps)) return null;
  const ok = (x: unknown): x is number => typeof x === 'number' && Math.abs(x) <= MAX_DATE_MS;
  return gaps.every((g) => Array.isArray(g) && g.length === 2 && ok(g[0]) && ok(g[1])) ? (gaps as [number, number][]) : null;
}

/** Duration and gaps of a clip as the file itself states them (ffprobe; the gaps from its busguard comment), or nulls. */
export function probeClip(path: string, timeoutMs = 10_000): Promise<{ durationS: number | null; gaps: [number, number][] | null }> {
  return new Promise((resolve) => {
    execFile('ffprobe', ['-v', 'error', '-show_entries', 'format=duration:format_tags=comment', '-of', 'json', path], { timeout: timeoutMs }, (err, stdout) => {
      if (err) return resolve({ durationS: null, gaps: null });
      try {
        const format = (JSON.parse(stdout) as { format?: { duration?: string; tags?: Record<string, string> } }).format ?? {};
        const durationS = format.duration !== undefined && Number.isFinite(Number(format.duration)) ? Number(format.duration) : null;
        const comment = format.tags?.comment ?? format.tags?.COMMENT;
        resolve({ durationS, gaps: comment ? gapsOf(JSON.parse(comment) as unknown) : null });
      } catch {
        resolve({ durationS: null, gaps: null });
      }
    });
  });
}

/**
 * Record a request (the running receiver sends it), then (unless waitS is 0) wait for the bus's
 * answers and the clips. Reads the store the running receiver writes to.
 * Exit: 0 a clip delivered (or, with waitS 0, the request queued), 3 every
 * camera answered and none has a clip, 4 still waiting at the deadline, 2 bad
 * arguments.
 */
export async function footageCommand(
  config: DispatchConfig,
  openStore: () => { footage: FootageBook; knowsVehicle(ref: VehicleRef): boolean; vehicles: { refs(): VehicleRef[] }; close(): void },
  vehicle: string,
  o: FootageCommandOptions,
  log: Logger,
  out: (line: string) => void,
): Promise<number> {
  const say = (event: string, fields: Record<string, unknown>, text: string) => out(o.json ? JSON.stringify({ event, ...fields }) : text);
  const usage = (why: string) => {
    say('refused', { error: why }, `busguard dispatch footage: ${why}`);
    return FOOTAGE_EXIT.usage;
  };
  const [fleet, id, extra] = vehicle.split('/');
  if (!fleet || !id || extra !== undefined) return usage(`vehicle "${vehicle}" must be FLEET/VEHICLE, e.g. city/bus-17`);
  const nowMs = Date.now();
  const fromMs = parseWhen(o.from, nowMs);
  const toMs = parseWhen(o.to, nowMs);
  // Name only the argument that is wrong.
  const bad = [fromMs === null ? `--from "${o.from}"` : null, toMs === null ? `--to "${o.to}"` : null].filter((x): x is string => x !== null);
  if (fromMs === null || toMs === null) return usage(`${bad.join(' and ')}: not a time; give ${WHEN_FORMS}`);
  const req = FootageRequestSchema.safeParse({ v: 1, id: crypto.randomUUID(), from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), camera: o.camera, by: o.by, at: new Date(nowMs).toISOString() });
  if (!req.success) return usage(req.error.issues.map((i) => `${i.path.join('.') || 'request'}: ${i.message}`).join('; '));
  const problem = footageWindowProblem(req.data, { nowMs });
  if (problem) return usage(problem);
  const ref = { fleet, vehicle: id };
  const store = openStore();
  try {
    // A vehicle this dispatch has never heard from (a typo, a bus never installed) would wait for ever: say so now.
    if (!store.knowsVehicle(ref)) {
      const known = store.vehicles.refs();
      const near = known.filter((v) => v.fleet === fleet).map((v) => `${v.fleet}/${v.vehicle}`);
      return usage(
        `vehicle ${fleet}/${id} has never been seen by this dispatch (no status, alarm, position or file from it); check the name${near.length ? ` (fleet ${fleet} has: ${near.slice(0, 10).join(', ')}${near.length > 10 ? ', …' : ''})` : known.length ? '' : ' (no vehicle has been seen yet)'}`,
      );
    }
    store.footage.add(ref, req.data, undefined, o.person ? o.person.seal('footage', ref, req.data).payload.toString() : null);
  } finally {
    store.close();
  }
  const r = req.data;
  // Recorded only: the running receiver signs it in the name of --by and sends it within a quarter second (dispatch/receiver.ts).
  say(
    'requested',
    { requestId: r.id, fleet, vehicle: id, from: r.from, to: r.to, camera: r.camera },
    `footage request ${r.id} to ${fleet}/${id}: ${r.from} to ${r.to}${r.camera ? `, camera ${r.camera}` : ', every camera'} (queued: the running "busguard dispatch" sends it, now or when the bus comes online)`,
  );
  if (o.waitS <= 0) return FOOTAGE_EXIT.delivered;

  const deadline = Date.now() + o.waitS * 1000;
  const printed = new Set<string>();
  for (;;) {
    const s = openStore();
    let st: FootageStatus | null;
    try {
      st = s.footage.get(r.id);
    } finally {
      s.close();
    }
    const answers = st?.answers ?? [];
    for (const a of answers) {
      const key = `${a.camera ?? '*'}/${a.status}/${a.fileId}`;
      if (!printed.has(key)) {
        printed.add(key);
        const ring = a.ring ? ` [ring now ${a.ring.from} to ${a.ring.to}]` : '';
        say('answer', { requestId: r.id, camera: a.camera, status: a.status, reason: a.reason, ring: a.ring, fileId: a.fileId }, `  ${a.camera ?? '(no camera)'}: ${a.status}: ${printable(a.reason ?? '')}${a.status === 'unavailable' ? ring : ''}`);
      }
      if (a.delivered && !printed.has(`${key}/file`)) {
        printed.add(`${key}/file`);
        const f = a.delivered;
        const probe = await probeClip(f.path);
        const gaps = probe.gaps === null ? 'gaps unknown' : probe.gaps.length === 0 ? 'no gaps' : `gaps ${probe.gaps.map(([x, y]) => `${new Date(x).toISOString()} to ${new Date(y).toISOString()}`).join(', ')}`;
        say(
          'clip',
          { requestId: r.id, camera: a.camera, fileId: f.fileId, path: f.path, sha256: f.sha256, bytes: f.bytes, durationS: probe.durationS, gaps: probe.gaps },
          `  ${a.camera}: clip at dispatch, SHA-256 verified: ${f.path} (${f.bytes} bytes, ${probe.durationS === null ? 'duration unknown' : `${probe.durationS.toFixed(2)} s`}, ${gaps}, sha256 ${f.sha256})`,
        );
      }
    }
    if (st?.complete) return answers.some((a) => a.delivered) ? FOOTAGE_EXIT.delivered : FOOTAGE_EXIT.unavailable;
    if (Date.now() > deadline) {
      const answered = new Set(answers.map((a) => a.camera ?? '*'));
      const silent = (st?.cameras ?? []).filter((c) => !answered.has(c));
      const inFlight = answers.filter((a) => a.fileId && !a.delivered).map((a) => a.camera);
      const what = [
        answers.length === 0 ? 'no answer from the bus' : '',
        silent.length ? `no answer yet for camera ${silent.join(', ')}` : '',
        inFlight.length ? `clip of ${inFlight.join(', ')} still on its way` : '',
      ].filter(Boolean);
      say(
        'timeout',
        { requestId: r.id, waitS: o.waitS, missing: what },
        `  ${what.join('; ') || 'not complete'} within ${o.waitS} s; the request stays queued (a running "busguard dispatch" re-sends it when the bus comes online; the clip keeps coming on its own)`,
      );
      return FOOTAGE_EXIT.timedOut;
    }
    await new Promise((res) => setTimeout(res, 250));
  }
}
