// The table of camera drivers, chosen by `cameras[].driver` in the agent
// config (default "vc0706", so configs written before there was a choice
// keep working). One line per driver: its config schema (config.ts) and how
// to open it. Each driver module is imported only when a camera uses it:
// the VC0706 driver loads a native serial stack that a bus with only
// network cameras should not need to load (or to have compiled).

import type { Logger } from 'pino';
import { z } from 'zod';
import * as schema from './config.ts';
import type { Camera } from './types.ts';

interface DriverEntry<S extends z.ZodObject> {
  /** The driver's keys, with `driver` as a literal. */
  config: S;
  /** Make the camera from its config; may open its device, must not wait for the camera itself (connect() does). */
  open(cfg: z.output<S>, log?: Logger): Promise<Camera>;
}

function driver<S extends z.ZodObject>(config: S, open: (cfg: z.output<S>, log?: Logger) => Promise<Camera>): DriverEntry<S> {
  return { config, open };
}

export const CAMERA_DRIVERS = {
  vc0706: driver(schema.Vc0706ConfigSchema, async (cfg, log) => (await import('./vc0706.ts')).Vc0706Camera.fromConfig(cfg, log)),
  gstreamer: driver(schema.GstreamerStillConfigSchema, async (cfg, log) => (await import('./gstreamer-still.ts')).GstreamerStillCamera.fromConfig(cfg, log)),
};

export type CameraDriverName = keyof typeof CAMERA_DRIVERS;
export const DEFAULT_CAMERA_DRIVER: CameraDriverName = 'vc0706';

type Schemas = (typeof CAMERA_DRIVERS)[CameraDriverName]['config'];
const schemas = Object.values(CAMERA_DRIVERS).map((d) => d.config) as [Schemas, ...Schemas[]];
const names = Object.keys(CAMERA_DRIVERS).map((n) => `"${n}"`).join(', ');

/**
 * One entry of `cameras[]`: the keys of the driver it names, and only those.
 * Without `driver` it is a VC0706 (as every camera was before the choice).
 */
export const CameraConfigSchema = z.preprocess(
  (raw) => (raw !== null && typeof raw === 'object' && !Array.isArray(raw) && !('driver' in raw) ? { driver: DEFAULT_CAMERA_DRIVER, ...raw } : raw),
  z.discriminatedUnion('driver', schemas, { error: `unknown camera driver; expected one of ${names}` }),
);
export type CameraConfig = z.output<typeof CameraConfigSchema>;

/** Make the camera a config entry describes, with its driver (imported now if it was not yet). */
export function openCamera(cfg: CameraConfig, log?: Logger): Promise<Camera> {
  const entry = CAMERA_DRIVERS[cfg.driver] as DriverEntry<z.ZodObject> | undefined;
  if (!entry) return Promise.reject(new Error(`camera driver "${String(cfg.driver)}" is not in the table; expected one of ${names}`));
  return entry.open(cfg, log);
}
