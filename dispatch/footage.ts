// Footage on request, dispatch's side: a dispatcher asks a bus for a window
// of video (`busguard dispatch footage FLEET/VEHICLE --from T1 --to T2`).
// The request is recorded first, then published to the bus's down/footage;
// a running receiver re-sends unanswered requests whenever the bus comes
// online, and records the bus's answers (up/footage, one per camera) and
// the clip when its file is stored verified.

import crypto from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { type FootageAnswer, type FootageRequest, FootageRequestSchema, encode } from '../protocol/messages.ts';
import { MqttSession } from '../protocol/mqtt-session.ts';
import type { Db } from '../protocol/sqlite.ts';
import { type VehicleRef, downlinkTopic } from '../protocol/topics.ts';
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

export interface FootageStatus {
  request: FootageRequest & VehicleRef;
  requestedAt: string;
  answers: Array<Pick<FootageAnswer, 'camera' | 'status' | 'reason' | 'ring' | 'fileId'> & { receivedAt: string }>;
}

export class FootageBook {
  constructor(private readonly db: Db) {}

  add(ref: VehicleRef, req: FootageRequest, at = new Date().toISOString()): void {
    this.db.prepare('INSERT OR IGNORE INTO footage_requests (id, fleet, vehicle, request, requested_at) VALUES (?, ?, ?, ?, ?)').run(req.id, ref.fleet, ref.vehicle, JSON.stringify(req), at);
  }

