// Cabin stills: what the evidence code needs from a camera, whatever kind it
// is. One interface, one implementation per kind of hardware (see drivers.ts
// for the table, config.ts for each driver's keys). The code that takes the
// snapshots on an alarm (firmware/snapshots.ts) knows only this file and the
// table: a driver is added without touching it.

/**
 * Why a camera failed, so the caller can tell a camera to set up again from
 * one to simply try again:
 * - timeout: no (or no complete) answer in time; the camera or source hung.
 * - garbled: bytes that are no valid answer, or a picture that is no JPEG.
 * - truncated: a JPEG without its end.
 * - io: the way to the camera itself failed (the serial port went away, the
 *   capture tool cannot be started): the caller reopens it before the next snapshot.
 * - source: the capture pipeline reported an error of its own (a video device
 *   that cannot be opened, an RTSP camera that refuses, a GStreamer element
 *   not installed); the message carries the tool's error line. Nothing to
 *   reopen: the next snapshot runs the pipeline again.
 */
export type CameraErrorKind = 'timeout' | 'garbled' | 'truncated' | 'io' | 'source';

export interface CameraErrorDetail {
  /** Where the camera is reached: a serial device path, or a GStreamer source fragment. */
  path: string;
  /** The step that failed: a protocol command (e.g. READ_FBUF), or open, snapshot, gst-launch-1.0. */
  command: string;
  /** The bytes sent, hex. */
  sent?: string;
  /** What came back (the first bytes), hex. */
  received?: string;
  /** The reply's status byte when a serial camera answered with an error. */
  status?: number;
  /** The error line of the capture tool that failed (gst-launch-1.0's "ERROR: …"). */
  toolError?: string;
}

/**
 * Everything a driver throws at the camera's door. The message says what
 * failed, on which camera, and what to check.
 */
export class CameraError extends Error {
  override readonly name = 'CameraError';
  constructor(
    readonly kind: CameraErrorKind,
    message: string,
    readonly detail: CameraErrorDetail,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** What connect() found, for the log line that says the camera is ready. */
export interface CameraReady {
  /** Half a sentence after "camera NAME", e.g. "found at 57600 baud, talking at 115200". */
  summary: string;
  /** Fields for the structured log line (`camera.ready`). */
  fields: Record<string, unknown>;
}

export interface Camera {
  /** Driver name as chosen in config (`cameras[].driver`). */
  readonly driver: string;
  /** What and where, for logs: "VC0706 on /dev/ttyUSB1", "GStreamer still from v4l2src device=/dev/video0". */
  readonly description: string;
  /**
   * Get the camera ready so that the first snapshot of an alarm does not pay
   * for it (find it, set it up, try its source). The agent calls it once per
   * camera at start, and again before a snapshot after it failed.
   * Rejects with a CameraError saying what to check.
   */
  connect(): Promise<CameraReady>;
  /**
   * One picture as a whole JPEG (FF D8 … FF D9), without geotag (the caller
   * adds the EXIF). Bounded in time; rejects with a CameraError. Calls wait
   * behind one under way.
   */
  snapshot(): Promise<Buffer>;
  /**
   * A cheap question that proves the camera answers now (the health check
   * between alarms): what it answered, in a few words. Absent where the only
   * proof is a picture (a GStreamer source): such a camera is judged by its
   * last connect() or snapshot().
   */
  check?(): Promise<string>;
  /** Release the camera (close the port, kill a capture under way). A call under way fails with 'io'. */
  close(): Promise<void>;
}
