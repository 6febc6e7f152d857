// One video camera recorded into a ring of short segments by a supervised
// gst-launch-1.0 child process: the recorder's public face (start, stop,
// segments, gaps, pin, waitForRecording) and the wiring of its parts:
//   gst-supervisor.ts  the child: spawn, output lines, restart with backoff,
//                      stall watchdog, stop with EOS then SIGKILL;
//   segment-timing.ts  the segments' times from the pipeline's messages, their
//                      settlement (closed, cut off), and the gaps;
//   segment-ring.ts    the index of files, kept within its bounds, on disk.
//
// Sim: the sim camera is `videotestsrc is-live=true …` through this same
// recorder; there is no separate fake.

import { EventEmitter } from 'node:events';
import { linkSync, mkdirSync, statSync } from 'node:fs';
import { fsyncDirSync } from '../../common/durable-file.ts';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { MediaTools } from './ffprobe.ts';
import { type GstLine, checkSource, recorderArgs, sourceFramerate } from './gst-launch.ts';
import { type RecorderClock, SystemClock, utcOf } from './clock.ts';
import { type RecordingGap, SegmentRing, type SegmentRecord, type SegmentState, type VideoSegment } from './segment-ring.ts';
import { GstSupervisor } from './gst-supervisor.ts';
import { SegmentTiming } from './segment-timing.ts';
import { errText } from '../../common/errors.ts';

export type { RecordingGap, SegmentState, VideoSegment } from './segment-ring.ts';
export type { RecorderClock } from './clock.ts';

export interface VideoRecorderOptions {
  /** Camera name for logs and errors, e.g. "front". */
  name: string;
  /**
   * Source fragment as typed after `gst-launch-1.0` in a shell, e.g.
   * "v4l2src device=/dev/video0 ! video/x-raw,width=640,height=480,framerate=15/1",
   * "rtspsrc location=rtsp://10.0.0.5/stream latency=200 ! rtph264depay ! avdec_h264",
   * or for the sim "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=10/1".
   * It must be live (real time): segment times are running times.
   */
  source: string;
  /** The ring's folder; it belongs to this recorder (seg*.mkv files and index.json). */
  dir: string;
  /** Segment length. Default 2 s. */
  segmentS?: number;
  /** Keyframe interval; also the tolerance of a clip's start. Default 1 s. */
  keyframeIntervalS?: number;
  /** Files in the ring, the one being written included. Default 60. */
  maxSegments?: number;
  /** Bytes in the ring, the file being written included. Default 512 MiB. */
  maxBytes?: number;
  /**
   * How many file numbers splitmuxsink cycles through (its max-files).
   * Must exceed maxSegments by at least 2; the slack is how far the ring's
   * deletions may fall behind before a number comes round. Default 2 × maxSegments + 2.
   */
  fileNumbers?: number;
  /** Frame rate forced with videorate when the source's caps name none. Default 15. */
  fps?: number;
  /** Encoder fragment replacing x264enc (must output H.264 with keyframes every keyframeIntervalS). */
  encoder?: string;
  /** x264enc speed-preset. Default ultrafast (head units have little CPU). */
  speedPreset?: string;
  /** x264enc bitrate; default x264enc's own (2048 kbit/s). */
  bitrateKbps?: number;
  /** First restart delay after the child died. Default 500 ms. */
  restartMinMs?: number;
  /** Restart delay ceiling. Default 30 s. */
  restartMaxMs?: number;
  /** Kill and restart when no segment opened or closed and the open file did not grow for this long. Default max(10 s, 4 segments). */
  stallMs?: number;
  /** stop(): how long EOS may take before SIGKILL. Default 5000 ms. */
  stopTimeoutMs?: number;
  /** Default 'gst-launch-1.0'. */
  gstLaunch?: string;
  tools?: MediaTools;
  /** Monotonic instants to UTC: pass the agent's GPS-corrected clock. Default: the system clock. */
  clock?: RecorderClock;
  /** Jitter source for the backoff, [0, 1). Default Math.random. */
  random?: () => number;
  log?: Logger;
}

export type VideoRecorderState = 'idle' | 'starting' | 'recording' | 'restarting' | 'stopping' | 'stopped';

export interface VideoRecorderStatus {
  state: VideoRecorderState;
  /** One sentence a technician can act on. */
  detail: string;
  /** The gst-launch-1.0 run (1, 2, …). */
  run: number;
  pid: number | null;
  /** When state is 'restarting': the backoff delay. */
  restartInMs?: number;
}

