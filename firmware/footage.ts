// Footage on request: dispatch asks for [from, to] of one camera (or every
// camera); the bus cuts that clip from its ring and uploads it as evidence,
// or answers that the window is no longer (or not) in the ring. Each
// camera's answer goes through the outbox (lane clip: never evicted,
// receipted, applied once at dispatch); the clip itself, and the GeoJSON of
// the track over it, through the file upload, linked to the request by its id.
//
// Each request is handled once per camera: a camera counts as handled when
// its answer is committed, and the record of that (a row `REQUEST-ID/CAMERA`
// in footage_requests) is written in the same transaction as the answer's
// outbox row when the caller passes the commit hook into its outbox write.
// So a request dispatch re-sends (it does until it has an answer), or one
// re-delivered after an agent restart, is not cut twice; and a request whose
// cut was under way when the agent died is cut again (its answer never left,
// so dispatch would otherwise wait for ever). While a cut runs, re-sends are
// ignored in memory. Rows holding a bare request id (written by the first
// version of this file) count as handled for every camera.
//
// A well-formed request with a bad window (from ≥ to, too long, ending too
// far ahead) is answered 'failed' with the reason, never dropped: dropped, it
// would be re-sent at every reconnection and never answered.

import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { cutFootage, footageCoverage } from '../hal/video/footage.ts';
import type { VideoRecorder } from '../hal/video/recorder.ts';
import type { TrackPoint } from '../hal/video/track-geojson.ts';
import { FOOTAGE_MAX_AHEAD_S, FOOTAGE_MAX_WINDOW_S, type FootageAnswer, type FootageRequest, type Fix, type TimeSource, footageWindowProblem } from '../protocol/messages.ts';
import { type Db, writeTx } from '../common/sqlite.ts';
import type { VehicleRef } from '../protocol/topics.ts';

/** The agent's migrate step for the handled-request record (one row per request and camera). */
export const FOOTAGE_SCHEMA = `
CREATE TABLE footage_requests (
  id TEXT PRIMARY KEY,
  received_at TEXT NOT NULL,
  request TEXT NOT NULL
);
`;

/** What a finished clip (or its GeoJSON) is queued for upload with. */
export interface FootageFile {
  path: string;
  name: string;
  kind: 'clip';
  alarmId: null;
  capturedAt: string;
  timeSource: TimeSource;
  geotag: Fix | null;
  mime: string;
  requestId: string;
}

export interface FootageHandlerOptions {
  ref: VehicleRef;
  /** The agent's database, migrated with FOOTAGE_SCHEMA. */
  db: Db;
  /** The video cameras by name. */
  recorders: ReadonlyMap<string, VideoRecorder>;
  /** The media folder: clips go to clips/, pins to pins/. */
  mediaDir: string;
  log: Logger;
  /** The bus's best UTC now (GPS-corrected when it can be). */
  now: () => { iso: string; timeSource: TimeSource };
  /** The fix now, for the clip's location tag. */
  fix: () => Fix | null;
  /** Recent track points, for the GeoJSON beside the clip. Default: none (the GeoJSON has the location only). */
  track?: () => readonly TrackPoint[];
  /** Queue a finished file for upload; resolves with its file id, or null when it could not be queued. */
  enqueue: (f: FootageFile, bytes: number) => Promise<string | null>;
  /**
   * Store an answer in the outbox (lane clip). Call `commit` inside the
   * outbox's write transaction: it records the camera as handled atomically
   * with the answer. When it is not called, it is run just after, in a
   * transaction of its own (a crash between the two then re-answers once).
   */
  answer: (a: FootageAnswer, commit: () => void) => void;
  /** Longest window served. Default FOOTAGE_MAX_WINDOW_S (600 s). */
  maxWindowS?: number;
  /** How far after now a window may end (it is waited for). Default FOOTAGE_MAX_AHEAD_S (120 s). */
  maxAheadS?: number;
}

export class FootageHandler {
  private readonly work = new Set<Promise<void>>();
  /** Requests being cut now: re-sends meanwhile are ignored. */
  private readonly inFlight = new Set<string>();
  private readonly maxWindowS: number;
  private readonly maxAheadS: number;

  constructor(private readonly o: FootageHandlerOptions) {
    this.maxWindowS = o.maxWindowS ?? FOOTAGE_MAX_WINDOW_S;
    this.maxAheadS = o.maxAheadS ?? FOOTAGE_MAX_AHEAD_S;
  }

  /** A request from dispatch (its shape validated by FootageRequestSchema). Never throws. */
  handle(req: FootageRequest): void {
    try {
      this.start(req);
    } catch (err) {
      this.inFlight.delete(req.id);
      this.o.log.error({ event: 'footage.store-failed', requestId: req.id, err: (err as Error).message }, 'could not handle the footage request; dispatch will ask again');
    }
  }

