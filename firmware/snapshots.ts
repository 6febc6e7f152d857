// Cabin snapshots on alarm: one JPEG from each serial camera, with the
// alarm's fix in its EXIF GPS tags, written to the media folder (fsync'd,
// then renamed into place) so the uploader can send it as evidence right
// after the alarm.
//
// A camera is opened at start-up and kept open: the first snapshot of an
// alarm must not wait for a port open and a reset. A camera that is missing,
// answers garbage or sends a truncated JPEG gives a clear error for that
// camera only: the alarm has already been stored and sent before any of this
// runs, and the other cameras carry on. A failed camera is reopened on the
// next alarm.
//
// A camera is looked for at every rate a VC0706 knows (the configured
// power-on rate first, then the transfer rate, then the rest): one left at
// another rate by SET_PORT, another tool or its EEPROM is still found, and the
// log says at which rate. A camera that loses power behind a live port (its
// own supply, a brown-out) fails the snapshot under way; the driver then looks
// for it again before the next one and sets it up again (image size,
// transfer rate), without reopening anything.

import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { z } from 'zod';
import { CameraError, IMAGE_SIZE_CODES, type ImageSize, Vc0706Camera } from '../hal/camera/vc0706.ts';
import { writeFileDurably } from '../common/durable-file.ts';
import type { Fix } from '../protocol/messages.ts';
import { geotagJpeg } from './geotag.ts';

const VC0706_RATES = [9600, 19200, 38400, 57600, 115200] as const;
const rate = z.union(VC0706_RATES.map((r) => z.literal(r)) as unknown as [z.ZodLiteral<9600>, z.ZodLiteral<19200>, z.ZodLiteral<38400>, z.ZodLiteral<57600>, z.ZodLiteral<115200>]);

export const CameraConfigSchema = z
  .object({
    /** Names the camera in file names, logs and at dispatch ("front", "rear"...). */
    name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, "_" or "-", 1 to 32 characters'),
    /** Serial device of the camera. */
    port: z.string().min(1),
    /** The rate the camera talks at after power-on (38400 for VC0706 modules). */
    baudRate: rate.default(38400),
    /** The rate to switch to for transfers (not kept over a power cycle: set again when the camera is found at another); equal to baudRate = stay. */
    transferBaudRate: rate.default(115200),
    /** The camera's serial number, 0 unless someone changed it. */
    serial: z.number().int().min(0).max(255).default(0),
    /** Set at start when the camera has another (with the reset the part needs to apply it). */
    imageSize: z.enum(Object.keys(IMAGE_SIZE_CODES) as [ImageSize, ...ImageSize[]]).default('640x480'),
    /** Reply timeout of one command, ms. */
    timeoutMs: z.number().int().min(100).max(10_000).default(1000),
  })
  .strict();
export type CameraConfig = z.output<typeof CameraConfigSchema>;

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
  cam: Vc0706Camera | null;
  opening: Promise<Vc0706Camera> | null;
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

  private ensureOpen(slot: Slot): Promise<Vc0706Camera> {
    if (slot.cam) return Promise.resolve(slot.cam);
    if (slot.opening) return slot.opening;
    const { cfg } = slot;
    slot.opening = (async () => {
      // The port opens at the power-on rate, where connect() looks first;
      // then at the transfer rate (the camera keeps a SET_PORT rate until it
      // loses power: after an agent restart it still talks there), then at
      // every other rate.
      const cam = await Vc0706Camera.open({
        path: cfg.port,
        baudRate: cfg.baudRate,
        bootBaudRate: cfg.baudRate,
        transferBaudRate: cfg.transferBaudRate,
        imageSize: cfg.imageSize,
        serial: cfg.serial,
        timeoutMs: cfg.timeoutMs,
        log: this.log,
      });
      try {
        const c = await cam.connect();
        this.log.info(
          { event: 'camera.ready', camera: cfg.name, port: cfg.port, version: c.version, imageSize: cfg.imageSize, foundAt: c.foundAt, baudRate: cam.baudRate },
          `camera ${cfg.name} found at ${c.foundAt} baud, talking at ${cam.baudRate}`,
        );
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
        this.log.warn({ event: 'camera.unavailable', camera: cfg.name, port: cfg.port, err: (err as Error).message }, 'camera not ready; retried at the next alarm');
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
        // The port itself failed (unplugged): reopen next time. Any other
        // failure keeps the camera: the driver looks for it at every rate
        // before the next snapshot (it may have lost power and come back at
        // its power-on rate).
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
        sha256: createHash('sha256').update(tagged).digest('hex'),
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
