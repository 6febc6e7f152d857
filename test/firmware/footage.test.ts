// FootageHandler on a real ring: a live videotestsrc recorded by a real
// gst-launch-1.0 into 1 s segments (a ring of 4), a real SQLite file for the
// handled-request record, ffmpeg for the cut. The outbox and the upload are
// stood in for by arrays (the process-level test, test/integration/footage,
// has the real ones over Mosquitto). Every wait has a deadline; the recorder
// is stopped by its own stop().

import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FOOTAGE_SCHEMA, type FootageFile, FootageHandler } from '../../firmware/footage.ts';
import type { VideoRecorder } from '../../hal/video/recorder.ts';
import type { FootageAnswer, FootageRequest } from '../../protocol/messages.ts';
import { type Db, migrate, openDatabase } from '../../common/sqlite.ts';
import { until } from '../../scripts/lib/until.ts';
import { recordingRing } from '../helpers/video-ring.ts';

describe('FootageHandler on a real video ring', () => {
  let dir: string;
  let db: Db;
  let rec: VideoRecorder;
  let firstSegmentStartMs: number;
  const logs: Record<string, unknown>[] = [];
  const log = pino(
    { level: 'info' },
    new Writable({
      write(chunk, _enc, cb) {
        for (const line of String(chunk).split('\n').filter(Boolean)) logs.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    }),
  );
  let answers: FootageAnswer[];
  let queued: FootageFile[];
  /** Answers to refuse (as if the outbox write failed), counted down. */
  let failAnswers = 0;

  const handler = () =>
    new FootageHandler({
      ref: { fleet: 'city', vehicle: 'bus-1' },
      db,
      recorders: new Map([['cabin', rec]]),
      mediaDir: join(dir, 'media'),
      log,
      now: () => ({ iso: new Date().toISOString(), timeSource: 'system' }),
      fix: () => null,
      track: () => [{ t: Date.now() - 1000, lat: 34.26, lon: 108.94 }],
      enqueue: async (f) => {
        queued.push(f);
        return randomUUID();
      },
      // As the agent does: the answer's outbox row and the handled record in one transaction.
      answer: (a, commit) =>
        db.transaction(() => {
          if (failAnswers > 0) {
            failAnswers--;
            throw new Error('disk I/O error (test)');
          }
          answers.push(a);
          commit();
        })(),
    });

  const request = (over: Partial<FootageRequest> = {}): FootageRequest => ({
    v: 1,
    id: randomUUID(),
    from: new Date(Date.now() - 2500).toISOString(),
    to: new Date(Date.now() - 500).toISOString(),
    camera: 'cabin',
    by: 'test',
    at: new Date().toISOString(),
    ...over,
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'busguard-footage-'));
    db = openDatabase(join(dir, 'outbox.db'));
    migrate(db, [FOOTAGE_SCHEMA]);
    // 8 one-second segments: about 7 s of footage, room for a cut that a busy machine makes slow, and still a ring that wraps within the file.
    rec = await recordingRing({ name: 'cabin', dir: join(dir, 'media', 'video', 'cabin'), maxSegments: 8, stallMs: 8000 }, 3);
    firstSegmentStartMs = rec.segments()[0]!.startMs;
  }, 40_000);

  afterAll(async () => {
    await rec?.stop();
    db?.close();
    await rm(dir, { recursive: true, force: true });
  });

  // Each test reads only its own answers and files.
  beforeEach(() => {
    answers = [];
    queued = [];
  });

  it('a window in the ring: cut, queued with its request id (clip, then its GeoJSON), answered accepted with the file id and the ring', async () => {
    const h = handler();
    const req = request();
    h.handle(req);
    await h.idle();
    expect(answers).toHaveLength(1);
    const a = answers[0]!;
    expect(a).toMatchObject({ requestId: req.id, camera: 'cabin', status: 'accepted', cameras: ['cabin'] });
    expect(a.fileId).toMatch(/^[0-9a-f-]{36}$/);
    expect(Date.parse(a.ring!.from)).toBeLessThanOrEqual(Date.parse(req.from));
    expect(queued.map((f) => f.mime)).toEqual(['video/mp4', 'application/geo+json']);
    expect(queued.every((f) => f.requestId === req.id && f.alarmId === null && f.kind === 'clip')).toBe(true);
    expect(existsSync(queued[0]!.path)).toBe(true);
    const geo = JSON.parse(readFileSync(queued[1]!.path, 'utf8')) as { features: { properties: Record<string, unknown> }[] };
    expect(JSON.stringify(geo)).toContain(req.id);
    // Nothing pinned is left behind.
    expect(existsSync(join(dir, 'media', 'pins', `footage-${req.id}-cabin`))).toBe(false);
  }, 40_000);

  it('the same request again, while it is cut and after, and after a restart: cut once, answered once', async () => {
    const h = handler();
    const req = request();
    h.handle(req);
    h.handle(req); // re-sent while being cut
    await h.idle();
    h.handle(req); // re-sent after the answer
    await h.idle();
    const restarted = handler(); // same database, new process
    restarted.handle(req);
    await restarted.idle();
    expect(answers.filter((a) => a.requestId === req.id)).toHaveLength(1);
    expect(queued.filter((f) => f.mime === 'video/mp4')).toHaveLength(1);
    const dups = logs.filter((l) => l.event === 'footage.duplicate' && l.requestId === req.id).map((l) => l.state);
    expect(dups).toEqual(['in progress', 'answered', 'answered']);
  }, 40_000);

  it('an answer that could not be stored is not recorded as handled: the re-sent request is answered', async () => {
    failAnswers = 1;
    const h = handler();
    const req = request();
    h.handle(req);
    await h.idle();
    expect(answers).toHaveLength(0);
    expect(logs.some((l) => l.event === 'footage.answer-failed' && l.requestId === req.id)).toBe(true);
    h.handle(req);
    await h.idle();
    expect(answers.map((a) => a.status)).toEqual(['accepted']);
    // The first cut's file was kept (it may already be queued): the second has a name of its own.
    expect(new Set(queued.filter((f) => f.mime === 'video/mp4').map((f) => f.path)).size).toBe(2);
  }, 40_000);

  it('a window the ring has already overwritten: unavailable, saying so and where the ring starts now, with nothing cut', async () => {
    await until(() => rec.segments()[0]!.startMs > firstSegmentStartMs + 1500, 20_000, 'the ring to wrap past its first segments');
    const h = handler();
    const req = request({ from: new Date(firstSegmentStartMs + 100).toISOString(), to: new Date(firstSegmentStartMs + 900).toISOString() });
    h.handle(req);
    await h.idle();
    expect(answers).toHaveLength(1);
    const a = answers[0]!;
    expect(a.status).toBe('unavailable');
    expect(a.fileId).toBeNull();
    expect(a.reason).toMatch(/is no longer in the ring \(overwritten; the oldest footage in the ring starts at \d{4}-/);
    expect(Date.parse(a.ring!.from)).toBeGreaterThan(Date.parse(req.to));
    expect(a.reason).toContain(a.ring!.from.slice(0, 19));
    expect(queued).toHaveLength(0);
  }, 40_000);

  it('a window ending a little after now is waited for, then cut', async () => {
    const h = handler();
    const req = request({ from: new Date(Date.now() - 1000).toISOString(), to: new Date(Date.now() + 1500).toISOString() });
    h.handle(req);
    await h.idle();
    expect(answers.map((a) => a.status)).toEqual(['accepted']);
  }, 40_000);

  it('a bad window or an unknown camera: answered (failed / unavailable) with the reason, never cut, never thrown', async () => {
    const h = handler();
    const now = Date.now();
    const cases: [FootageRequest, FootageAnswer['status'], RegExp][] = [
      [request({ from: new Date(now - 1000).toISOString(), to: new Date(now - 2000).toISOString() }), 'failed', /must be before to/],
      [request({ from: new Date(now - 700_000).toISOString(), to: new Date(now - 1000).toISOString() }), 'failed', /at most 600 s/],
      [request({ from: '2099-01-01T00:00:00.000Z', to: '2099-01-01T00:01:00.000Z' }), 'failed', /at most 120 s ahead/],
      [request({ camera: 'rear' }), 'unavailable', /no video camera "rear" on this bus \(it has: cabin\)/],
    ];
    for (const [req] of cases) expect(() => h.handle(req)).not.toThrow();
    await h.idle();
    expect(answers).toHaveLength(cases.length);
    for (const [req, status, reason] of cases) {
      const a = answers.find((x) => x.requestId === req.id)!;
      expect(a.status, req.id).toBe(status);
      expect(a.reason).toMatch(reason);
    }
    expect(queued).toHaveLength(0);
  }, 20_000);

  it('a bus without video answers every request unavailable, once', async () => {
    const h = new FootageHandler({
      ref: { fleet: 'city', vehicle: 'bus-1' },
      db,
      recorders: new Map(),
      mediaDir: join(dir, 'media'),
      log,
      now: () => ({ iso: new Date().toISOString(), timeSource: 'system' }),
      fix: () => null,
      enqueue: async () => null,
      answer: (a) => answers.push(a), // a caller that does not use the commit hook: recorded all the same
    });
    const req = request({ camera: null });
    h.handle(req);
    h.handle(req);
    await h.idle();
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ camera: null, cameras: [], status: 'unavailable', reason: 'this bus records no video (no video camera configured)' });
  });
});
