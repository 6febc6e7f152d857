// A still from any GStreamer source: a V4L2 webcam, the RTSP stream of the
// IP cameras most buses now carry, videotestsrc in tests. Each snapshot is
// one run of
//
//   gst-launch-1.0 -q SOURCE ! videoconvert [! videoscale ! video/x-raw,width=W,height=H,pixel-aspect-ratio=1/1]
//                  ! jpegenc quality=Q snapshot=true ! fdsink fd=1 sync=false
//
// as a child process, never inside the agent (a GStreamer crash or a hung
// element must not take the alarm path with it, see hal/video/recorder.ts),
// with a deadline: at timeoutMs the child's whole process group is killed,
// and the snapshot fails with what the source was, what gst-launch-1.0 said
// and what to check.
//
// Which frame: jpegenc's snapshot=true encodes the first frame that reaches
// it and then ends the stream, so gst-launch-1.0 exits by itself. This is
// the first picture the source really produced, decoded: not num-buffers=1
// on the source, which counts the source's own buffers (RTP packets for
// rtspsrc, which has no such property anyway; for an encoded stream the
// first buffer cannot be decoded before a keyframe), and a live source has
// no preroll frame to hand out early. fdsink does not wait on the clock
// (sync=false): the frame is written the moment it is encoded.
//
// RTSP: unless the source sets them, rtspsrc gets protocols=tcp (a lost UDP
// packet would smear the one keyframe the still is made of; over TCP it is
// whole), latency=100 (the 2 s default jitter buffer would delay every
// still by 2 s; one frame needs no reordering window) and tcp-timeout at
// 60 % of timeoutMs (an unreachable camera then fails with rtspsrc's own
// error before our deadline kills it without one).
//
// gst-launch-1.0 1.22 sometimes hangs after its end of stream: once a whole
// JPEG is on stdout the child gets exitGraceMs to exit, then it is killed
// and the picture is kept.

import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { errText } from '../../common/errors.ts';
import { splitGstDescription } from '../video/gst-launch.ts';
import type { GstreamerStillConfig } from './config.ts';
import { jpegDimensions, jpegLength } from './jpeg.ts';
import { type Camera, CameraError, type CameraErrorKind, type CameraReady } from './types.ts';

export interface GstreamerStillOptions {
  /** The source fragment, shell-quoted as on a gst-launch-1.0 command line; must give raw video. */
  source: string;
  /** Scale to this width and/or height (with one, the other keeps the picture's shape; pixels are square). */
  width?: number;
  height?: number;
  /** jpegenc quality. Default 85. */
  quality?: number;
  /** The whole run must be done in this long. Default 10000 ms. */
  timeoutMs?: number;
  /** Once the JPEG is whole, how long gst-launch-1.0 may take to exit before it is killed. Default 1000 ms. */
  exitGraceMs?: number;
  /** Output beyond this is taken for garbage. Default 32 MiB. */
  maxBytes?: number;
  /** Default 'gst-launch-1.0'. */
  gstLaunch?: string;
  log?: Logger;
}

/** The gst-launch-1.0 arguments of one still (after splitting the source as a shell would). */
export function stillArgs(o: GstreamerStillOptions): string[] {
  const timeoutMs = o.timeoutMs ?? 10_000;
  const source = withRtspDefaults(splitGstDescription(o.source), timeoutMs);
  const size = [o.width === undefined ? '' : `,width=${o.width}`, o.height === undefined ? '' : `,height=${o.height}`].join('');
  // Square pixels: with one side given, videoscale then keeps the picture's shape by the other side, not by the pixel shape.
  return [
    '-q', // nothing of gst-launch-1.0's own on stdout: stdout is the JPEG
    ...source,
    '!',
    'videoconvert',
    '!',
    ...(size ? ['videoscale', '!', `video/x-raw${size},pixel-aspect-ratio=1/1`, '!'] : []),
    'jpegenc',
    `quality=${o.quality ?? 85}`,
    'snapshot=true',
    '!',
    'fdsink',
    'fd=1',
    'sync=false',
  ];
}

