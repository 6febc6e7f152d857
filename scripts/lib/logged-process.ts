// Child processes whose stdout is JSON log lines (pino): collect them, wait
// for one that matches (with a deadline, never a blind sleep), kill by PID.

import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { REPO } from './mosquitto.ts';

export type LogLine = Record<string, unknown> & { event?: string };

export const BUSGUARD = join(REPO, 'bin/busguard.js');

export class LoggedProcess {
  readonly lines: LogLine[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];

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
      this.waiters.push({ pred, resolve: done });
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
}

export function busguard(args: string[], env: Record<string, string> = {}): LoggedProcess {
  const child = spawn(process.execPath, [BUSGUARD, ...args], {
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
