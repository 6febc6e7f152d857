// Footage on request: dispatch asks for [from, to] of one camera (or every
// camera); the bus cuts that clip from its ring and uploads it as evidence,
// or answers that the window is no longer (or not) in the ring. Each
// camera's answer goes through the outbox (lane clip: never evicted,
// receipted, applied once at dispatch); the clip itself through the file
// upload, linked to the request by its id.
//
// Each request is handled once: its id is recorded in the agent's database
// before any work, so a request dispatch re-sends (it does until it has an
// answer) or one re-delivered after an agent restart is not cut twice; the
// answer already in the outbox covers it. A clip that was being cut when the
// agent died is not resumed: its answer never left, and dispatch sees no
// answer for that camera (the CLI says so when it gives up waiting).

import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { cutFootage, footageCoverage } from '../hal/video/footage.ts';
import type { VideoRecorder } from '../hal/video/recorder.ts';
import type { FootageAnswer, FootageRequest, Fix, TimeSource } from '../protocol/messages.ts';
import type { Db } from '../protocol/sqlite.ts';
import type { VehicleRef } from '../protocol/topics.ts';

export const FOOTAGE_SCHEMA = `
CREATE TABLE footage_requests (
  id TEXT PRIMARY KEY,
  received_at TEXT NOT NULL,
  request TEXT NOT NULL
);
`;

/** How far beyond now a window may end and still be waited for. */
const MAX_WAIT_AHEAD_MS = 120_000;

export interface FootageHandlerOptions {
  ref: VehicleRef;
  db: Db;
  recorders: ReadonlyMap<string, VideoRecorder>;
  mediaDir: string;
  log: Logger;
  now: () => { iso: string; timeSource: TimeSource };
  /** The fix now, for the clip's location tag. */
  fix: () => Fix | null;
  /** Queue a finished clip for upload; resolves with its file id, or null when it could not be queued. */
  enqueue: (f: { path: string; name: string; kind: 'clip'; alarmId: null; capturedAt: string; timeSource: TimeSource; geotag: Fix | null; mime: string; requestId: string }, bytes: number) => Promise<string | null>;
  /** Store an answer in the outbox (lane clip). */
  answer: (a: FootageAnswer) => void;
}

export class FootageHandler {
  private readonly work = new Set<Promise<void>>();

  constructor(private readonly o: FootageHandlerOptions) {}

  /** A request from dispatch (already validated by its schema). Never throws. */
  handle(req: FootageRequest): void {
    let fresh: boolean;
    try {
      fresh = this.o.db.prepare('INSERT OR IGNORE INTO footage_requests (id, received_at, request) VALUES (?, ?, ?)').run(req.id, this.o.now().iso, JSON.stringify(req)).changes === 1;
    } catch (err) {
      this.o.log.error({ event: 'footage.store-failed', requestId: req.id, err: (err as Error).message }, 'could not record the footage request; dispatch will ask again');
      return;
    }
    if (!fresh) {
      this.o.log.info({ event: 'footage.duplicate', requestId: req.id }, 'footage request already handled');
      return;
    }
    this.o.log.info({ event: 'footage.requested', requestId: req.id, from: req.from, to: req.to, camera: req.camera, by: req.by });
    const cameras = req.camera === null ? [...this.o.recorders.keys()] : [req.camera];
    if (cameras.length === 0) {
      this.reply(req, null, 'unavailable', 'this bus records no video (no video camera configured)', null, null);
      return;
    }
    for (const camera of cameras) {
      const rec = this.o.recorders.get(camera);
      if (!rec) {
        this.reply(req, camera, 'unavailable', `no video camera "${camera}" on this bus (it has: ${[...this.o.recorders.keys()].join(', ') || 'none'})`, null, null);
        continue;
      }
      const p = this.cut(req, rec).finally(() => this.work.delete(p));
      this.work.add(p);
    }
  }

  private async cut(req: FootageRequest, rec: VideoRecorder): Promise<void> {
    const fromMs = Date.parse(req.from);
    const toMs = Date.parse(req.to);
    const ring = () => {
      const segs = rec.segments();
      const first = segs[0];
      const last = segs.at(-1);
      return first && last ? { from: new Date(first.startMs).toISOString(), to: new Date(last.endMs ?? rec.now()).toISOString() } : null;
    };
    try {
      // Nothing of it in the ring now and nothing to wait for: answer at once, without pinning anything.
      const now = rec.now();
      const coverage = footageCoverage(rec.segments(), fromMs, toMs, { nowMs: now, gaps: rec.gaps() });
      if (coverage.status === 'none' && (toMs <= now || toMs - now > MAX_WAIT_AHEAD_MS)) {
        const reason = toMs - now > MAX_WAIT_AHEAD_MS ? `${coverage.message}; the window ends more than ${MAX_WAIT_AHEAD_MS / 1000} s from now` : coverage.message;
        this.reply(req, rec.name, 'unavailable', reason, ring(), null);
        return;
      }
      const name = `footage-${req.id}-${rec.name}.mp4`;
      const fix = this.o.fix();
      await mkdir(join(this.o.mediaDir, 'clips'), { recursive: true });
      const answer = await cutFootage(rec, {
        fromMs,
        toMs,
        out: join(this.o.mediaDir, 'clips', name),
        pinDir: join(this.o.mediaDir, 'pins', `footage-${req.id}-${rec.name}`),
        location: fix ? { lat: fix.lat, lon: fix.lon } : null,
        meta: { requestId: req.id, by: req.by, fleet: this.o.ref.fleet, vehicle: this.o.ref.vehicle },
        maxWaitAheadMs: MAX_WAIT_AHEAD_MS,
      });
      if (!answer.clip) {
        this.reply(req, rec.name, 'unavailable', answer.coverage.message, ring(), null);
        return;
      }
      const clip = answer.clip;
      const stamp = this.o.now();
      const fileId = await this.o.enqueue(
        { path: clip.file, name, kind: 'clip', alarmId: null, capturedAt: new Date(clip.coveredFromMs).toISOString(), timeSource: stamp.timeSource, geotag: fix, mime: 'video/mp4', requestId: req.id },
        clip.bytes,
      );
      if (!fileId) {
        this.reply(req, rec.name, 'failed', 'the clip was cut but could not be queued for upload (see the bus log)', ring(), null);
        return;
      }
      this.o.log.info({ event: 'footage.cut', requestId: req.id, camera: rec.name, status: answer.coverage.status, durationS: clip.durationS, bytes: clip.bytes, gaps: clip.gaps, fileId });
      this.reply(req, rec.name, answer.coverage.status === 'full' ? 'accepted' : 'partial', answer.coverage.message, ring(), fileId);
    } catch (err) {
      this.o.log.error({ event: 'footage.failed', requestId: req.id, camera: rec.name, err: (err as Error).message }, 'could not cut the requested footage');
      this.reply(req, rec.name, 'failed', (err as Error).message.slice(0, 1000), ring(), null);
    }
  }

  private reply(req: FootageRequest, camera: string | null, status: FootageAnswer['status'], reason: string, ring: FootageAnswer['ring'], fileId: string | null): void {
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
    };
    try {
      this.o.answer(a);
      this.o.log.info({ event: 'footage.answered', requestId: req.id, camera, status, reason, fileId });
    } catch (err) {
      this.o.log.error({ event: 'footage.answer-failed', requestId: req.id, err: (err as Error).message }, 'could not store the footage answer');
    }
  }

  /** Wait for cuts under way (clean stop, tests). */
  async idle(): Promise<void> {
    while (this.work.size) await Promise.all([...this.work]);
  }
}
