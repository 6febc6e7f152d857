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
import type { AlarmMessage, DiagMessage, Fix, TimeSource } from '../protocol/messages.ts';
import type { Db } from '../protocol/sqlite.ts';
import type { VehicleRef } from '../protocol/topics.ts';
import { type CameraConfig, SnapshotTaker } from './snapshots.ts';
import { VideoRecorder } from '../hal/video/recorder.ts';
import { captureAlarmClip } from '../hal/video/alarm-clip.ts';
import type { TrackPoint as ClipTrackPoint } from '../hal/video/track-geojson.ts';

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
  /** Corrected UTC time now (firmware/clock.ts). */
  now: () => { date: Date; iso: string; timeSource: TimeSource };
  /** Record a diagnostics message for dispatch. */
  diag: (d: Omit<DiagMessage, 'v' | 'id' | 'fleet' | 'vehicle' | 'at'>) => void;
}

export class Evidence {
  readonly dir: string;
  private readonly snapshots: SnapshotTaker;
  /** One recorder per video camera, by name. */
  readonly recorders = new Map<string, VideoRecorder>();
  /** Recent fixes with corrected UTC times, for the clips' GeoJSON track. */
  private track: ClipTrackPoint[] = [];
  private upload: FileUpload | null = null;
  private lastAlarmAt = 0;
  private readonly work = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(private readonly o: EvidenceOptions) {
    this.dir = o.media.dir ?? join(o.storageDir, 'media');
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
          // Segment times and press times on the same clock: the GPS-corrected one.
          clock: () => o.now().date.getTime(),
          log: o.log,
        }),
      );
    }
  }

  /** The recent track (corrected UTC times), for clip sidecars. */
  trackPoints(): readonly ClipTrackPoint[] {
    return this.track;
  }

  /** A fix with its corrected UTC time: kept for the clips' track sidecar. */
  noteFix(lat: number, lon: number, altM: number | null, atMs: number): void {
    const last = this.track.at(-1);
    if (last && atMs - last.t < 1000) return;
    this.track.push({ t: atMs, lat, lon, ...(altM === null ? {} : { altM }) });
    if (this.track[0]!.t < atMs - TRACK_KEEP_MS) this.track = this.track.filter((p) => p.t >= atMs - TRACK_KEEP_MS);
  }

  /** Open the cameras and start the upload on the uplink's MQTT session (call after uplink.start()). */
  start(): void {
    const { o } = this;
    const session = o.uplink.mqtt;
    if (!session) throw new Error('evidence: start the uplink first');
    this.snapshots.start();
    for (const rec of this.recorders.values()) {
      rec.on('error', (err) => o.log.warn({ event: 'video.error', camera: rec.name, err: err.message }, 'video recorder error'));
      rec.start().catch((err: Error) => o.log.error({ event: 'video.start-failed', camera: rec.name, err: err.message }, 'video recorder could not start'));
    }
    const upload = new FileUpload({
      ref: o.ref,
      db: o.db,
      session,
      config: o.files,
      log: o.log,
      yieldTo: () => Date.now() - this.lastAlarmAt < ALARM_PRIORITY_MS && o.uplink.alarmsWaiting(),
    });
    upload.on('delivered', (f) => this.keep(this.onDelivered(f)));
    upload.on('failed', (f) => {
      o.diag({ event: 'evidence.failed', reason: `${f.kind} ${f.name} for alarm ${f.alarmId ?? '-'} could not be sent: ${f.error ?? 'unknown'}`.slice(0, 500) });
    });
    o.uplink.on('confirmed', () => upload.kick());
    upload.start();
    this.upload = upload;
  }

  /** The file upload (for tests, benches and the footage handler). */
  get files(): FileUpload | null {
    return this.upload;
  }

  /** An alarm was stored and handed to the uplink: gather its evidence. Never throws. */
  onAlarm(alarm: AlarmMessage, pressMs = Date.parse(alarm.raisedAt)): void {
    this.lastAlarmAt = Date.now();
    if (this.stopped) return;
    // Pin the pre-roll first, synchronously: the ring must not drop it while the cameras are asked.
    for (const rec of this.recorders.values()) this.startClip(rec, alarm, pressMs);
    if (this.snapshots.cameras.length) this.keep(this.takeSnapshots(alarm));
  }

  private startClip(rec: VideoRecorder, alarm: AlarmMessage, pressMs: number): void {
    const { o } = this;
    const name = `${alarm.id}-${rec.name}.mp4`;
    let job;
    try {
      job = captureAlarmClip(rec, {
        pressMs,
        preS: o.clips.preRollS,
        postS: o.clips.postRollS,
        pinDir: join(this.dir, 'pins', `${alarm.id}-${rec.name}`),
        out: join(this.dir, 'clips', name),
        location: alarm.fix ? { lat: alarm.fix.lat, lon: alarm.fix.lon, ...(alarm.fix.altM === null ? {} : { altM: alarm.fix.altM }) } : null,
        track: () => this.track,
        meta: { alarmId: alarm.id, kind: alarm.kind, fleet: o.ref.fleet, vehicle: o.ref.vehicle, camera: rec.name },
      });
    } catch (err) {
      this.clipFailed(alarm.id, rec.name, (err as Error).message);
      return;
    }
    o.log.info({ event: 'clip.pinned', alarmId: alarm.id, camera: rec.name, segments: job.pinned.length, preRollS: o.clips.preRollS, postRollS: o.clips.postRollS });
    this.keep(
      (async () => {
        await mkdir(join(this.dir, 'clips'), { recursive: true });
        let clip;
        try {
          clip = await job.done;
        } catch (err) {
          this.clipFailed(alarm.id, rec.name, (err as Error).message);
          return;
        }
        o.log.info({ event: 'clip.cut', alarmId: alarm.id, camera: rec.name, durationS: clip.durationS, bytes: clip.bytes, gaps: clip.gaps, file: name });
        if (clip.gaps.length) {
          this.safeDiag({ event: 'clip.gap', reason: `alarm ${alarm.id}: camera ${rec.name}: ${clip.gaps.length} gap(s) in the recording, stated in the clip`.slice(0, 500) });
        }
        const capturedAt = new Date(clip.coveredFromMs).toISOString();
        await this.enqueue({ path: clip.file, name, kind: 'clip', alarmId: alarm.id, capturedAt, timeSource: o.now().timeSource, geotag: alarm.fix, mime: 'video/mp4' }, clip.bytes);
        // The track over the clip goes with it, as a file of its own beside the clip at dispatch.
        const sidecarBytes = await stat(clip.sidecar).then((st) => st.size).catch(() => 0);
        if (sidecarBytes > 0) {
          await this.enqueue(
            { path: clip.sidecar, name: name.replace(/\.mp4$/, '.geojson'), kind: 'clip', alarmId: alarm.id, capturedAt, timeSource: o.now().timeSource, geotag: alarm.fix, mime: 'application/geo+json' },
            sidecarBytes,
          );
        }
      })(),
    );
  }

  private clipFailed(alarmId: string, camera: string, error: string): void {
    this.o.log.error({ event: 'clip.failed', alarmId, camera, err: error }, 'alarm clip failed; the alarm is not affected');
    this.safeDiag({ event: 'clip.failed', reason: `alarm ${alarmId}: camera ${camera}: ${error}`.slice(0, 500) });
  }

  private async takeSnapshots(alarm: AlarmMessage): Promise<void> {
    const results = await this.snapshots.take(alarm.id, alarm.fix, () => this.o.now().date);
    for (const r of results) {
      if (!r.ok) {
        this.safeDiag({ event: 'snapshot.failed', reason: `alarm ${alarm.id}: camera ${r.camera}: ${r.error}`.slice(0, 500) });
        continue;
      }
      await this.enqueue({ path: r.file, name: r.name, kind: 'snapshot', alarmId: alarm.id, capturedAt: r.takenAt.toISOString(), timeSource: this.o.now().timeSource, geotag: alarm.fix, mime: 'image/jpeg' }, r.bytes);
    }
  }

  /** Queue a finished evidence file for upload, after the quota check. */
  async enqueue(
    f: { path: string; name: string; kind: 'snapshot' | 'clip'; alarmId: string | null; capturedAt: string; timeSource: TimeSource; geotag: Fix | null; mime: string; requestId?: string },
    bytes: number,
  ): Promise<QueuedFile | null> {
    const upload = this.upload;
    if (!upload) return null;
    const waiting = upload.list('pending').reduce((sum, q) => sum + q.size, 0);
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
    // A clip waiting for its post-roll is not waited for: its pins stay, and
    // the pinned segments are in the ring's folder for a footage request.
    await Promise.all([...this.recorders.values()].map((r) => r.stop().catch(() => {})));
    await Promise.race([this.idle(), new Promise((r) => setTimeout(r, 2000))]);
    await this.upload?.stop();
    await this.snapshots.close();
  }
}
