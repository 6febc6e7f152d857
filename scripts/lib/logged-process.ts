// Child processes whose stdout is JSON log lines (pino): collect them, wait
// for one that matches (with a deadline, never a blind sleep), kill by PID.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { REPO } from './mosquitto.ts';

export type LogLine = Record<string, unknown> & { event?: string };

export const BUSGUARD = join(REPO, 'bin/busguard.js');

export class LoggedProcess {
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void; gone: (why: string) => void }[] = [];

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (text) => {
      let line: LogLine;
      try {
        line = JSON.parse(text) as LogLine;
      } catch {
        line = { raw: text };
      }
      this.lines.push(line);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(line)) return true;
        w.resolve(line);
        return false;
      });
    });
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    // A wait still pending when the process is gone can only time out: end it now, so its
    // rejection is not left to fire after the test file has finished (where nobody sees it).
    // 'close', not 'exit': its last lines may still be in the pipe at 'exit'.
    child.once('close', (code, signal) => {
      for (const w of this.waiters.splice(0)) w.gone(`the process exited (${signal ?? `code ${code}`}) first`);
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** A position in the log: pass it as `from` to wait only for lines after it. */
  mark(): number {
    return this.lines.length;
  }

  /** Resolve with the first line (already seen since `from`, or future) matching; reject after timeoutMs. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs = 15_000, what = 'log line', from = 0): Promise<LogLine> {
    const seen = this.lines.slice(from).find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last lines:\n${this.tail()}\nstderr: ${this.stderr.slice(-1000)}`));
      }, timeoutMs);
      const done = (l: LogLine) => {
        clearTimeout(timer);
        resolve(l);
      };
      const gone = (why: string) => {
        clearTimeout(timer);
        reject(new Error(`no ${what}: ${why}; last lines:\n${this.tail()}\nstderr: ${this.stderr.slice(-1000)}`));
      };
      this.waiters.push({ pred, resolve: done, gone });
    });
  }

  waitForEvent(event: string, extra: (l: LogLine) => boolean = () => true, timeoutMs = 15_000, from = 0): Promise<LogLine> {
    return this.waitFor((l) => l.event === event && extra(l), timeoutMs, `event "${event}"`, from);
  }

  events(event: string): LogLine[] {
    return this.lines.filter((l) => l.event === event);
  }

  tail(n = 15): string {
    return this.lines.slice(-n).map((l) => JSON.stringify(l)).join('\n');
  }

  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill(signal);
    await this.exited;
  }

  /**
   * For teardown: SIGKILL this process and every process under it (an
   * agent's gst-launch-1.0 and ffmpeg). A killed agent's recorder lives on
   * for a moment, writing segments into the folder the test is about to
   * delete: removing it then failed with ENOTEMPTY in afterAll, and the file
   * was reported failed with all its tests passed.
   */
  async killTree(): Promise<void> {
    const tree = descendants(this.pid);
    await this.kill('SIGKILL');
    for (const pid of tree) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    // Wait until they are really gone (kill is asynchronous), at most 5 s.
    const deadline = Date.now() + 5000;
    while (tree.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  }
}

/** Every process below `pid` (children, grandchildren...), read from ps. */
export function descendants(pid: number): number[] {
  let table: string;
  try {
    table = execFileSync('ps', ['-e', '-o', 'pid=,ppid='], { encoding: 'utf8' });
  } catch {
    return [];
  }
  const children = new Map<number, number[]>();
  for (const line of table.split('\n')) {
    const [p, pp] = line.trim().split(/\s+/).map(Number);
    if (!p || pp === undefined) continue;
    children.set(pp, [...(children.get(pp) ?? []), p]);
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      out.push(c);
      walk(c);
    }
  };
  walk(pid);
  return out;
}

/** Is a process with this PID still there? */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function busguard(args: string[], env: Record<string, string> = {}, nodeArgs: string[] = []): LoggedProcess {
  const child = spawn(process.execPath, [...nodeArgs, BUSGUARD, ...args], {
    cwd: REPO,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new LoggedProcess(child);
}

/** Run a busguard command to completion and return its output. */
export async function busguardRun(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BUSGUARD, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}
