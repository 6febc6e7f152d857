// Evidence on alarm: what the police want after "where is the bus" is "what
// is happening on it". For each emergency (and incident) this takes a
// geotagged snapshot from every serial camera and queues it for the file
// upload at once, right behind the alarm itself; from every video camera's
// ring it pins the pre-roll at once, waits for the post-roll, cuts the clip
// [press − pre, press + post] with the fix as its location and the track as
// a GeoJSON sidecar, and queues it behind the snapshots (hal/video).
//
// None of it is on the alarm path: it starts after the alarm is stored and
// handed to the uplink, and a camera, a disk or a transfer failing here
// never touches the alarm. The upload yields to alarms and incidents not yet
// confirmed by dispatch, for at most ALARM_PRIORITY_MS after the last one, so
// a segment of a photo is never in the socket ahead of a fresh alarm.
//
// A clip is owed from the moment it is pinned until it is queued for upload,
// on disk (clip-jobs.ts): an agent stopped during the post-roll (a power cut
// right after the press) cuts it at its next start from what is left, and
// the clip says what the stop cost.
//
// Media quota (`media.maxBytes`): the bytes of evidence files waiting on the
// bus for dispatch to confirm them. Evidence of an alarm is never dropped
// for it (the quota is soft for it, as for alarms in the outbox): over the
// quota, a diag record says so. Files confirmed by dispatch are deleted from
// the bus at once: dispatch has verified its copy.

import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { FILE_UPLOAD_SCHEMA, FileUpload, type FileUploadConfig, type QueuedFile } from '../gateway/file-upload.ts';
import type { Outbox } from '../gateway/outbox.ts';
import type { Uplink } from '../gateway/uplink.ts';
import type { AlarmKind, AlarmMessage, DiagMessage, Fix, TimeSource } from '../protocol/messages.ts';
import type { Db } from '../common/sqlite.ts';
import type { VehicleRef } from '../protocol/topics.ts';
import { type CameraConfig, SnapshotTaker } from './snapshots.ts';
import { VideoRecorder } from '../hal/video/recorder.ts';
import { captureAlarmClip } from '../hal/video/alarm-clip.ts';
import type { Instant } from '../hal/video/clock.ts';
import type { TrackPoint as ClipTrackPoint } from '../hal/video/track-geojson.ts';
import { CLIP_JOBS_SCHEMA, type ClipJob, ClipJobBook } from './clip-jobs.ts';
import type { GpsClock } from './clock.ts';

export { CLIP_JOBS_SCHEMA };

export { FILE_UPLOAD_SCHEMA };

export const MediaConfigSchema = z
  .object({
    /** Folder for snapshots and clips waiting to be sent; default {storage.dir}/media. */
    dir: z.string().min(1).nullable().default(null),
    /** Quota of evidence waiting for dispatch, bytes (soft for alarm evidence: a diag record when exceeded). */
    maxBytes: z.number().int().min(1024 * 1024).default(1024 * 1024 * 1024),
  })
  .strict()
  .prefault({});
export type MediaConfig = z.output<typeof MediaConfigSchema>;

export const VideoCameraConfigSchema = z
  .object({
    /** Names the camera in files, logs and at dispatch. */
    name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, "_" or "-", 1 to 32 characters'),
    /**
     * The GStreamer source as typed after gst-launch-1.0, live: "v4l2src device=/dev/video0 ! ...",
     * "rtspsrc location=rtsp://... ! rtph264depay ! avdec_h264", or for the sim
     * "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1".
     */
    source: z.string().min(1),
    segmentS: z.number().min(0.5).max(60).default(2),
    keyframeIntervalS: z.number().min(0.2).max(10).default(1),
    maxSegments: z.number().int().min(3).max(100_000).default(60),
    maxBytes: z.number().int().min(1024 * 1024).default(512 * 1024 * 1024),
    bitrateKbps: z.number().int().min(32).max(50_000).optional(),
  })
  .strict();
export type VideoCameraConfig = z.output<typeof VideoCameraConfigSchema>;

export const VideoConfigSchema = z
  .array(VideoCameraConfigSchema)
  .max(8)
  .refine((cams) => new Set(cams.map((c) => c.name)).size === cams.length, 'video camera names must be unique')
  .default([]);

export const ClipsConfigSchema = z
  .object({
    /** Seconds of video before the press in an alarm clip. */
    preRollS: z.number().min(0).max(600).default(20),
    /** Seconds after the press. */
    postRollS: z.number().min(0).max(600).default(10),
  })
  .strict()
  .refine((c) => c.preRollS + c.postRollS > 0, 'preRollS and postRollS cannot both be 0')
  .prefault({});
