// Evidence on alarm: what the police want after "where is the bus" is "what
// is happening on it". For each emergency (and incident) this takes a
// geotagged snapshot from every serial camera and queues it for the file
// upload at once, right behind the alarm itself; clips from the video
// recorders follow (firmware/clips.ts).
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

import { rm } from 'node:fs/promises';
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

/** How long after an alarm the file upload holds back while alarms wait for dispatch's receipt. */
const ALARM_PRIORITY_MS = 15_000;

export interface EvidenceOptions {
  ref: VehicleRef;
  db: Db;
  outbox: Outbox;
  uplink: Uplink;
  cameras: readonly CameraConfig[];
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
  private upload: FileUpload | null = null;
  private lastAlarmAt = 0;
  private readonly work = new Set<Promise<unknown>>();
  private stopped = false;

  constructor(private readonly o: EvidenceOptions) {
    this.dir = o.media.dir ?? join(o.storageDir, 'media');
    this.snapshots = new SnapshotTaker(o.cameras, join(this.dir, 'snapshots'), o.log);
  }

  /** Open the cameras and start the upload on the uplink's MQTT session (call after uplink.start()). */
  start(): void {
    const { o } = this;
    const session = o.uplink.mqtt;
    if (!session) throw new Error('evidence: start the uplink first');
    this.snapshots.start();
    const upload = new FileUpload({
      ref: o.ref,
      db: o.db,
      session,
      config: o.files,
      log: o.log,
      durably: (fn) => o.outbox.write('snapshot', fn),
      yieldTo: () => Date.now() - this.lastAlarmAt < ALARM_PRIORITY_MS && o.uplink.alarmsWaiting(),
    });
    upload.on('delivered', (f) => this.track(this.onDelivered(f)));
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
  onAlarm(alarm: AlarmMessage): void {
    this.lastAlarmAt = Date.now();
    if (this.snapshots.cameras.length === 0 || this.stopped) return;
    this.track(this.takeSnapshots(alarm));
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
  async enqueue(f: { path: string; name: string; kind: 'snapshot' | 'clip'; alarmId: string | null; capturedAt: string; timeSource: TimeSource; geotag: Fix | null; mime: string }, bytes: number): Promise<QueuedFile | null> {
    const upload = this.upload;
    if (!upload) return null;
    const waiting = upload.list('pending').reduce((sum, q) => sum + q.size, 0);
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

  private track(p: Promise<unknown>): void {
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
    await this.idle();
    await this.upload?.stop();
    await this.snapshots.close();
  }
}