/** rtspsrc with the settings a still needs, where the source does not set them (see the top of this file). */
function withRtspDefaults(tokens: string[], timeoutMs: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    out.push(tokens[i]!);
    if (tokens[i] !== 'rtspsrc' || (i > 0 && tokens[i - 1] !== '!')) continue;
    // Its properties are the name=value tokens up to the next element.
    const props = new Set<string>();
    while (i + 1 < tokens.length && tokens[i + 1] !== '!' && tokens[i + 1]!.includes('=')) {
      out.push(tokens[++i]!);
      props.add(tokens[i]!.split('=')[0]!);
    }
    if (!props.has('protocols')) out.push('protocols=tcp');
    if (!props.has('latency')) out.push('latency=100');
    if (!props.has('tcp-timeout')) out.push(`tcp-timeout=${Math.round(timeoutMs * 0.6) * 1000}`);
  }
  return out;
}

/** What to check, for a gst-launch-1.0 error line about this source. */
function hintFor(error: string, source: string): string {
  const missing = /no element "([^"]+)"/.exec(error);
  if (missing) {
    return `GStreamer has no element "${missing[1]}": install the plugins that have it (gst-inspect-1.0 ${missing[1]} says whether it is there; v4l2src and rtspsrc are in gstreamer1.0-plugins-good, avdec_h264 in gstreamer1.0-libav), or fix its name in the source`;
  }
  if (/not.negotiated|could not link|not-linked/i.test(error)) {
    return "the source's output does not fit the encoder: it must give raw video (add a decoder, e.g. \"! decodebin\"), and width/height must be sizes it can be scaled to";
  }
  if (/v4l2|\/dev\/video/i.test(error) || /^v4l2src\b/.test(source)) {
    return "check the device (ls -l /dev/video*), that the agent's user is in group video, and that no other program (a video recorder of the same camera) holds it";
  }
  if (/rtsp/i.test(error) || /\brtspsrc\b/.test(source)) {
    return "check the camera's address and that it answers from the bus network (the URL, its port, the user and password in it), and that it is streaming";
  }
  if (/erroneous pipeline|syntax error/i.test(error)) return 'check the source: it is what would follow gst-launch-1.0 up to, not including, the encoder';
  return `try it by hand: gst-launch-1.0 ${source} ! videoconvert ! jpegenc snapshot=true ! filesink location=/tmp/still.jpg`;
}

/** gst-launch-1.0's error, short: the element's message and the debug detail that says why ("system error: …"). */
function errorOf(lines: readonly string[]): { short: string; raw: string } | null {
  const at = lines.findIndex((l) => l.startsWith('ERROR:') || l.startsWith('WARNING: erroneous pipeline'));
  if (at === -1) return null;
  const raw = lines[at]!;
  const short = raw.replace(/^ERROR: from element \/(?:[^/:]+:[^/:]+\/)*[^/:]+:([^:/]+): /, '$1: ').replace(/^WARNING: erroneous pipeline: /, '');
  // "Additional debug info:", the source line of the message, then the reason, up to the next ERROR.
  let why = '';
  if (lines[at + 1] === 'Additional debug info:') {
    const rest: string[] = [];
    for (const l of lines.slice(at + 3)) {
      if (l.startsWith('ERROR:') || l.startsWith('Execution ended') || l.startsWith('Setting pipeline')) break;
      rest.push(l.trim());
    }
    why = rest.filter(Boolean).join(' ');
  }
  return { short: why ? `${short} (${why})` : short, raw };
}

export class GstreamerStillCamera implements Camera {
  readonly driver = 'gstreamer';
  readonly description: string;
  private readonly o: GstreamerStillOptions;
  private readonly args: string[];
  private readonly timeoutMs: number;
  private queue: Promise<unknown> = Promise.resolve();
  /** Ends the run under way, if any (close()). */
  private abort: ((why: string) => void) | null = null;
  private closed = false;
  /** PIDs of the runs, oldest first (the last 20), for whoever checks that none is left. */
  readonly pids: number[] = [];