export type ClipsConfig = z.output<typeof ClipsConfigSchema>;

/** Track kept in memory for clip sidecars: a bit more than the longest clip window. */
const TRACK_KEEP_MS = 15 * 60_000;

/** How long after an alarm the file upload holds back while alarms wait for dispatch's receipt. */
const ALARM_PRIORITY_MS = 15_000;

export interface EvidenceOptions {
  ref: VehicleRef;
  db: Db;
  outbox: Outbox;
  uplink: Uplink;
  cameras: readonly CameraConfig[];
  video: readonly VideoCameraConfig[];
  clips: ClipsConfig;
  media: MediaConfig;
  storageDir: string;
  files: FileUploadConfig;
  log: Logger;
  /** The agent's clock (firmware/clock.ts): monotonic instants to corrected UTC. */
  clock: GpsClock;
  /** Record a diagnostics message for dispatch. */
  diag: (d: Omit<DiagMessage, 'v' | 'id' | 'fleet' | 'vehicle' | 'at'>) => void;
}

export class Evidence {
  readonly dir: string;
  readonly snapshots: SnapshotTaker;
  /** One recorder per video camera, by name. */
  readonly recorders = new Map<string, VideoRecorder>();
  /** Recent fixes at their monotonic arrival, for the clips' GeoJSON track (UTC read when a clip asks). */
  private track: (Omit<ClipTrackPoint, 't'> & { mono: number })[] = [];
  private upload: FileUpload | null = null;
  private lastAlarmAt = 0;
  private readonly work = new Set<Promise<unknown>>();
  private stopped = false;
  /** Clips owed to dispatch, on disk until queued. */
  private readonly jobs: ClipJobBook;
  /** Presses of this process's clips still being made: their rows follow the clock when it moves. */
  private readonly pressOf = new Map<string, { alarmId: string; camera: string; mono: number }>();
  /** Aborts clips waiting for their post-roll at stop(): the next start cuts them. */
  private readonly stopping = new AbortController();
  /** Each recorder's start (its ring loaded from disk): resumed clips wait for it. */
  private readonly recorderStarts = new Map<string, Promise<void>>();

  constructor(private readonly o: EvidenceOptions) {
    this.dir = o.media.dir ?? join(o.storageDir, 'media');
    this.jobs = new ClipJobBook(o.db);
    o.clock.on('change', () => this.clockMoved());
    this.snapshots = new SnapshotTaker(o.cameras, join(this.dir, 'snapshots'), o.log);
    for (const v of o.video) {
      this.recorders.set(
        v.name,
        new VideoRecorder({
          name: v.name,
          source: v.source,
          dir: join(this.dir, 'ring', v.name),
          segmentS: v.segmentS,
          keyframeIntervalS: v.keyframeIntervalS,
          maxSegments: v.maxSegments,
          maxBytes: v.maxBytes,
          ...(v.bitrateKbps ? { bitrateKbps: v.bitrateKbps } : {}),
          // Segment times, press times and track on one clock: the GPS-corrected one.
          clock: o.clock,
          log: o.log,
        }),
      );
    }
  }

  /** The recent track in corrected UTC as of now, for clip sidecars. */
  trackPoints(): ClipTrackPoint[] {
    return this.track.map(({ mono, ...p }) => ({ t: this.o.clock.utcAt(mono), ...p }));
  }

  /** A fix, at the monotonic time it arrived: kept for the clips' track sidecar. */
  noteFix(lat: number, lon: number, altM: number | null, atMono: number): void {
    // Only clips carry a track: a bus without video cameras keeps none (up to 15 min of points, ~0.1 MB).
    if (this.recorders.size === 0) return;
    const last = this.track.at(-1);
    if (last && atMono - last.mono < 1000) return;
    this.track.push({ mono: atMono, lat, lon, ...(altM === null ? {} : { altM }) });
    if (this.track[0]!.mono < atMono - TRACK_KEEP_MS) this.track = this.track.filter((p) => p.mono >= atMono - TRACK_KEEP_MS);
  }

