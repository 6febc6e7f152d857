// Each camera driver's keys in `cameras[]` of the agent config. One strict
// object per driver, told apart by `driver`, so a key meant for another
// driver (or a typo) is refused with its path instead of being silently
// ignored on a bus. A driver is registered with its schema in drivers.ts.

import { z } from 'zod';
import { IMAGE_SIZES, VC0706_BAUD_RATES, VC0706_POWER_ON_BAUD } from './vc0706-codec.ts';

/** Names the camera in file names, logs and at dispatch ("front", "rear"...). Every driver has it. */
export const cameraName = z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, "_" or "-", 1 to 32 characters');

const vc0706Rate = z.union(VC0706_BAUD_RATES.map((r) => z.literal(r)), {
  error: `expected one of the rates a VC0706 knows: ${VC0706_BAUD_RATES.join(', ')}`,
});

export const Vc0706ConfigSchema = z
  .object({
    driver: z.literal('vc0706'),
    name: cameraName,
    /** Serial device of the camera. */
    port: z.string().min(1),
    /** The rate the camera talks at after power-on (38400 for VC0706 modules). */
    baudRate: vc0706Rate.default(VC0706_POWER_ON_BAUD),
    /** The rate to switch to for transfers (not kept over a power cycle: set again when the camera is found at another); equal to baudRate = stay. */
    transferBaudRate: vc0706Rate.default(115200),
    /** The camera's serial number, 0 unless someone changed it. */
    serial: z.number().int().min(0).max(255).default(0),
    /** Set at start when the camera has another (with the reset the part needs to apply it). */
    imageSize: z.enum(IMAGE_SIZES).default('640x480'),
    /** Reply timeout of one command, ms. */
    timeoutMs: z.number().int().min(100).max(10_000).default(1000),
  })
  .strict();
export type Vc0706CameraConfig = z.output<typeof Vc0706ConfigSchema>;
