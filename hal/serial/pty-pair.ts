// A serial line without hardware: two pseudo-terminals joined by socat.
// Whatever is written to `a` comes out of `b` and back, through the kernel's
// tty layer, as with a receiver on a UART. Used by the demo, the benches and
// the tests to put a simulated device on a real serial port.

import { spawn } from 'node:child_process';
import { lstat, realpath, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export interface PtyPair {
  /** Link to the first pty (the receiver/device side by convention). */
  a: string;
  /** Link to the second pty (the reader side). */
  b: string;
  pid: number;
  /** Kill this socat (SIGTERM, then SIGKILL after 2 s) and wait until it has exited. */
  stop(): Promise<void>;
  /** Stop, then start a new pair on the same link paths: the cable pulled and plugged back in. */
  restart(): Promise<PtyPair>;
}

export async function openPtyPair(dir: string, opts: { timeoutMs?: number } = {}): Promise<PtyPair> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const a = join(dir, 'ttyA');
  const b = join(dir, 'ttyB');
  // A socat killed with SIGKILL leaves its links behind, pointing at pty
  // numbers the kernel hands out again; waiting for "the link exists" would
  // then succeed at once on a stale link.
  await removeLink(a);
  await removeLink(b);

  const child = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${a}`, `pty,raw,echo=0,link=${b}`], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (s: string) => {
    stderr += s;
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
    child.once('error', (err) => {
      stderr += `\nspawn error: ${err.message}`;
      exited = true;
      resolve();
    });
  });

  const stop = async (): Promise<void> => {
    if (!exited) {
      // child.kill signals exactly this child's pid (and is a no-op once it has been reaped).
      child.kill('SIGTERM');
      const killer = setTimeout(() => {
        if (!exited) child.kill('SIGKILL');
      }, 2000);
      await exit;
      clearTimeout(killer);
    }
    // socat removes its links on SIGTERM, not on SIGKILL.
    await removeLink(a);
    await removeLink(b);
  };

  const deadline = Date.now() + timeoutMs;
  while (!((await ptyBehind(a)) && (await ptyBehind(b)))) {
    if (exited) {
      throw new Error(`socat exited before creating ${a} and ${b}: ${stderr.trim() || '(no output)'}; is socat installed?`);
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`socat did not create ${a} and ${b} within ${timeoutMs} ms: ${stderr.trim() || '(no output)'}`);
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  const pid = child.pid;
  if (pid === undefined) throw new Error(`socat for ${dir}: no pid; ${stderr.trim()}`);

  return {
    a,
    b,
    pid,
    stop,
    async restart() {
      await stop();
      return openPtyPair(dir, opts);
    },
  };
}

async function ptyBehind(link: string): Promise<boolean> {
  try {
    return (await realpath(link)).startsWith('/dev/pts/');
  } catch {
    return false;
  }
}

async function removeLink(path: string): Promise<void> {
  try {
    if ((await lstat(path)).isSymbolicLink()) await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
