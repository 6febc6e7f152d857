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
// away), is opened and connected again at the next alarm; any other failure
// keeps it, and its driver sees to the next snapshot (the VC0706 driver
// looks for a camera that stopped answering at every rate first).

import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { type CameraConfig, CameraConfigSchema, openCamera } from '../hal/camera/drivers.ts';
import { type Camera, CameraError } from '../hal/camera/types.ts';
import { writeFileDurably } from '../common/durable-file.ts';
import { sha256Hex } from '../common/hash.ts';
import type { Fix } from '../protocol/messages.ts';
import { geotagJpeg } from './geotag.ts';

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
}

export class SnapshotTaker {
  private readonly slots: Slot[];
  private closed = false;

  constructor(
    cameras: readonly CameraConfig[],
    private readonly dir: string,
    private readonly log: Logger,
  ) {
    this.slots = cameras.map((cfg) => ({ cfg, cam: null, opening: null }));
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
      try {
        const ready = await cam.connect();
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
      return cam;
    })()
      .catch((err: unknown) => {
        const where = err instanceof CameraError ? err.detail.path : undefined;
        this.log.warn({ event: 'camera.unavailable', camera: cfg.name, driver: cfg.driver, where, err: (err as Error).message }, 'camera not ready; retried at the next alarm');
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
      return result;
    } catch (err) {
      const kind = err instanceof CameraError ? err.kind : ((err as NodeJS.ErrnoException).code ?? 'error');
      const error = (err as Error).message;
      this.log.error({ event: 'snapshot.failed', alarmId, camera, kind, err: error }, 'snapshot failed; the alarm is not affected');
      return { camera, ok: false, error, kind };
    }
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
