// The gst-launch-1.0 child of one camera, supervised: spawned, its stdout
// and stderr read line by line, restarted with backoff when it dies, killed
// and restarted by a watchdog when it stalls, and stopped with EOS first
// (SIGINT to gst-launch-1.0 -e, so the open segment is finalised) and SIGKILL
// after a deadline. GStreamer never runs inside the agent: a crash in a video
// element must not take the panic button down (gstreamer-superficial issue
// #26).
//
// What the child records is not this module's business: each run's number
// and command line come from the host (the recorder, from its ring), the
// messages it prints go back to the host, and the host reports progress (a
// fragment message, a file that grows) with progress().

import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import { type GstLine, parseGstLine } from './gst-launch.ts';
import { Backoff } from '../../common/backoff.ts';
import { errText } from '../../common/errors.ts';

/** How long gst-launch-1.0 may take to exit after its EOS (1.22 sometimes never does). */
export const EOS_EXIT_MS = 2000;

export interface GstSupervisorOptions {
  /** Camera name for logs. */
  camera: string;
  /** Default 'gst-launch-1.0'. */
  command?: string;
  restartMinMs: number;
  restartMaxMs: number;
  /** Kill and restart when the host reports no progress for this long. */
  stallMs: number;
  /** stop(): how long EOS may take before SIGKILL. */
  stopTimeoutMs: number;
  /** Jitter source for the backoff, [0, 1). */
  random: () => number;
  log?: Logger;
}

/** The states the supervisor goes through; the recorder adds 'recording' and 'stopped'. */
export type SupervisorState = 'starting' | 'stopping' | 'restarting';

/** What the supervisor asks of, and tells, whoever runs it. All calls are synchronous. */
export interface GstSupervisorHost {
  /** Before each spawn: the run's number and its gst-launch-1.0 arguments. */
  prepareRun(): { run: number; args: string[] };
  /** A line of the current run that means something (parseGstLine), after the supervisor has noted EOS and errors. */
  message(msg: GstLine): void;
  /** A watchdog tick of the current run: report file growth with progress() before the deadlines are checked. */
  poll(): void;
  /** The run's child is gone; `stopping` when stop() asked for it. Called before stop() resolves and before a restart is planned. */
  ended(run: number, why: string, stopping: boolean): void;
  /** A state change of the child's life, for the recorder's status. */
  state(state: SupervisorState, detail: string, restartInMs?: number): void;
  /** A run failed; it is restarted after the delay the message names. */
  failed(err: Error): void;
}

export class GstSupervisor {
  private readonly command: string;
  private readonly backoff: Backoff;
  private child: ChildProcess | null = null;
  private runNumber = 0;
  private stoppingNow = false;
  private failures = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private watchdog: NodeJS.Timeout | null = null;
  private exitWaiters: (() => void)[] = [];

  // Per run (performance.now() ms):
  private lastProgress = 0;
  private sawProgress = false;
  private eosAt: number | null = null;
  private killReason: string | null = null;
  private firstError: string | null = null;
  private stderrTail: string[] = [];

  constructor(
    private readonly o: GstSupervisorOptions,
    private readonly host: GstSupervisorHost,
  ) {
    this.command = o.command ?? 'gst-launch-1.0';
    this.backoff = new Backoff(o.restartMinMs, o.restartMaxMs, o.random);
  }

  /** The child's PID while one runs. */
  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  /** The current (or last) run's number. */
  get run(): number {
    return this.runNumber;
  }

  /** stop() was called and start() not since. */
  get stopping(): boolean {
    return this.stoppingNow;
  }

  /** The current run's source ended its stream (at EOS a fragment message carries the last frame's start, not its end). */
  get eosSeen(): boolean {
    return this.eosAt !== null;
  }

  /** Runs may be spawned again (after a stop()). */
  start(): void {
    this.stoppingNow = false;
  }

  /** Spawn a run now; nothing if stop() was called since start(). */
  spawn(): void {
    this.spawnRun();
  }

  /** Video flows: the stall watchdog starts over. */
  progress(): void {
    this.lastProgress = performance.now();
    this.sawProgress = true;
  }

  /** A finished segment proves the pipeline works: the next failure waits the shortest delay again. */
  proven(): void {
    this.failures = 0;
    this.backoff.reset();
  }