/**
 * A segment hard-linked out of the ring. It reads its times from the ring's
 * record of the segment, so a segment still being written at pin time gets
 * its end when it is finalised, and every time follows the clock.
 */
export class PinnedSegment {
  constructor(
    private readonly record: SegmentRecord,
    /** The link in the pin folder. */
    readonly path: string,
    private readonly clock: RecorderClock,
  ) {}

  get name(): string {
    return this.record.name;
  }

  get ringPath(): string {
    return this.record.path;
  }

  get startMs(): number {
    return utcOf(this.clock, this.record.start);
  }

  get endMs(): number | null {
    return this.record.end === null ? null : utcOf(this.clock, this.record.end);
  }

  get state(): SegmentState {
    return this.record.state;
  }

  get run(): number {
    return this.record.run;
  }
}

export type VideoRecorderEvents = {
  /** A segment was finalised (closed) or found cut off after the child died. */
  segment: [VideoSegment];
  status: [VideoRecorderStatus];
  /** An outage ended: recording resumed after it. */
  gap: [RecordingGap];
  /** Emitted only while someone listens; otherwise logged. */
  error: [Error];
};

export class VideoRecorder extends EventEmitter<VideoRecorderEvents> {
  readonly name: string;
  readonly dir: string;
  readonly segmentS: number;
  readonly keyframeIntervalS: number;
  readonly stallMs: number;
  private readonly source: string;
  private readonly fps: number;
  private readonly addVideorate: boolean;
  private readonly fileNumbers: number;
  readonly clock: RecorderClock;
  private readonly log: Logger | undefined;
  private readonly ring: SegmentRing;
  private readonly timing: SegmentTiming;
  private readonly supervisor: GstSupervisor;

  private loaded = false;
  private started = false;
  private state: VideoRecorderState = 'idle';
  private lastStatus: VideoRecorderStatus = { state: 'idle', detail: 'not started', run: 0, pid: null };
  private stopPromise: Promise<void> | null = null;

  constructor(private readonly opts: VideoRecorderOptions) {
    super();
    if (!opts.name) throw new Error('VideoRecorder: empty camera name; give every camera a name in the config');
    this.name = opts.name;
    checkSource(opts.name, opts.source);
    this.source = opts.source;
    this.dir = resolve(opts.dir);
    this.segmentS = positive(opts.name, 'segmentS', opts.segmentS ?? 2);
    this.keyframeIntervalS = positive(opts.name, 'keyframeIntervalS', opts.keyframeIntervalS ?? 1);
    if (this.keyframeIntervalS > this.segmentS) {
      throw new Error(`video camera ${opts.name}: keyframeIntervalS ${this.keyframeIntervalS} exceeds segmentS ${this.segmentS}; segments are cut on keyframes, so make it at most the segment length`);
    }
    const maxSegments = opts.maxSegments ?? 60;
    if (!Number.isInteger(maxSegments) || maxSegments < 2) throw new Error(`video camera ${opts.name}: maxSegments ${maxSegments} must be an integer ≥ 2 (the file being written and at least one finished one)`);
    const maxBytes = positive(opts.name, 'maxBytes', opts.maxBytes ?? 512 * 1024 * 1024);
    this.fileNumbers = opts.fileNumbers ?? 2 * maxSegments + 2;
    if (!Number.isInteger(this.fileNumbers) || this.fileNumbers < maxSegments + 2) {
      throw new Error(`video camera ${opts.name}: fileNumbers ${this.fileNumbers} must be an integer ≥ maxSegments + 2 (${maxSegments + 2}), or a reused file name would overwrite a segment still in the ring`);
    }
    const capsFps = sourceFramerate(opts.source);
    this.fps = capsFps ?? positive(opts.name, 'fps', opts.fps ?? 15);
    this.addVideorate = capsFps === null;
    const restartMinMs = positive(opts.name, 'restartMinMs', opts.restartMinMs ?? 500);
    const restartMaxMs = Math.max(restartMinMs, opts.restartMaxMs ?? 30_000);
    this.stallMs = positive(opts.name, 'stallMs', opts.stallMs ?? Math.max(10_000, 4000 * this.segmentS));
    this.clock = opts.clock ?? new SystemClock();
    this.log = opts.log;
    this.args(0); // a folder or encoder the command line cannot carry fails here, not in the first restart
    this.ring = new SegmentRing({ camera: opts.name, dir: this.dir, maxSegments, maxBytes, fileNumbers: this.fileNumbers, clock: this.clock, tools: opts.tools, log: opts.log });
    this.timing = new SegmentTiming(
      { camera: opts.name, ring: this.ring, clock: this.clock, log: opts.log },
      {
        progress: () => this.supervisor.progress(),
        recording: (run) => {
          if (this.state !== 'recording' && !this.supervisor.stopping) this.setState('recording', `video camera ${this.name}: recording (run ${run})`);
        },
        proven: () => this.supervisor.proven(),
        segment: (seg) => this.safeEmit('segment', seg),
        gap: (gap) => this.safeEmit('gap', gap),
      },
    );
    this.supervisor = new GstSupervisor(
      {
        camera: opts.name,
        command: opts.gstLaunch,
        restartMinMs,
        restartMaxMs,
        stallMs: this.stallMs,
        stopTimeoutMs: opts.stopTimeoutMs ?? 5000,
        random: opts.random ?? Math.random,
        log: opts.log,
      },
      {
        prepareRun: () => {
          const run = this.ring.nextRun();
          this.timing.beginRun(run);
          return { run, args: this.args(this.ring.nextStartIndex()) };
        },
        message: (msg) => this.onMessage(msg),
        poll: () => this.timing.poll(),
        ended: (run, why, stopping) => this.timing.runEnded(run, why, stopping),
        state: (state, detail, restartInMs) => this.setState(state, detail, restartInMs),
        failed: (err) => this.emitError(err),
      },
    );
  }