  /** Record a bus's answer (idempotent by answer id); true when new. */
  answer(a: FootageAnswer, at = new Date().toISOString()): boolean {
    const fresh =
      this.db
        .prepare('INSERT OR IGNORE INTO footage_answers (id, request_id, camera, status, reason, ring, file_id, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(a.id, a.requestId, a.camera, a.status, a.reason, a.ring ? JSON.stringify(a.ring) : null, a.fileId, at).changes > 0;
    this.db.prepare('UPDATE footage_requests SET answered_at = coalesce(answered_at, ?) WHERE id = ?').run(at, a.requestId);
    return fresh;
  }

  /** Requests of this vehicle no answer has come back for: re-sent when the bus comes online. */
  unanswered(ref: VehicleRef): FootageRequest[] {
    return (this.db.prepare('SELECT request FROM footage_requests WHERE fleet = ? AND vehicle = ? AND answered_at IS NULL').all(ref.fleet, ref.vehicle) as { request: string }[]).map(
      (r) => JSON.parse(r.request) as FootageRequest,
    );
  }

  get(id: string): FootageStatus | null {
    const r = this.db.prepare('SELECT * FROM footage_requests WHERE id = ?').get(id) as { fleet: string; vehicle: string; request: string; requested_at: string } | undefined;
    if (!r) return null;
    const answers = (this.db.prepare('SELECT * FROM footage_answers WHERE request_id = ? ORDER BY received_at').all(id) as Record<string, string | null>[]).map((a) => ({
      camera: a.camera ?? null,
      status: a.status as FootageAnswer['status'],
      reason: a.reason as string,
      ring: a.ring ? (JSON.parse(a.ring) as FootageAnswer['ring']) : null,
      fileId: a.file_id ?? null,
      receivedAt: a.received_at as string,
    }));
    return { request: { ...(JSON.parse(r.request) as FootageRequest), fleet: r.fleet, vehicle: r.vehicle }, requestedAt: r.requested_at, answers };
  }
}

let footageSessions = 0;

/** Publish a request to its bus (QoS 1) on a short-lived session; false (with why) when the broker did not take it: a running receiver re-sends it. */
export async function publishFootageRequest(config: DispatchConfig, ref: VehicleRef, req: FootageRequest, log: Logger, timeoutMs = 5000): Promise<{ published: boolean; error?: string }> {
  FootageRequestSchema.parse(req);
  const session = new MqttSession(
    { ...config.mqtt, sessionExpiryS: 0 },
    { username: 'dispatch', clientId: `dispatch-footage-${hostname()}-${process.pid}-${++footageSessions}` },
    log,
  );
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      new Promise<void>((resolve) => session.once('connected', () => resolve())).then(() => session.publishAsync(downlinkTopic(ref, 'footage'), encode(req))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`broker ${config.mqtt.url} did not take the request in ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { published: true };
  } catch (err) {
    return { published: false, error: (err as Error).message };
  } finally {
    clearTimeout(timer);
    await session.stop();
  }
}

export interface FootageCommandOptions {
  from: string;
  to: string;
  camera: string | null;
  by: string;
  waitS: number;
  json: boolean;
}

/** Exit codes of `busguard dispatch footage`. */
export const FOOTAGE_EXIT = { delivered: 0, usage: 2, unavailable: 3, timedOut: 4 } as const;

/** A time for --from/--to: ISO 8601 (with Z or an offset), or "-N" / "-Nm" / "-Ns": that long before now. */
export function parseWhen(text: string, nowMs = Date.now()): number | null {
  const rel = /^-(\d+(?:\.\d+)?)([sm]?)$/.exec(text.trim());
  if (rel) return nowMs - Number(rel[1]) * (rel[2] === 'm' ? 60_000 : 1000);
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)$/.test(text.trim())) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * Record and send a request, then (unless waitS is 0) wait for the bus's
 * answers and the clips. Reads the store the running receiver writes to.
 */
export async function footageCommand(
  config: DispatchConfig,
  openStore: () => { footage: FootageBook; db: Db; close(): void },
  vehicle: string,
  o: FootageCommandOptions,
  log: Logger,
  out: (line: string) => void,
): Promise<number> {
  const [fleet, id, extra] = vehicle.split('/');
  if (!fleet || !id || extra !== undefined) {
    out(`busguard dispatch footage: vehicle "${vehicle}" must be FLEET/VEHICLE, e.g. city/bus-17`);
    return FOOTAGE_EXIT.usage;
  }
  const fromMs = parseWhen(o.from);
  const toMs = parseWhen(o.to);
  if (fromMs === null || toMs === null) {
    out(`busguard dispatch footage: --from and --to take ISO 8601 times with a zone (2026-11-23T08:15:00Z) or "-90s" / "-5m" before now (got "${o.from}", "${o.to}")`);
    return FOOTAGE_EXIT.usage;
  }
  const req = FootageRequestSchema.safeParse({ v: 1, id: crypto.randomUUID(), from: new Date(fromMs).toISOString(), to: new Date(toMs).toISOString(), camera: o.camera, by: o.by, at: new Date().toISOString() });
  if (!req.success) {
    out(`busguard dispatch footage: ${req.error.issues.map((i) => i.message).join('; ')}`);
    return FOOTAGE_EXIT.usage;
  }
  const ref = { fleet, vehicle: id };
  const store = openStore();
  try {
    store.footage.add(ref, req.data);
  } finally {
    store.close();
  }
  const sent = await publishFootageRequest(config, ref, req.data, log);
  out(`footage request ${req.data.id} to ${fleet}/${id}: ${req.data.from} to ${req.data.to}${o.camera ? `, camera ${o.camera}` : ''}${sent.published ? '' : ` (not sent yet: ${sent.error}; a running "busguard dispatch" sends it when the bus comes online)`}`);
  if (o.waitS <= 0) return FOOTAGE_EXIT.delivered;

  const deadline = Date.now() + o.waitS * 1000;
  const printed = new Set<string>();
  for (;;) {
    const s = openStore();
    let done = false;
    let anyClip = false;
    try {
      const st = s.footage.get(req.data.id);
      const answers = st?.answers ?? [];
      let pending = 0;
      for (const a of answers) {
        const key = `${a.camera}/${a.status}`;
        const file = a.fileId ? (s.db.prepare("SELECT path, sha256, size FROM evidence_files WHERE file_id = ? AND fleet = ? AND vehicle = ? AND state = 'complete'").get(a.fileId, fleet, id) as { path: string; sha256: string; size: number } | undefined) : undefined;
        if (a.fileId && !file) pending++;
        if (!printed.has(key)) {
          printed.add(key);
          out(o.json ? JSON.stringify({ requestId: req.data.id, ...a }) : `  ${a.camera ?? '(no camera)'}: ${a.status}: ${a.reason}`);
        }
        if (file && !printed.has(`${key}/file`)) {
          printed.add(`${key}/file`);
          anyClip = true;
          out(o.json ? JSON.stringify({ requestId: req.data.id, camera: a.camera, fileId: a.fileId, path: file.path, sha256: file.sha256, bytes: file.size }) : `  ${a.camera}: clip at dispatch, SHA-256 verified: ${file.path} (${file.size} bytes, sha256 ${file.sha256})`);
        }
        if (file) anyClip = true;
      }
      // With camera null, each camera answers on its own: the first complete set ends the wait.
      done = answers.length > 0 && pending === 0;
      if (done) {
        // Every camera answered and every clip announced is here.
        return anyClip ? FOOTAGE_EXIT.delivered : FOOTAGE_EXIT.unavailable;
      }
    } finally {
      s.close();
    }
    if (Date.now() > deadline) {
      out(`  no complete answer within ${o.waitS} s; the request stays queued (the bus answers when it is online)`);
      return FOOTAGE_EXIT.timedOut;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}