  /**
   * Stop: no more restarts; SIGINT (gst-launch-1.0 -e sends EOS), SIGKILL if
   * the child has not exited within stopTimeoutMs or hangs after its EOS.
   * Resolves when the child is gone (at once if none runs). Call it once at
   * a time: a second SIGINT would make gst-launch-1.0 quit without its EOS.
   */
  async stop(): Promise<void> {
    this.stoppingNow = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const child = this.child;
    if (!child) return;
    const { camera, stopTimeoutMs } = this.o;
    this.host.state('stopping', `video camera ${camera}: stopping (EOS, then at most ${stopTimeoutMs} ms)`);
    const exited = new Promise<void>((res) => this.exitWaiters.push(res));
    const t0 = performance.now();
    const guard = setInterval(() => {
      const now = performance.now();
      if (now - t0 > stopTimeoutMs) this.killChild(child, `no exit within ${stopTimeoutMs} ms of SIGINT`);
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

  private spawnRun(): void {
    this.restartTimer = null;
    if (this.stoppingNow) return;
    const { run, args } = this.host.prepareRun();
    this.runNumber = run;
    this.eosAt = null;
    this.killReason = null;
    this.firstError = null;
    this.stderrTail = [];
    this.sawProgress = false;
    this.lastProgress = performance.now();
    const cmd = this.command;
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
    this.o.log?.info({ event: 'video.run.start', camera: this.o.camera, run, pid: child.pid, args });
    this.host.state('starting', `video camera ${this.o.camera}: pipeline starting (run ${run})`);
    const tick = Math.max(100, Math.min(1000, this.o.stallMs / 4));
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
    if (msg.kind === 'eos') {
      this.eosAt = performance.now();
      if (!this.stoppingNow) this.o.log?.warn({ event: 'video.source.eos', camera: this.o.camera, run: this.runNumber }, 'the source ended its stream');
    } else if (msg.kind === 'error') {
      this.firstError ??= msg.text;
    }
    this.host.message(msg);
  }

  private runEnded(child: ChildProcess | null, exitText: string | null): void {
    if (child && child !== this.child) return;
    this.child = null;
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    const run = this.runNumber;
    const why = [this.killReason ?? exitText ?? 'gst-launch-1.0 ended', this.firstError].filter(Boolean).join(': ');
    const stopping = this.stoppingNow;
    this.host.ended(run, why, stopping);
    const waiters = this.exitWaiters.splice(0);
    for (const w of waiters) w();
    if (stopping) {
      this.o.log?.info({ event: 'video.run.end', camera: this.o.camera, run, why });
      return;
    }
    // Exponential backoff with jitter: a camera that dies at once is not respawned in a tight loop.
    this.failures++;
    const delayMs = this.backoff.next();
    const detail = `video camera ${this.o.camera}: ${why}; restarting in ${(delayMs / 1000).toFixed(1)} s; check the source pipeline in the config (try it with gst-launch-1.0 … ! fakesink)`;
    this.o.log?.warn({ event: 'video.run.failed', camera: this.o.camera, run, why, stderr: this.stderrTail.slice(-5), restartInMs: delayMs, attempt: this.failures });
    this.host.state('restarting', detail, delayMs);
    this.host.failed(new Error(detail));
    this.restartTimer = setTimeout(() => this.spawnRun(), delayMs);
  }

  /** The stall watchdog: progress is what the host reports (a fragment message, growth of the file being written). */
  private watch(child: ChildProcess): void {
    if (child !== this.child) return;
    this.host.poll();
    if (this.stoppingNow) return; // stop() has its own deadlines
    const now = performance.now();
    if (this.eosAt !== null && now - this.eosAt > EOS_EXIT_MS) {
      this.killChild(child, `source ended and gst-launch-1.0 did not exit within ${EOS_EXIT_MS} ms`);
    } else if (now - this.lastProgress > this.o.stallMs) {
      this.killChild(
        child,
        this.sawProgress ? `stalled: no new segment and no file growth in ${this.o.stallMs / 1000} s` : `no video from the source within ${this.o.stallMs / 1000} s`,
      );
    }
  }

  private killChild(child: ChildProcess, reason: string): void {
    if (this.killReason !== null) return;
    this.killReason = reason;
    this.o.log?.warn({ event: 'video.run.kill', camera: this.o.camera, run: this.runNumber, pid: child.pid, reason });
    try {
      child.kill('SIGKILL');
    } catch {
      // gone already
    }
  }
}
