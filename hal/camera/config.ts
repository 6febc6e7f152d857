// Each camera driver's keys in `cameras[]` of the agent config. One strict
// object per driver, told apart by `driver`, so a key meant for another
// driver (or a typo) is refused with its path instead of being silently
// ignored on a bus. A driver is registered with its schema in drivers.ts.

import { z } from 'zod';
import { IMAGE_SIZES, VC0706_BAUD_RATES, VC0706_POWER_ON_BAUD } from './vc0706-codec.ts';
import { splitGstDescription } from '../video/gst-launch.ts';

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

const stillSide = z.number().int().min(16).max(8192);

/** What is wrong with a still's source fragment, or null: it must parse as gst-launch-1.0 would take it, and be a source only. */
function stillSourceProblem(source: string): string | null {
  let tokens: string[];
  try {
    tokens = splitGstDescription(source);
  } catch (err) {
    return (err as Error).message.replace(/^video source: /, '');
  }
  if (tokens.length === 0) return 'empty; give e.g. "v4l2src device=/dev/video0"';
  if (tokens[0] === '!' || tokens.at(-1) === '!') return 'starts or ends with "!"; give only the source part, the driver adds "! videoconvert ! jpegenc ! fdsink"';
  const sink = tokens.find((t) => /^[a-z0-9]*sink$|^jpegenc$/.test(t));
  if (sink) return `contains ${sink}; give only the source part, the driver adds the JPEG encoder and the sink`;
  return null;
}

export const GstreamerStillConfigSchema = z
  .object({
    driver: z.literal('gstreamer'),
    name: cameraName,
    /**
     * The GStreamer source as typed after gst-launch-1.0, giving raw video (as video[].source):
     * "v4l2src device=/dev/video0", "rtspsrc location=rtsp://… ! decodebin",
     * "videotestsrc is-live=true ! video/x-raw,width=320,height=240". The driver adds the JPEG encoder.
     */
    source: z.string().min(1).superRefine((source, ctx) => {
      const problem = stillSourceProblem(source);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    /** Scale the picture to this width and/or height (the other keeps the aspect ratio); default: as the source gives it. */
    width: stillSide.optional(),
    height: stillSide.optional(),
    /** jpegenc quality, 1 to 100. */
    quality: z.number().int().min(1).max(100).default(85),
    /** The whole capture (start, connection, first frame) must be done in this long, ms, or gst-launch-1.0 is killed. */
    timeoutMs: z.number().int().min(500).max(60_000).default(10_000),
  })
  .strict();
export type GstreamerStillConfig = z.output<typeof GstreamerStillConfigSchema>;