  /** Open the cameras and start the upload on the uplink's MQTT session (call after uplink.start()). */
  start(): void {
    const { o } = this;
    const session = o.uplink.mqtt;
    if (!session) throw new Error('evidence: start the uplink first');
    this.snapshots.start();
    for (const rec of this.recorders.values()) {
      rec.on('error', (err) => o.log.warn({ event: 'video.error', camera: rec.name, err: err.message }, 'video recorder error'));
      this.recorderStarts.set(
        rec.name,
        rec.start().catch((err: Error) => o.log.error({ event: 'video.start-failed', camera: rec.name, err: err.message }, 'video recorder could not start')),
      );
    }
    const upload = new FileUpload({
      ref: o.ref,
      db: o.db,
      session,
      config: o.files,
      log: o.log,
      trust: o.uplink.trust,
      signer: o.uplink.signer,
      yieldTo: () => Date.now() - this.lastAlarmAt < ALARM_PRIORITY_MS && o.uplink.alarmsWaiting(),
    });
    upload.on('delivered', (f) => this.keep(this.onDelivered(f)));
    upload.on('failed', (f) => {
      o.diag({ event: 'evidence.failed', reason: `${f.kind} ${f.name} for alarm ${f.alarmId ?? '-'} could not be sent: ${f.error ?? 'unknown'}`.slice(0, 500) });
    });
    o.uplink.on('confirmed', () => upload.kick());
    upload.start();
    this.upload = upload;
    this.keep(this.resumeClips());
  }

  /** Clips a stopped run owed: cut now from the pins and the ring, stating the outage (after the upload is up, to queue them). */
  private async resumeClips(): Promise<void> {
    let owed: ClipJob[];
    try {
      owed = this.jobs.pending();
    } catch (err) {
      this.o.log.error({ event: 'clip.resume-failed', err: (err as Error).message }, 'cannot read the clips owed from the last run');
      return;
    }
    for (const job of owed) {
      const rec = this.recorders.get(job.camera);
      const name = `${job.alarmId}-${job.camera}.mp4`;
      if (this.upload?.list().some((f) => f.alarmId === job.alarmId && f.name === name)) {
        this.jobs.done(job.alarmId, job.camera); // queued just before the stop
        continue;
      }
      if (!rec) {
        this.clipFailed(job.alarmId, job.camera, `camera ${job.camera} is no longer in the config; the clip owed from before the restart cannot be cut`);
        continue;
      }
      // The ring must be loaded from disk before anything can be pinned from it.
      await this.recorderStarts.get(rec.name);
      if (this.stopped) return;
      this.o.log.warn(
        { event: 'clip.resumed', alarmId: job.alarmId, camera: job.camera, pressAt: new Date(job.pressMs).toISOString() },
        'cutting an alarm clip the last run did not finish (the agent stopped during its post-roll)',
      );
      this.startClip(rec, job, { utc: job.pressMs }, true);
    }
  }

  /** GPS time arrived (or moved) while clips were being made: their rows on disk follow, so a restart cuts the same window. */
  private clockMoved(): void {
    for (const p of this.pressOf.values()) {
      try {
        this.jobs.repress(p.alarmId, p.camera, this.o.clock.utcAt(p.mono), this.o.clock.timeSource);
      } catch (err) {
        this.o.log.warn({ event: 'clip.repress-failed', alarmId: p.alarmId, camera: p.camera, err: (err as Error).message });
      }
    }
  }

  /** The file upload (for tests, benches and the footage handler). */
  get files(): FileUpload | null {
    return this.upload;
  }

  /**
   * An alarm was stored and handed to the uplink: gather its evidence. Never
   * throws. `pressMono`: the monotonic time of the press (performance.now()).
   */
  onAlarm(alarm: AlarmMessage, pressMono: number): void {
    this.lastAlarmAt = Date.now();
    if (this.stopped) return;
    // Pin the pre-roll first, synchronously: the ring must not drop it while the cameras are asked.
    for (const rec of this.recorders.values()) {
      const job: ClipJob = {
        alarmId: alarm.id,
        camera: rec.name,
        kind: alarm.kind as AlarmKind,
        pressMs: this.o.clock.utcAt(pressMono),
        timeSource: this.o.clock.timeSource,
        fix: alarm.fix,
        createdAt: new Date().toISOString(),
      };
      try {
        this.jobs.add(job);
        this.pressOf.set(`${alarm.id}/${rec.name}`, { alarmId: alarm.id, camera: rec.name, mono: pressMono });
      } catch (err) {
        // A full or failing disk: the clip is still made while this process lives.
        this.o.log.error({ event: 'clip.job-store-failed', alarmId: alarm.id, camera: rec.name, err: (err as Error).message }, 'cannot record the clip owed on disk; it is lost if the agent stops before it is cut');
      }
      this.startClip(rec, job, { mono: pressMono }, false);
    }
    if (this.snapshots.cameras.length) this.keep(this.takeSnapshots(alarm));
  }

