// A serial line for one test: a folder of its own with a socat pty pair in
// it (helpers/pty.ts), and a bare port on either end. All of it is closed once
// the test has finished, after its afterEach hooks and after what the test
// opened on the line later (vitest runs onTestFinished callbacks last
// registered first), so a driver is closed before its pair goes away.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SerialPort } from 'serialport';
import { onTestFinished } from 'vitest';
import { openPtyPair, type PtyPair } from './pty.ts';

export interface SerialLine {
  /** The test's folder, where the pair's links are. */
  readonly dir: string;
  /** The pair in use: the one stopped when the test has finished. */
  readonly pty: PtyPair;
  /** Stop the pair (if it is still up) and open a new one on the same link paths: the cable plugged back in. */
  replug(): Promise<PtyPair>;
}

/** Call in a test or a beforeEach. */
export async function serialLineForTest(prefix: string): Promise<SerialLine> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  let pty = await openPtyPair(dir);
  onTestFinished(() => pty.stop());
  return {
    dir,
    get pty() {
      return pty;
    },
    async replug() {
      pty = await pty.restart();
      return pty;
    },
  };
}

/** A bare port on one end of a pair, open, closed when the test has finished. Errors surface through the write callbacks. */
export async function openRawPort(path: string, baudRate: number): Promise<SerialPort> {
  const port = new SerialPort({ path, baudRate, autoOpen: false });
  port.on('error', () => {});
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  onTestFinished(() => new Promise<void>((resolve) => (port.isOpen ? port.close(() => resolve()) : resolve())));
  return port;
}
