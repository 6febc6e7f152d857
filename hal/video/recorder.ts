// One video camera recorded into a ring of short segments by a supervised
// gst-launch-1.0 child process. GStreamer never runs inside the agent: a
// crash in a video element must not take the panic button down
// (gstreamer-superficial issue #26). The child is restarted with backoff when
// it dies, killed and restarted when it stalls, and every outage is kept as
// a gap so a clip across it can say so.
//
// Segment times come from splitmuxsink's fragment-opened/closed messages
// (gst-launch-1.0 -m): each carries the running time of the split, exact to
// the frame and free of the lag with which the messages arrive (a fragment is
// closed about one GOP after its end, when splitmuxsink has seen the next
// keyframe). Running time 0 is pinned to the monotonic clock once per run,
// when the pipeline picks its clock on the way to PLAYING; UTC comes from the
// agent's clock when a time is read (clock.ts), so segments recorded before
// GPS time was known move with it once it is. File mtimes would be a GOP late
// and ffprobe per segment costs a process every few seconds; they are used
// only for files found on disk without an index entry.
//
// Sim: the sim camera is `videotestsrc is-live=true …` through this same
// recorder; there is no separate fake.

import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { linkSync, mkdirSync, statSync } from 'node:fs';
import { fsyncDirSync } from '../../common/durable-file.ts';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import type { MediaTools } from './ffprobe.ts';
import { checkSource, parseGstLine, recorderArgs, sourceFramerate } from './gst-launch.ts';
import { type Instant, type RecorderClock, SystemClock, monoNow, utcOf } from './clock.ts';
import { type GapRecord, type RecordingGap, SegmentRing, type SegmentRecord, type SegmentState, type VideoSegment, segmentView, settleRecord } from './segment-ring.ts';
import { Backoff } from '../../common/backoff.ts';
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

