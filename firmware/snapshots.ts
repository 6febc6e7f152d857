// Cabin snapshots on alarm: one JPEG from each camera of `cameras[]`, with
// the alarm's fix in its EXIF GPS tags, written to the media folder (fsync'd,
// then renamed into place) so the uploader can send it as evidence right
// after the alarm.
//
// Which camera is which kind (a VC0706 on a serial port, a still from a
// GStreamer source...) is the driver table's business (hal/camera/drivers.ts):
// this file knows only the Camera interface, so every driver's photo is
// geotagged, written and reported the same way.
//
// A camera is opened and connected at start-up and kept: the first snapshot
// of an alarm must not wait for a port open, a rate search or a reset. A
// camera that is missing, answers garbage or sends a truncated JPEG gives a
// clear error for that camera only: the alarm has already been stored and
// sent before any of this runs, and the other cameras carry on. A camera
// that failed to connect, or whose way to it failed ('io': the port went
// away), is opened and connected again at the next alarm and by the health
// check between alarms (check(), backing off); any other failure
// keeps it, and its driver sees to the next snapshot (the VC0706 driver
// looks for a camera that stopped answering at every rate first).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type CameraConfig, CameraConfigSchema, openCamera } from '../hal/camera/drivers.ts';
import { type Camera, CameraError, type CameraReady } from '../hal/camera/types.ts';
import { writeFileDurably } from '../common/durable-file.ts';
import { sha256Hex } from '../common/hash.ts';
import type { Fix } from '../protocol/messages.ts';
import { geotagJpeg } from './geotag.ts';
import type { DeviceHealth } from '../protocol/health.ts';

export { CameraConfigSchema };
export type { CameraConfig };

export const CamerasConfigSchema = z
  .array(CameraConfigSchema)
  .max(8)
  .refine((cams) => new Set(cams.map((c) => c.name)).size === cams.length, 'camera names must be unique')
  .default([]);

export type SnapshotResult =
  | { camera: string; ok: true; file: string; name: string; bytes: number; sha256: string; takenAt: Date; ms: number }
  | { camera: string; ok: false; error: string; kind: string };

interface Slot {
  cfg: CameraConfig;
  cam: Camera | null;
  opening: Promise<Camera> | null;
  /** What the last open, check or snapshot found (the unit's health, firmware/health.ts). */
  health: DeviceHealth;
  /** A snapshot or check is under way: the health check does not queue behind it. */
  busy: boolean;
  /** A camera that would not open is tried again by the health check from then (Date.now() ms), backing off. */
  retryAt: number;
  retryMs: number;
}

/** The health check's retries of a camera that will not open: 5 s, doubling to 5 min. */
const RETRY_MIN_MS = 5_000;
const RETRY_MAX_MS = 300_000;

export class SnapshotTaker {
  private readonly slots: Slot[];
  private closed = false;

  constructor(
    cameras: readonly CameraConfig[],
    private readonly dir: string,
    private readonly log: Logger,
  ) {
    this.slots = cameras.map((cfg) => ({
      cfg,
      cam: null,
      opening: null,
      health: { name: cfg.name, kind: 'camera', state: 'starting', detail: 'not opened yet' },
      busy: false,
      retryAt: 0,
      retryMs: RETRY_MIN_MS,
    }));
  }

  get cameras(): string[] {
    return this.slots.map((s) => s.cfg.name);
  }

  /** Open every camera now, in the background; failures are logged and retried at the next alarm. */
  start(): void {
    for (const slot of this.slots) {
      this.ensureOpen(slot).catch(() => {}); // logged in ensureOpen
    }
  }

  private ensureOpen(slot: Slot): Promise<Camera> {
    if (slot.cam) return Promise.resolve(slot.cam);
    if (slot.opening) return slot.opening;
    const { cfg } = slot;
    slot.opening = (async () => {
      const cam = await openCamera(cfg, this.log);
      let ready: CameraReady;
      try {
        ready = await cam.connect();
        this.log.info({ event: 'camera.ready', camera: cfg.name, driver: cfg.driver, ...ready.fields }, `camera ${cfg.name} ${ready.summary}`);
      } catch (err) {
        await cam.close().catch(() => {});
        throw err;
      }
      if (this.closed) {
        await cam.close().catch(() => {});
        throw new Error('snapshots closed');
      }
      slot.cam = cam;
      slot.retryMs = RETRY_MIN_MS;
      this.mark(slot, 'ok', `ready: ${ready.summary}`);
      return cam;
    })()
      .catch((err: unknown) => {
        this.mark(slot, 'fault', (err as Error).message);
        slot.retryAt = Date.now() + slot.retryMs;
        slot.retryMs = Math.min(RETRY_MAX_MS, slot.retryMs * 2);
        const where = err instanceof CameraError ? err.detail.path : undefined;
        this.log.warn({ event: 'camera.unavailable', camera: cfg.name, driver: cfg.driver, where, err: (err as Error).message }, 'camera not ready; retried by the health check and at the next alarm');
        throw err;
      })
      .finally(() => {
        slot.opening = null;
      });
    return slot.opening;
  }