  /** The gst-launch-1.0 child's PID while one runs. */
  get pid(): number | null {
    return this.supervisor.pid;
  }

  get status(): VideoRecorderStatus {
    return { ...this.lastStatus, pid: this.pid };
  }

  /** UTC now, by the recorder's clock. */
  now(): number {
    return this.clock.utcNow();
  }

  /** UTC end of the newest segment the ring deleted for space, or null if it never deleted one (see footage.ts). */
  overwrittenBefore(): number | null {
    return this.ring.overwrittenBefore();
  }

  /** Load the ring from disk and start recording. Resolves once the child is spawned (not when video flows). */
  async start(): Promise<void> {
    if (this.stopPromise) await this.stopPromise;
    if (this.started) return;
    this.started = true;
    this.supervisor.start();
    if (!this.loaded) {
      await this.ring.load();
      this.loaded = true;
    }
    this.timing.starting();
    this.supervisor.spawn();
  }

  /**
   * Stop recording: SIGINT (gst-launch-1.0 -e sends EOS, the open segment is
   * finalised), SIGKILL if the child has not exited within stopTimeoutMs or
   * hangs after its EOS. Resolves when the child is gone and the index saved.
   */
  stop(): Promise<void> {
    // A second SIGINT would make gst-launch-1.0 quit without waiting for its EOS.
    this.stopPromise ??= this.doStop().finally(() => {
      this.stopPromise = null;
    });
    return this.stopPromise;
  }

  private async doStop(): Promise<void> {
    this.started = false;
    await this.supervisor.stop();
    await this.timing.stopped();
    if (this.state !== 'stopped') this.setState('stopped', `video camera ${this.name}: stopped`);
  }

  /** The ring, oldest first by wall-clock time (never by file number: numbers wrap). */
  segments(): VideoSegment[] {
    return this.ring.list();
  }

  /** Outages: from where the video stops to where the next run's video starts (toMs null while it lasts). */
  gaps(): RecordingGap[] {
    return this.ring.gaps();
  }