  private start(req: FootageRequest): void {
    if (this.inFlight.has(req.id)) {
      this.o.log.info({ event: 'footage.duplicate', requestId: req.id, state: 'in progress' }, 'footage request already being handled');
      return;
    }
    const all = req.camera === null ? [...this.o.recorders.keys()] : [req.camera];
    const keys = all.length === 0 ? ['*'] : all;
    const done = this.handledCameras(req.id, keys);
    if (done === 'all' || keys.every((k) => done.has(k))) {
      this.o.log.info({ event: 'footage.duplicate', requestId: req.id, state: 'answered' }, 'footage request already handled');
      return;
    }
    this.o.log.info({ event: 'footage.requested', requestId: req.id, from: req.from, to: req.to, camera: req.camera, by: req.by, resumed: done.size > 0 });

    const problem = footageWindowProblem(req, { nowMs: Date.parse(this.o.now().iso), maxWindowS: this.maxWindowS, maxAheadS: this.maxAheadS });
    if (all.length === 0) {
      this.reply(req, null, all, problem ? 'failed' : 'unavailable', problem ?? 'this bus records no video (no video camera configured)', null, null);
      return;
    }
    this.inFlight.add(req.id);
    const jobs: Promise<void>[] = [];
    for (const camera of all) {
      if (done.has(camera)) continue;
      const rec = this.o.recorders.get(camera);
      if (problem) {
        this.reply(req, camera, all, 'failed', problem, rec ? ringSpan(rec) : null, null);
      } else if (!rec) {
        this.reply(req, camera, all, 'unavailable', `no video camera "${camera}" on this bus (it has: ${[...this.o.recorders.keys()].join(', ') || 'none'})`, null, null);
      } else {
        jobs.push(this.cut(req, rec, all));
      }
    }
    const p: Promise<void> = Promise.all(jobs).then(
      () => {
        this.inFlight.delete(req.id);
        this.work.delete(p);
      },
      () => {
        this.inFlight.delete(req.id);
        this.work.delete(p);
      },
    );
    this.work.add(p);
  }

  /** Cameras of this request already answered ('all' for a bare request-id row of the first version). */
  private handledCameras(requestId: string, keys: readonly string[]): Set<string> | 'all' {
    const rows = this.o.db.prepare('SELECT id FROM footage_requests WHERE id = ? OR id LIKE ?').all(requestId, `${requestId}/%`) as { id: string }[];
    if (rows.some((r) => r.id === requestId)) return 'all';
    const done = new Set(rows.map((r) => r.id.slice(requestId.length + 1)));
    return new Set(keys.filter((k) => done.has(k)));
  }

  private async cut(req: FootageRequest, rec: VideoRecorder, cameras: readonly string[]): Promise<void> {
    const fromMs = Date.parse(req.from);
    const toMs = Date.parse(req.to);
    try {
      // A request queued at the broker arrives as soon as the agent connects, which can be before the
      // recorder has loaded its ring from disk: an empty ring then would wrongly answer "not recorded".
      if (!(await ringLoaded(rec, RING_LOAD_WAIT_MS))) {
        this.reply(req, rec.name, cameras, 'failed', `video camera ${rec.name} has not started within ${RING_LOAD_WAIT_MS / 1000} s (${rec.status.detail}); ask again`, null, null);
        return;
      }
      // Nothing of it in the ring now and nothing to wait for: answer at once, without pinning anything.
      const now = rec.now();
      const coverage = footageCoverage(rec.segments(), fromMs, toMs, { nowMs: now, gaps: rec.gaps(), overwrittenBefore: rec.overwrittenBefore() });
      if (coverage.status === 'none' && toMs <= now) {
        this.reply(req, rec.name, cameras, 'unavailable', coverage.message, ringSpan(rec), null);
        return;
      }
      const clipsDir = join(this.o.mediaDir, 'clips');
      await mkdir(clipsDir, { recursive: true });
      // A clip of this request left by a run that died before answering may still be queued for upload: never overwrite it.
      let name = `footage-${req.id}-${rec.name}.mp4`;
      if (existsSync(join(clipsDir, name))) name = `footage-${req.id}-${rec.name}-${Date.now()}.mp4`;
      const fix = this.o.fix();
      const answer = await cutFootage(rec, {
        fromMs,
        toMs,
        out: join(clipsDir, name),
        pinDir: join(this.o.mediaDir, 'pins', `footage-${req.id}-${rec.name}`),
        location: fix ? { lat: fix.lat, lon: fix.lon, ...(fix.altM === null ? {} : { altM: fix.altM }) } : null,
        track: this.o.track?.() ?? [],
        meta: { requestId: req.id, by: req.by, fleet: this.o.ref.fleet, vehicle: this.o.ref.vehicle },
        maxWaitAheadMs: this.maxAheadS * 1000,
      });
      if (!answer.clip) {
        this.reply(req, rec.name, cameras, 'unavailable', answer.coverage.message, ringSpan(rec), null);
        return;
      }
      const clip = answer.clip;
      const capturedAt = new Date(clip.coveredFromMs).toISOString();
      const timeSource = this.o.now().timeSource;
      const fileId = await this.o.enqueue({ path: clip.file, name, kind: 'clip', alarmId: null, capturedAt, timeSource, geotag: fix, mime: 'video/mp4', requestId: req.id }, clip.bytes);
      // The GeoJSON beside the clip (its window, gaps and the track over it) goes after it, or goes away: nothing is left behind on the bus.
      const sidecarBytes = await stat(clip.sidecar).then((st) => st.size).catch(() => 0);
      const sidecarId =
        fileId && sidecarBytes > 0
          ? await this.o.enqueue({ path: clip.sidecar, name: name.replace(/\.mp4$/, '.geojson'), kind: 'clip', alarmId: null, capturedAt, timeSource, geotag: fix, mime: 'application/geo+json', requestId: req.id }, sidecarBytes)
          : null;
      if (!sidecarId) await rm(clip.sidecar, { force: true }).catch(() => {});
      if (!fileId) {
        await rm(clip.file, { force: true }).catch(() => {});
        this.reply(req, rec.name, cameras, 'failed', 'the clip was cut but could not be queued for upload (media quota full or upload stopped; see the bus log)', ringSpan(rec), null);
        return;
      }
      this.o.log.info({ event: 'footage.cut', requestId: req.id, camera: rec.name, status: answer.coverage.status, durationS: clip.durationS, bytes: clip.bytes, gaps: clip.gaps, fileId });
      this.reply(req, rec.name, cameras, answer.coverage.status === 'full' ? 'accepted' : 'partial', answer.coverage.message, ringSpan(rec), fileId);
    } catch (err) {
      this.o.log.error({ event: 'footage.failed', requestId: req.id, camera: rec.name, err: (err as Error).message }, 'could not cut the requested footage');
      this.reply(req, rec.name, cameras, 'failed', (err as Error).message.slice(0, 1000), ringSpan(rec), null);
    }
  }