  private startClip(rec: VideoRecorder, owed: ClipJob, press: Instant, resumed: boolean): void {
    const { o } = this;
    const alarmId = owed.alarmId;
    const name = `${alarmId}-${rec.name}.mp4`;
    const fix = owed.fix;
    const settle = () => {
      this.pressOf.delete(`${alarmId}/${rec.name}`);
      try {
        this.jobs.done(alarmId, rec.name);
      } catch (err) {
        o.log.warn({ event: 'clip.job-done-failed', alarmId, camera: rec.name, err: (err as Error).message });
      }
    };
    let job;
    try {
      job = captureAlarmClip(rec, {
        press,
        preS: o.clips.preRollS,
        postS: o.clips.postRollS,
        pinDir: join(this.dir, 'pins', `${alarmId}-${rec.name}`),
        out: join(this.dir, 'clips', name),
        location: fix ? { lat: fix.lat, lon: fix.lon, ...(fix.altM === null ? {} : { altM: fix.altM }) } : null,
        track: () => this.trackPoints(),
        meta: { alarmId, kind: owed.kind, fleet: o.ref.fleet, vehicle: o.ref.vehicle, camera: rec.name, ...(resumed ? { resumedAfterRestart: true } : {}) },
        signal: this.stopping.signal,
      });
    } catch (err) {
      this.clipFailed(alarmId, rec.name, (err as Error).message);
      settle();
      return;
    }
    o.log.info({ event: 'clip.pinned', alarmId, camera: rec.name, segments: job.pinned.length, preRollS: o.clips.preRollS, postRollS: o.clips.postRollS, resumed });
    this.keep(
      (async () => {
        await mkdir(join(this.dir, 'clips'), { recursive: true });
        let clip;
        try {
          clip = await job.done;
        } catch (err) {
          if (this.stopping.signal.aborted) {
            // Stopping during the post-roll: the row and the pins stay, the next start cuts it.
            o.log.info({ event: 'clip.deferred', alarmId, camera: rec.name }, 'agent stopping before the post-roll ended: the clip is cut at the next start');
            return;
          }
          this.clipFailed(alarmId, rec.name, (err as Error).message);
          settle();
          return;
        }
        o.log.info({ event: 'clip.cut', alarmId, camera: rec.name, durationS: clip.durationS, bytes: clip.bytes, gaps: clip.gaps, file: name, resumed });
        if (clip.gaps.length) {
          this.safeDiag({ event: 'clip.gap', reason: `alarm ${alarmId}: camera ${rec.name}: ${clip.gaps.length} gap(s) in the recording${resumed ? ' (the agent stopped during the post-roll)' : ''}, stated in the clip`.slice(0, 500) });
        }
        const capturedAt = new Date(clip.coveredFromMs).toISOString();
        const timeSource = o.clock.timeSource;
        const queued = await this.enqueue({ path: clip.file, name, kind: 'clip', alarmId, capturedAt, timeSource, geotag: fix, mime: 'video/mp4' }, clip.bytes);
        // The track over the clip goes with it, as a file of its own beside the clip at dispatch.
        const sidecarBytes = await stat(clip.sidecar).then((st) => st.size).catch(() => 0);
        if (queued && sidecarBytes > 0) {
          await this.enqueue(
            { path: clip.sidecar, name: name.replace(/\.mp4$/, '.geojson'), kind: 'clip', alarmId, capturedAt, timeSource, geotag: fix, mime: 'application/geo+json' },
            sidecarBytes,
          );
        }
        // Queued (or refused with a diag record saying why): nothing more is owed.
        settle();
      })(),
    );
  }

  private clipFailed(alarmId: string, camera: string, error: string): void {
    this.o.log.error({ event: 'clip.failed', alarmId, camera, err: error }, 'alarm clip failed; the alarm is not affected');
    this.safeDiag({ event: 'clip.failed', reason: `alarm ${alarmId}: camera ${camera}: ${error}`.slice(0, 500) });
  }