  /**
   * Hard-link every segment overlapping [fromMs, toMs] into pinDir, now and
   * synchronously, so the ring can delete its names without touching these
   * files. Pin names are "<startMs>-<name>": unique across wraps, and in time
   * order by name. A segment still being written is linked too; its
   * PinnedSegment gets its end when it is finalised. Pinning the same segment
   * again reuses the link. pinDir must be on the ring's filesystem.
   */
  pin(fromMs: number, toMs: number, pinDir: string): PinnedSegment[] {
    mkdirSync(pinDir, { recursive: true });
    const out: PinnedSegment[] = [];
    let linked = 0;
    for (const rec of this.ring.records()) {
      const seg = { startMs: utcOf(this.clock, rec.start), endMs: rec.end === null ? null : utcOf(this.clock, rec.end) };
      if ((seg.endMs ?? Infinity) <= fromMs || seg.startMs >= toMs) continue;
      // Named by the start as first read (fixed for the record): re-pinning finds the same link however the clock moved since.
      const path = join(pinDir, `${rec.key}-${rec.name}`);
      try {
        linkSync(rec.path, path);
        linked++;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EXDEV') {
          throw new Error(`video camera ${this.name}: cannot pin ${rec.path} into ${pinDir}: another filesystem; put the pin folder on the same filesystem as ${this.dir}`, { cause: err });
        }
        if (code === 'ENOENT') continue; // deleted behind the ring's back (prune drops the index entry before the file): nothing to pin
        if (code !== 'EEXIST' || statSync(path).ino !== statSync(rec.path).ino) throw err;
      }
      out.push(new PinnedSegment(rec, path, this.clock));
    }
    if (linked > 0) {
      // The links are entries of the pin folder: made durable, a power cut right after the press keeps the pre-roll.
      try {
        fsyncDirSync(pinDir);
      } catch (err) {
        this.log?.warn({ event: 'video.pin.fsync-failed', camera: this.name, pinDir, err: errText(err) });
      }
    }
    this.log?.info({ event: 'video.pinned', camera: this.name, fromMs, toMs, pinDir, segments: out.length });
    return out;
  }

  /**
   * Resolves true once a finalised segment reaches `untilMs` (so everything
   * the ring will ever hold before it is on disk), false after timeoutMs or on stop().
   */
  waitForRecording(until: number | (() => number), timeoutMs: number): Promise<boolean> {
    // A function is read again at each check: a press is a monotonic instant whose UTC moves with the clock, as the segments' do.
    const untilMs = typeof until === 'function' ? until : () => until;
    // Only this process's segments can be recorded after `until`: a ring loaded from disk may hold
    // segments stamped on another clock (GPS time known then, not yet now) that read as later.
    const reached = () => {
      const u = untilMs();
      return this.ring.records().some((r) => 'mono' in r.start && r.state !== 'open' && r.end !== null && utcOf(this.clock, r.end) >= u);
    };
    if (reached()) return Promise.resolve(true);
    return new Promise((res) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('segment', onSegment);
        this.off('status', onStatus);
        res(ok);
      };
      const onSegment = () => {
        if (reached()) done(true);
      };
      const onStatus = (s: VideoRecorderStatus) => {
        if (s.state === 'stopped') done(reached());
      };
      const timer = setTimeout(() => done(reached()), timeoutMs);
      this.on('segment', onSegment);
      this.on('status', onStatus);
    });
  }

  // ───────────────────────────── wiring ─────────────────────────────

  private args(startIndex: number): string[] {
    return recorderArgs({
      source: this.source,
      dir: this.dir,
      segmentS: this.segmentS,
      keyframeIntervalS: this.keyframeIntervalS,
      fps: this.fps,
      addVideorate: this.addVideorate,
      fileNumbers: this.fileNumbers,
      startIndex,
      encoder: this.opts.encoder,
      speedPreset: this.opts.speedPreset ?? 'ultrafast',
      bitrateKbps: this.opts.bitrateKbps,
    });
  }

  /** A message of the current run (EOS and errors are the supervisor's). */
  private onMessage(msg: GstLine): void {
    switch (msg.kind) {
      case 'clock':
        this.timing.clockSeen();
        break;
      case 'fragment-opened':
        this.timing.opened(msg.name, msg.number, msg.runningTimeNs);
        break;
      case 'fragment-closed':
        this.timing.closed(msg.name, msg.runningTimeNs, this.supervisor.eosSeen);
        break;
      case 'eos':
      case 'error':
        break;
    }
  }

  private setState(state: VideoRecorderState, detail: string, restartInMs?: number): void {
    this.state = state;
    const status: VideoRecorderStatus = { state, detail, run: this.supervisor.run, pid: this.pid, ...(restartInMs !== undefined ? { restartInMs } : {}) };
    this.lastStatus = status;
    this.safeEmit('status', status);
  }

  private emitError(err: Error): void {
    if (this.listenerCount('error') === 0) {
      this.log?.error({ event: 'video.error', camera: this.name, err: err.message });
      return;
    }
    this.safeEmit('error', err);
  }

  // A throwing listener is a bug elsewhere; it must not land in a child
  // process handler and crash the agent.
  private safeEmit<K extends keyof VideoRecorderEvents>(event: K, ...args: VideoRecorderEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: VideoRecorderEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log?.error({ event: 'video.listener.threw', camera: this.name, listenerOf: event, err: errText(err) });
    }
  }
}

function positive(camera: string, what: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0) throw new Error(`video camera ${camera}: ${what} ${v} must be a positive number`);
  return v;
}