  private reply(
    req: FootageRequest,
    camera: string | null,
    cameras: readonly string[],
    status: FootageAnswer['status'],
    reason: string,
    ring: FootageAnswer['ring'],
    fileId: string | null,
  ): void {
    const a: FootageAnswer = {
      v: 1,
      id: randomUUID(),
      fleet: this.o.ref.fleet,
      vehicle: this.o.ref.vehicle,
      requestId: req.id,
      camera,
      status,
      reason: reason.slice(0, 1000),
      ring,
      fileId,
      at: this.o.now().iso,
      cameras: [...cameras],
    };
    const record = this.o.db.prepare('INSERT OR IGNORE INTO footage_requests (id, received_at, request) VALUES (?, ?, ?)');
    let committed = false;
    const commit = () => {
      record.run(`${req.id}/${camera ?? '*'}`, a.at, JSON.stringify(req));
      committed = true;
    };
    try {
      this.o.answer(a, commit);
      if (!committed) writeTx(this.o.db, 'FULL', commit);
      this.o.log.info({ event: 'footage.answered', requestId: req.id, camera, status, reason, fileId });
    } catch (err) {
      this.o.log.error({ event: 'footage.answer-failed', requestId: req.id, camera, err: (err as Error).message }, 'could not store the footage answer; the request is handled again when dispatch re-sends it');
    }
  }

  /** Wait for cuts under way (clean stop, tests). */
  async idle(): Promise<void> {
    while (this.work.size) await Promise.all([...this.work]);
  }
}

/** How long a request waits for a recorder that has not started yet (the agent is starting). */
const RING_LOAD_WAIT_MS = 15_000;

/** Resolves true once the recorder has left 'idle' (start() loads the ring before it spawns the pipeline), false after timeoutMs. */
function ringLoaded(rec: VideoRecorder, timeoutMs: number): Promise<boolean> {
  if (rec.status.state !== 'idle') return Promise.resolve(true);
  return new Promise((resolve) => {
    const onStatus = () => {
      if (rec.status.state === 'idle') return;
      clearTimeout(timer);
      rec.off('status', onStatus);
      resolve(true);
    };
    const timer = setTimeout(() => {
      rec.off('status', onStatus);
      resolve(false);
    }, timeoutMs);
    rec.on('status', onStatus);
  });
}

/** What a camera's ring holds now, or null when it is empty. */
function ringSpan(rec: VideoRecorder): FootageAnswer['ring'] {
  const segs = rec.segments();
  const first = segs[0];
  const last = segs.at(-1);
  return first && last ? { from: new Date(first.startMs).toISOString(), to: new Date(last.endMs ?? rec.now()).toISOString() } : null;
}