  /**
   * One geotagged snapshot per camera, in parallel. Never rejects: each
   * camera's outcome is in its result. `takenAt` gives the corrected UTC
   * time for the EXIF date.
   */
  async take(alarmId: string, fix: Fix | null, takenAt: () => Date): Promise<SnapshotResult[]> {
    await mkdir(this.dir, { recursive: true });
    return Promise.all(this.slots.map((slot) => this.takeOne(slot, alarmId, fix, takenAt)));
  }

  private async takeOne(slot: Slot, alarmId: string, fix: Fix | null, takenAt: () => Date): Promise<SnapshotResult> {
    const camera = slot.cfg.name;
    const t0 = performance.now();
    slot.busy = true;
    try {
      const cam = await this.ensureOpen(slot);
      let jpeg: Buffer;
      try {
        jpeg = await cam.snapshot();
      } catch (err) {
        // The way to the camera failed (a port unplugged): reopen next time.
        // Any other failure keeps the camera: its driver sees to the next
        // snapshot (a VC0706 is looked for at every rate first: it may have
        // lost power and come back at its power-on rate).
        if (err instanceof CameraError && err.kind === 'io') {
          slot.cam = null;
          await cam.close().catch(() => {});
        }
        throw err;
      }
      const at = takenAt();
      const tagged = geotagJpeg(jpeg, { fix, takenAt: at, camera, alarmId });
      const name = `${alarmId}-${camera}.jpg`;
      const file = join(this.dir, name);
      // fsync'd, renamed, and the folder fsync'd: the photo the upload is about to be told of survives a power cut.
      await writeFileDurably(file, tagged);
      const result = {
        camera,
        ok: true as const,
        file,
        name,
        bytes: tagged.length,
        sha256: sha256Hex(tagged),
        takenAt: at,
        ms: Math.round(performance.now() - t0),
      };
      this.log.info({ event: 'snapshot.taken', alarmId, camera, bytes: result.bytes, ms: result.ms, geotagged: fix !== null });
      this.mark(slot, 'ok', `snapshot taken (${result.bytes} bytes)`);
      return result;
    } catch (err) {
      const kind = err instanceof CameraError ? err.kind : ((err as NodeJS.ErrnoException).code ?? 'error');
      const error = (err as Error).message;
      this.mark(slot, 'fault', `snapshot failed: ${error}`);
      this.log.error({ event: 'snapshot.failed', alarmId, camera, kind, err: error }, 'snapshot failed; the alarm is not affected');
      return { camera, ok: false, error, kind };
    } finally {
      slot.busy = false;
    }
  }

  /**
   * The health check between alarms: each camera that is open is asked
   * (Camera.check) unless a snapshot is under way; one that would not open is
   * opened again when its back-off is over. Never rejects.
   */
  async check(timeoutMs = 15_000): Promise<DeviceHealth[]> {
    await Promise.all(
      this.slots.map(async (slot) => {
        if (this.closed || slot.busy || slot.opening) return;
        if (!slot.cam) {
          if (Date.now() >= slot.retryAt) await this.ensureOpen(slot).catch(() => {}); // marked and logged in ensureOpen
          return;
        }
        const cam = slot.cam;
        if (!cam.check) return;
        slot.busy = true;
        let timer: NodeJS.Timeout | undefined;
        try {
          const answer = await Promise.race([
            cam.check(),
            new Promise<never>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no answer to the health check within ${timeoutMs} ms`)), timeoutMs);
            }),
          ]);
          this.mark(slot, 'ok', answer);
        } catch (err) {
          this.mark(slot, 'fault', (err as Error).message);
          if (err instanceof CameraError && err.kind === 'io' && slot.cam === cam) {
            slot.cam = null;
            await cam.close().catch(() => {});
          }
        } finally {
          clearTimeout(timer);
          slot.busy = false;
        }
      }),
    );
    return this.health();
  }

  /** Each camera's state as last found. */
  health(): DeviceHealth[] {
    return this.slots.map((s) => ({ ...s.health }));
  }

  private mark(slot: Slot, state: DeviceHealth['state'], detail: string): void {
    const was = slot.health.state;
    slot.health = { name: slot.cfg.name, kind: 'camera', state, detail: detail.slice(0, 300) };
    if (was !== state && state === 'fault') this.log.warn({ event: 'camera.fault', camera: slot.cfg.name, detail }, `camera ${slot.cfg.name}: ${detail}`);
    else if (was === 'fault' && state === 'ok') this.log.info({ event: 'camera.recovered', camera: slot.cfg.name, detail }, `camera ${slot.cfg.name} answers again`);
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      this.slots.map(async (slot) => {
        const cam = slot.cam;
        slot.cam = null;
        await cam?.close().catch(() => {});
      }),
    );
  }
}