  constructor(o: GstreamerStillOptions) {
    this.o = o;
    this.timeoutMs = o.timeoutMs ?? 10_000;
    this.description = `GStreamer still from ${o.source}`;
    try {
      this.args = stillArgs(o);
    } catch (err) {
      throw this.error('source', 'open', `${errText(err)}; fix the source in the config`);
    }
  }

  /** The camera as the agent config describes it (drivers.ts). Nothing runs until connect() or snapshot(). */
  static fromConfig(cfg: GstreamerStillConfig, log?: Logger): Promise<GstreamerStillCamera> {
    return Promise.resolve(new GstreamerStillCamera({ source: cfg.source, width: cfg.width, height: cfg.height, quality: cfg.quality, timeoutMs: cfg.timeoutMs, log }));
  }

  /** One trial still: proves at start that GStreamer, the plugins, the device or the network and the source all work. */
  async connect(): Promise<CameraReady> {
    const t0 = performance.now();
    const jpeg = await this.run('connect');
    const ms = Math.round(performance.now() - t0);
    const dims = jpegDimensions(jpeg);
    const size = dims ? `${dims.width}x${dims.height}` : 'unknown size';
    return {
      summary: `gives ${size} stills from "${this.o.source}" (${jpeg.length} bytes in ${ms} ms)`,
      fields: { source: this.o.source, width: dims?.width, height: dims?.height, bytes: jpeg.length, ms },
    };
  }

  snapshot(): Promise<Buffer> {
    return this.run('snapshot');
  }

  /** Kill a run under way (it fails with 'io'); later calls fail at once. */
  async close(): Promise<void> {
    this.closed = true;
    this.abort?.('camera closed by the agent');
    await this.queue;
  }