  private async takeSnapshots(alarm: AlarmMessage): Promise<void> {
    const results = await this.snapshots.take(alarm.id, alarm.fix, () => new Date(this.o.clock.utcNow()));
    for (const r of results) {
      if (!r.ok) {
        this.safeDiag({ event: 'snapshot.failed', reason: `alarm ${alarm.id}: camera ${r.camera}: ${r.error}`.slice(0, 500) });
        continue;
      }
      await this.enqueue({ path: r.file, name: r.name, kind: 'snapshot', alarmId: alarm.id, capturedAt: r.takenAt.toISOString(), timeSource: this.o.clock.timeSource, geotag: alarm.fix, mime: 'image/jpeg' }, r.bytes);
    }
  }

  /** Bytes of evidence files waiting for dispatch (counted against media.maxBytes). */
  waitingBytes(): number {
    return this.upload?.list('pending').reduce((sum, q) => sum + q.size, 0) ?? 0;
  }

  /** Queue a finished evidence file for upload, after the quota check. */
  async enqueue(
    f: { path: string; name: string; kind: 'snapshot' | 'clip'; alarmId: string | null; capturedAt: string; timeSource: TimeSource; geotag: Fix | null; mime: string; requestId?: string },
    bytes: number,
  ): Promise<QueuedFile | null> {
    const upload = this.upload;
    if (!upload) return null;
    const waiting = this.waitingBytes();
    if (waiting + bytes > this.o.media.maxBytes && f.alarmId === null) {
      // Footage asked for without an alarm gives way: the quota keeps room for alarm evidence.
      this.o.log.warn({ event: 'media.full', waiting, bytes, maxBytes: this.o.media.maxBytes, file: f.name }, 'media quota full: footage not queued');
      this.safeDiag({ event: 'media.full', bytes: waiting + bytes, reason: `evidence waiting ${waiting} bytes + ${f.name} ${bytes} bytes > media.maxBytes ${this.o.media.maxBytes}: not queued` });
      await rm(f.path, { force: true }).catch(() => {});
      return null;
    }
    if (waiting + bytes > this.o.media.maxBytes) {
      this.o.log.warn({ event: 'media.over-quota', waiting, bytes, maxBytes: this.o.media.maxBytes, file: f.name }, 'media quota exceeded by alarm evidence: kept all the same');
      this.safeDiag({ event: 'media.over-quota', bytes: waiting + bytes, reason: `evidence waiting ${waiting + bytes} bytes > media.maxBytes ${this.o.media.maxBytes}; ${f.name} kept (alarm evidence is never dropped)` });
    }
    try {
      const q = await upload.enqueue(f);
      this.o.log.info({ event: 'evidence.queued', kind: f.kind, alarmId: f.alarmId, file: f.name, bytes, fileId: q.id });
      return q;
    } catch (err) {
      this.o.log.error({ event: 'evidence.queue-failed', file: f.name, err: (err as Error).message }, 'could not queue evidence for upload');
      this.safeDiag({ event: 'evidence.queue-failed', reason: `${f.name}: ${(err as Error).message}`.slice(0, 500) });
      return null;
    }
  }

  private async onDelivered(f: QueuedFile): Promise<void> {
    this.o.log.info({ event: 'evidence.delivered', kind: f.kind, alarmId: f.alarmId, file: f.name, fileId: f.id, bytes: f.size });
    await rm(f.path, { force: true }).catch((err: Error) => this.o.log.warn({ event: 'media.cleanup-failed', file: f.path, err: err.message }));
  }

  private safeDiag(d: Omit<DiagMessage, 'v' | 'id' | 'fleet' | 'vehicle' | 'at'>): void {
    try {
      this.o.diag(d);
    } catch (err) {
      this.o.log.error({ event: 'diag.store-failed', err: (err as Error).message }, 'could not record an evidence diagnostic');
    }
  }

  private keep(p: Promise<unknown>): void {
    const done = p
      .catch((err: unknown) => this.o.log.error({ event: 'evidence.error', err: (err as Error).message }, 'evidence work failed'))
      .finally(() => this.work.delete(done));
    this.work.add(done);
  }

  /** Wait for evidence work under way (tests, clean stop). */
  async idle(): Promise<void> {
    while (this.work.size) await Promise.all([...this.work]);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    // A clip waiting for its post-roll is not waited for: its row and its pins
    // stay, and the next start cuts it (stating the outage).
    this.stopping.abort();
    await Promise.all([...this.recorders.values()].map((r) => r.stop().catch(() => {})));
    await Promise.race([this.idle(), new Promise((r) => setTimeout(r, 2000))]);
    await this.upload?.stop();
    await this.snapshots.close();
  }
}