/** How long gst-launch-1.0 may take to exit after its EOS (1.22 sometimes never does). */
const EOS_EXIT_MS = 2000;

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
  private readonly restartMinMs: number;
  private readonly restartMaxMs: number;
  private readonly stopTimeoutMs: number;
  readonly clock: RecorderClock;
  private readonly random: () => number;
  private readonly log: Logger | undefined;
  private readonly ring: SegmentRing;

  private loaded = false;
  private started = false;
  private stopping = false;
  private child: ChildProcess | null = null;
  private run = 0;
  private state: VideoRecorderState = 'idle';
  private lastStatus: VideoRecorderStatus = { state: 'idle', detail: 'not started', run: 0, pid: null };
  private failures = 0;
  private readonly backoff: Backoff;
  private restartTimer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private exitWaiters: (() => void)[] = [];
  private stopPromise: Promise<void> | null = null;
  private readonly settling = new Set<Promise<void>>();

  // Per run (monotonic ms):
  private anchorMono: number | null = null;
  private clockSeenMono: number | null = null;
  private lastProgress = 0;
  private lastOpenSize = -1;
  private eosAt: number | null = null;
  private killReason: string | null = null;
  private firstError: string | null = null;
  private stderrTail: string[] = [];

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
    this.restartMinMs = positive(opts.name, 'restartMinMs', opts.restartMinMs ?? 500);
    this.restartMaxMs = Math.max(this.restartMinMs, opts.restartMaxMs ?? 30_000);
    this.stallMs = positive(opts.name, 'stallMs', opts.stallMs ?? Math.max(10_000, 4000 * this.segmentS));
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 5000;
    this.clock = opts.clock ?? new SystemClock();
    this.random = opts.random ?? Math.random;
    this.backoff = new Backoff(this.restartMinMs, this.restartMaxMs, this.random);
    this.log = opts.log;
    this.args(0); // a folder or encoder the command line cannot carry fails here, not in the first restart
    this.ring = new SegmentRing({ camera: opts.name, dir: this.dir, maxSegments, maxBytes, fileNumbers: this.fileNumbers, clock: this.clock, tools: opts.tools, log: opts.log });
  }

  /** The gst-launch-1.0 child's PID while one runs. */
  get pid(): number | null {
    return this.child?.pid ?? null;
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
    this.stopping = false;
    if (!this.loaded) {
      await this.ring.load();
      this.loaded = true;
    }
    const newest = this.ring.records().at(-1);
    if (newest?.end) this.ring.openGap({ from: newest.end, reason: 'recorder not running (the agent was stopped or restarting)' });
    this.spawnRun();
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
    this.stopping = true;
    this.started = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    if (child) {
      this.setState('stopping', `video camera ${this.name}: stopping (EOS, then at most ${this.stopTimeoutMs} ms)`);
      const exited = new Promise<void>((res) => this.exitWaiters.push(res));
      const t0 = performance.now();
      const guard = setInterval(() => {
        const now = performance.now();
        if (now - t0 > this.stopTimeoutMs) this.killChild(child, `no exit within ${this.stopTimeoutMs} ms of SIGINT`);
        else if (this.eosAt !== null && now - this.eosAt > EOS_EXIT_MS) this.killChild(child, 'hung after EOS (files complete)');
      }, 100);
      try {
        child.kill('SIGINT');
      } catch {
        // already gone: the exit handler runs anyway
      }
      await exited;
      clearInterval(guard);
    }
    await Promise.all([...this.settling]);
    const lastEnd = this.lastMediaEnd();
    if (lastEnd !== null) this.ring.openGap({ from: lastEnd, reason: 'recorder stopped' });
    await this.ring.save();
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

  // ───────────────────────────── the child ─────────────────────────────

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

  private spawnRun(): void {
    this.restartTimer = null;
    if (this.stopping) return;
    this.run = this.ring.nextRun();
    this.anchorMono = null;
    this.clockSeenMono = null;
    this.eosAt = null;
    this.killReason = null;
    this.firstError = null;
    this.stderrTail = [];
    this.lastOpenSize = -1;
    this.lastProgress = performance.now();
    const args = this.args(this.ring.nextStartIndex());
    const cmd = this.opts.gstLaunch ?? 'gst-launch-1.0';
    let child: ChildProcess;
    try {
      child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      this.runEnded(null, `cannot start ${cmd} (${errText(err)})`);
      return;
    }
    this.child = child;
    let ended = false;
    const end = (why: string | null) => {
      if (ended) return;
      ended = true;
      this.runEnded(child, why);
    };
    child.on('error', (err: NodeJS.ErrnoException) => {
      // Spawn failures come here and may bring no 'exit'.
      if (child.pid === undefined || err.code === 'ENOENT') {
        end(err.code === 'ENOENT' ? `${cmd} not found; install gstreamer1.0-tools` : `cannot start ${cmd} (${err.message})`);
      }
    });
    // 'close', not 'exit': the last lines (the final fragment-closed, the ERROR) may still be in the pipes at 'exit'.
    child.on('close', (code, signal) => end(signal ? `gst-launch-1.0 killed by ${signal}` : `gst-launch-1.0 exited with code ${code}`));
    createInterface({ input: child.stdout! }).on('line', (line) => this.onLine(child, line, false));
    createInterface({ input: child.stderr! }).on('line', (line) => this.onLine(child, line, true));
    this.log?.info({ event: 'video.run.start', camera: this.name, run: this.run, pid: child.pid, args });
    this.setState('starting', `video camera ${this.name}: pipeline starting (run ${this.run})`);
    const tick = Math.max(100, Math.min(1000, this.stallMs / 4));
    this.watchdog = setInterval(() => this.watch(child), tick);
  }

  private onLine(child: ChildProcess, line: string, fromStderr: boolean): void {
    if (child !== this.child) return;
    if (fromStderr) {
      this.stderrTail.push(line);
      if (this.stderrTail.length > 20) this.stderrTail.shift();
    }
    const msg = parseGstLine(line);
    if (!msg) return;
    switch (msg.kind) {
      case 'clock':
        this.clockSeenMono ??= monoNow();
        break;
      case 'fragment-opened':
        this.onOpened(msg.name, msg.number, msg.runningTimeNs);
        break;
      case 'fragment-closed':
        this.onClosed(msg.name, msg.runningTimeNs);
        break;
      case 'eos':
        this.eosAt = performance.now();
        if (!this.stopping) this.log?.warn({ event: 'video.source.eos', camera: this.name, run: this.run }, 'the source ended its stream');
        break;
      case 'error':
        this.firstError ??= msg.text;
        break;
    }
  }

  private onOpened(name: string, number: number, runningTimeNs: number): void {
    const rtMs = runningTimeNs / 1e6;
    if (this.anchorMono === null) {
      // Both are upper bounds of the monotonic time at running time 0: the
      // clock message is printed just after the base time is taken, a
      // fragment message some time after its running time. Take the tighter one.
      this.anchorMono = Math.min(this.clockSeenMono ?? Infinity, monoNow() - rtMs);
    }
    const start: Instant = { mono: this.anchorMono + rtMs };
    this.ring.open(name, number, start, this.run);
    this.progress();
    const gap = this.ring.closeGap(start);
    if (gap) {
      this.log?.warn({ event: 'video.gap', camera: this.name, ...gap, seconds: (gap.toMs! - gap.fromMs) / 1000 });
      this.safeEmit('gap', gap);
    }
    if (this.state !== 'recording' && !this.stopping) this.setState('recording', `video camera ${this.name}: recording (run ${this.run})`);
    this.ring.prune();
    void this.ring.save();
  }

  private onClosed(name: string, runningTimeNs: number): void {
    if (this.anchorMono === null) return;
    const seg = this.ring.settle(name, { mono: this.anchorMono + runningTimeNs / 1e6 }, 'closed');
    this.progress();
    if (!seg) return;
    this.failures = 0; // a finished segment proves the pipeline works
    this.backoff.reset();
    if (this.eosAt !== null) {
      // At EOS the message carries the last frame's start, not its end.
      this.track(this.refineEnd(seg));
    } else {
      this.segmentDone(seg);
    }
  }

  private async refineEnd(seg: SegmentRecord): Promise<void> {
    const end = await this.ring.probeEnd(seg);
    // Settled on the record itself: a pin holding it sees the end even if the ring has let it go.
    if (end !== null) settleRecord(this.clock, seg, end, 'closed');
    this.segmentDone(seg);
  }

  private segmentDone(rec: SegmentRecord): void {
    const seg = segmentView(this.clock, rec);
    this.log?.debug({ event: 'video.segment', camera: this.name, name: seg.name, startMs: seg.startMs, endMs: seg.endMs, bytes: seg.bytes, state: seg.state });
    // Prune first: listeners see the ring within its bounds.
    this.ring.prune();
    void this.ring.save();
    this.safeEmit('segment', seg);
  }

  /** A segment the muxer never finalised: its end is where its readable packets end. */
  private async settleCutOff(seg: SegmentRecord): Promise<void> {
    const end = await this.ring.probeEnd(seg);
    if (end === null) {
      this.ring.remove(seg.name, 'no readable video in a segment cut off by the child’s death');
      // A pin of it holds an empty span.
      settleRecord(this.clock, seg, seg.start, 'cut-off');
      return;
    }
    settleRecord(this.clock, seg, end, 'cut-off');
    this.segmentDone(seg);
  }

  private runEnded(child: ChildProcess | null, exitText: string | null): void {
    if (child && child !== this.child) return;
    this.child = null;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    const run = this.run;
    const why = [this.killReason ?? exitText ?? 'gst-launch-1.0 ended', this.firstError].filter(Boolean).join(': ');
    const exitedAt: Instant = { mono: monoNow() };
    // Segments this run left open were never finalised by the muxer.
    const leftOpen = this.ring.openSegments().filter((s) => s.run === run);
    this.track(Promise.all(leftOpen.map((s) => this.settleCutOff(s))).then(() => undefined));
    const waiters = this.exitWaiters.splice(0);
    for (const w of waiters) w();
    if (this.stopping) {
      this.log?.info({ event: 'video.run.end', camera: this.name, run, why });
      return;
    }
    // Opened at the exit, moved back to where this run's video really ends
    // once its cut-off segments are probed.
    const gap: GapRecord = this.ring.openGap({ from: exitedAt, reason: why });
    this.track(
      Promise.all([...this.settling]).then(() => {
        const end = this.lastMediaEnd(run);
        if (end !== null) this.ring.refineGapStart(gap, end);
        void this.ring.save();
      }),
    );
    const delayMs = this.nextDelayMs();
    const detail = `video camera ${this.name}: ${why}; restarting in ${(delayMs / 1000).toFixed(1)} s; check the source pipeline in the config (try it with gst-launch-1.0 … ! fakesink)`;
    this.log?.warn({ event: 'video.run.failed', camera: this.name, run, why, stderr: this.stderrTail.slice(-5), restartInMs: delayMs, attempt: this.failures });
    this.setState('restarting', detail, delayMs);
    this.emitError(new Error(detail));
    this.restartTimer = setTimeout(() => this.spawnRun(), delayMs);
  }

  /** The stall watchdog: progress is a fragment message or growth of the file being written. */
  private watch(child: ChildProcess): void {
    if (child !== this.child) return;
    const open = this.ring.openSegments().filter((s) => s.run === this.run).at(-1);
    if (open) {
      try {
        const size = statSync(open.path).size;
        if (size !== this.lastOpenSize) {
          this.lastOpenSize = size;
          this.ring.setBytes(open.name, size);
          this.progress();
        }
      } catch {
        // not created yet, or gone: no progress
      }
    }
    if (this.stopping) return; // stop() has its own deadlines
    const now = performance.now();
    if (this.eosAt !== null && now - this.eosAt > EOS_EXIT_MS) {
      this.killChild(child, `source ended and gst-launch-1.0 did not exit within ${EOS_EXIT_MS} ms`);
    } else if (now - this.lastProgress > this.stallMs) {
      this.killChild(
        child,
        this.anchorMono === null
          ? `no video from the source within ${this.stallMs / 1000} s`
          : `stalled: no new segment and no file growth in ${this.stallMs / 1000} s`,
      );
    }
  }

  private killChild(child: ChildProcess, reason: string): void {
    if (this.killReason !== null) return;
    this.killReason = reason;
    this.log?.warn({ event: 'video.run.kill', camera: this.name, run: this.run, pid: child.pid, reason });
    try {
      child.kill('SIGKILL');
    } catch {
      // gone already
    }
  }

  private progress(): void {
    this.lastProgress = performance.now();
  }

  /** Where the recorded video ends (of runs up to `run`). */
  private lastMediaEnd(run = Infinity): Instant | null {
    let end: Instant | null = null;
    for (const s of this.ring.records()) {
      if (s.run <= run && s.end !== null && (end === null || utcOf(this.clock, s.end) > utcOf(this.clock, end))) end = s.end;
    }
    return end;
  }

  private track(p: Promise<void>): void {
    const guarded = p.catch((err) => this.log?.error({ event: 'video.settle.failed', camera: this.name, err: errText(err) }));
    this.settling.add(guarded);
    void guarded.finally(() => this.settling.delete(guarded));
  }

  /** Exponential backoff with jitter: a camera that dies at once is not respawned in a tight loop. */
  private nextDelayMs(): number {
    this.failures++;
    return this.backoff.next();
  }

  private setState(state: VideoRecorderState, detail: string, restartInMs?: number): void {
    this.state = state;
    const status: VideoRecorderStatus = { state, detail, run: this.run, pid: this.pid, ...(restartInMs !== undefined ? { restartInMs } : {}) };
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