  /** Runs one at a time: two pipelines on one V4L2 device would fight over it. */
  private run(what: string): Promise<Buffer> {
    const result = this.queue.then(() => {
      if (this.closed) throw this.error('io', what, 'camera closed by the agent');
      return this.capture(what);
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  private capture(what: string): Promise<Buffer> {
    const cmd = this.o.gstLaunch ?? 'gst-launch-1.0';
    const graceMs = this.o.exitGraceMs ?? 1000;
    const maxBytes = this.o.maxBytes ?? 32 * 1024 * 1024;
    const t0 = performance.now();
    return new Promise<Buffer>((resolve, reject) => {
      let child: ChildProcess;
      try {
        // Its own process group, so the deadline kills whatever it started too.
        child = spawn(cmd, this.args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      } catch (err) {
        reject(this.error('io', what, `cannot start ${cmd} (${errText(err)}); install gstreamer1.0-tools`));
        return;
      }
      if (child.pid !== undefined) this.pids.push(child.pid);
      if (this.pids.length > 20) this.pids.shift();
      this.o.log?.debug({ event: 'camera.gst.start', source: this.o.source, pid: child.pid, args: this.args });
      const out: Buffer[] = [];
      let outBytes = 0;
      let whole: number | null = null;
      const stderr: string[] = [];
      let killed: { why: string; kind: CameraErrorKind } | null = null;
      let done = false;
      const timers: NodeJS.Timeout[] = [];
      let deadline: NodeJS.Timeout | null = null;
      const kill = (why: string, kind: CameraErrorKind) => {
        if (killed || done) return;
        killed = { why, kind };
        this.o.log?.warn({ event: 'camera.gst.kill', source: this.o.source, pid: child.pid, why });
        killGroup(child);
        // A child that does not go even on SIGKILL (stuck in the kernel) must not hold the alarm's evidence.
        timers.push(setTimeout(() => finish(null, 'SIGKILL, no exit seen'), 2000));
      };
      const finish = (code: number | null, signal: string | null, spawnError?: NodeJS.ErrnoException) => {
        if (done) return;
        done = true;
        for (const t of timers) clearTimeout(t);
        if (deadline) clearTimeout(deadline);
        if (this.abort === abort) this.abort = null;
        const ms = Math.round(performance.now() - t0);
        const bytes = Buffer.concat(out);
        if (whole !== null) {
          if (killed !== null) this.o.log?.warn({ event: 'camera.gst.hung', source: this.o.source, pid: child.pid, why: (killed as { why: string }).why }, 'picture complete; gst-launch-1.0 killed');
          this.o.log?.info({ event: 'camera.snapshot', source: this.o.source, bytes: whole, ms, step: what });
          resolve(bytes.subarray(0, whole));
          return;
        }
        reject(this.failure(what, { code, signal, spawnError, killed, stderr, bytes, ms, cmd }));
      };
      const abort = (why: string) => kill(why, 'io');
      this.abort = abort;
      deadline = setTimeout(() => kill(`no picture within ${this.timeoutMs} ms`, 'timeout'), this.timeoutMs);
      child.stdout!.on('data', (d: Buffer) => {
        if (whole !== null) return;
        out.push(d);
        outBytes += d.length;
        if (outBytes > maxBytes) return kill(`more than ${maxBytes} bytes and no end of a JPEG`, 'garbled');
        try {
          whole = jpegLength(out.length === 1 ? d : Buffer.concat(out));
        } catch (err) {
          return kill(errText(err), 'garbled');
        }
        if (whole === null) return;
        // The picture is whole: from now on only the exit is awaited, for at most graceMs.
        if (deadline) clearTimeout(deadline);
        timers.push(setTimeout(() => kill(`no exit within ${graceMs} ms of its picture`, 'timeout'), graceMs));
      });
      createInterface({ input: child.stderr! }).on('line', (line) => {
        if (stderr.length < 50) stderr.push(line);
      });
      child.on('error', (err: NodeJS.ErrnoException) => {
        // Spawn failures come here and may bring no 'close'.
        if (child.pid === undefined || err.code === 'ENOENT') finish(null, null, err);
      });
      // 'close', not 'exit': the last bytes of the picture and the error lines may still be in the pipes at 'exit'.
      child.on('close', (code, signal) => finish(code, signal));
    });
  }

  private failure(
    what: string,
    r: { code: number | null; signal: string | null; spawnError?: NodeJS.ErrnoException; killed: { why: string; kind: CameraErrorKind } | null; stderr: string[]; bytes: Buffer; ms: number; cmd: string },
  ): CameraError {
    if (r.spawnError) {
      const missing = r.spawnError.code === 'ENOENT';
      return this.error('io', what, missing ? `${r.cmd} not found; install gstreamer1.0-tools` : `cannot start ${r.cmd} (${r.spawnError.message})`);
    }
    const said = errorOf(r.stderr);
    const hint = hintFor(said?.raw ?? '', this.o.source);
    if (r.killed) {
      const tail = said ? `; it said: ${said.short}` : r.stderr.length ? `; its last words: ${r.stderr.at(-1)}` : '';
      const check =
        r.killed.kind === 'timeout' ? `; check that the source gives video at all (${hint})` : r.killed.kind === 'garbled' ? '; check that the source gives raw video' : '';
      return this.error(r.killed.kind, what, `${r.killed.why}; gst-launch-1.0 killed after ${r.ms} ms${tail}${check}`, said?.raw);
    }
    if (said) return this.error('source', what, `gst-launch-1.0 failed: ${said.short}; ${hint}`, said.raw);
    if (r.code !== 0) {
      const tail = r.stderr.length ? `: ${r.stderr.slice(-3).join(' / ')}` : '';
      return this.error('source', what, `gst-launch-1.0 ${r.signal ? `killed by ${r.signal}` : `exited with code ${r.code}`}${tail}; ${hint}`);
    }
    if (r.bytes.length === 0) return this.error('source', what, `the source ended without a frame (gst-launch-1.0 exited 0 with no picture); ${hint}`);
    return this.error('truncated', what, `the JPEG is cut short (${r.bytes.length} bytes, no end marker) though gst-launch-1.0 exited 0; take another snapshot, and ${hint}`);
  }

  private error(kind: CameraErrorKind, command: string, what: string, toolError?: string): CameraError {
    const detail = toolError === undefined ? { path: this.o.source, command } : { path: this.o.source, command, toolError };
    return new CameraError(kind, `camera (GStreamer source "${this.o.source}"): ${command}: ${what}`, detail);
  }
}

/** SIGKILL to the child's process group (it leads one: detached); nothing if it is gone. */
function killGroup(child: ChildProcess): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
