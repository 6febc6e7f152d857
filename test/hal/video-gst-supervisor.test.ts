// GstSupervisor on its own, with shell scripts standing in for
// gst-launch-1.0 (the real pipelines are in video-recorder.test.ts): lines
// handed on, a dying child restarted with backoff, the stall watchdog, and
// stop() with EOS first and SIGKILL after its deadline. Every child is the
// supervisor's own and every test stops its supervisor.

import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { GstLine } from '../../hal/video/gst-launch.ts';
import { GstSupervisor, type GstSupervisorOptions, type SupervisorState } from '../../hal/video/gst-supervisor.ts';
import { until } from '../../scripts/lib/until.ts';

let dir: string;
const running: GstSupervisor[] = [];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'gst-supervisor-'));
});

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop()));
  rmSync(dir, { recursive: true, force: true });
});

/** A fake gst-launch-1.0: a shell script with this body. */
function script(body: string): string {
  const path = join(dir, `fake-gst-${Math.random().toString(36).slice(2)}.sh`);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

interface Seen {
  runs: number[];
  messages: GstLine[];
  ended: { run: number; why: string; stopping: boolean }[];
  states: { state: SupervisorState; detail: string; restartInMs?: number }[];
  failures: Error[];
  polls: number;
}

function supervise(command: string, opts: Partial<GstSupervisorOptions> = {}): { sup: GstSupervisor; seen: Seen } {
  const seen: Seen = { runs: [], messages: [], ended: [], states: [], failures: [], polls: 0 };
  let run = 0;
  const sup: GstSupervisor = new GstSupervisor(
    { camera: 'test', command, restartMinMs: 200, restartMaxMs: 1000, stallMs: 10_000, stopTimeoutMs: 5000, random: () => 0, ...opts },
    {
      prepareRun: () => {
        seen.runs.push(++run);
        return { run, args: [] };
      },
      message: (msg) => {
        seen.messages.push(msg);
        if (msg.kind === 'fragment-opened') sup.progress();
      },
      poll: () => {
        seen.polls++;
      },
      ended: (r, why, stopping) => seen.ended.push({ run: r, why, stopping }),
      state: (state, detail, restartInMs) => seen.states.push({ state, detail, ...(restartInMs !== undefined ? { restartInMs } : {}) }),
      failed: (err) => seen.failures.push(err),
    },
  );
  running.push(sup);
  sup.start();
  sup.spawn();
  return { sup, seen };
}

const OPENED = 'splitmuxsink-fragment-opened, location=(string)/ring/seg00003.mkv, running-time=(guint64)500000000';

describe('GstSupervisor', () => {
  it('hands on the lines that mean something, and restarts a child that dies with backoff, saying why', async () => {
    const { seen } = supervise(script(`echo 'New clock: GstSystemClock'\necho "${OPENED}"\necho 'ERROR: from element /GstPipeline:pipeline0/GstV4l2Src:src: Device is gone.' >&2\nexit 1`), { random: () => 1 });
    await until(() => seen.runs.length >= 2, 10_000, 'a second run');
    // stdout and stderr are read apart: their lines may interleave either way.
    expect(seen.messages).toContainEqual({ kind: 'clock' });
    expect(seen.messages).toContainEqual({ kind: 'fragment-opened', name: 'seg00003.mkv', number: 3, runningTimeNs: 500_000_000 });
    expect(seen.messages).toContainEqual({ kind: 'error', text: 'ERROR: from element /GstPipeline:pipeline0/GstV4l2Src:src: Device is gone.' });
    expect(seen.ended[0]).toEqual({ run: 1, why: 'gst-launch-1.0 exited with code 1: ERROR: from element /GstPipeline:pipeline0/GstV4l2Src:src: Device is gone.', stopping: false });
    expect(seen.states.slice(0, 2).map((s) => s.state)).toEqual(['starting', 'restarting']);
    // Jitter at its top: the whole delay, doubling per failure.
    expect(seen.states[1]!.restartInMs).toBe(200);
    expect(seen.failures[0]!.message).toMatch(/exited with code 1: ERROR.*restarting in 0\.2 s/);
    await until(() => seen.ended.length >= 2, 10_000, 'the second run ended');
    expect(seen.states.filter((s) => s.state === 'restarting')[1]!.restartInMs).toBe(400);
  });

  it('kills a child that never shows video once the stall deadline passes', async () => {
    const { seen } = supervise(script('exec sleep 30'), { stallMs: 400 });
    await until(() => seen.ended.length >= 1, 10_000, 'the silent child killed');
    expect(seen.ended[0]!.why).toBe('no video from the source within 0.4 s');
    expect(seen.polls).toBeGreaterThan(0);
  });

  it('stops with EOS (SIGINT) and resolves once the child is gone', async () => {
    const { sup, seen } = supervise(script(`trap 'echo "Got EOS from element \\"pipeline0\\"."; exit 0' INT\necho "${OPENED}"\nwhile true; do sleep 0.05; done`));
    await until(() => seen.messages.length >= 1, 10_000, 'the fragment line');
    expect(sup.pid).not.toBeNull();
    await sup.stop();
    expect(sup.pid).toBeNull();
    expect(sup.eosSeen).toBe(true);
    expect(seen.ended).toEqual([{ run: 1, why: 'gst-launch-1.0 exited with code 0', stopping: true }]);
    expect(seen.states.map((s) => s.state)).toEqual(['starting', 'stopping']);
    expect(seen.failures).toEqual([]);
  });

  it('SIGKILLs a child that ignores SIGINT after stopTimeoutMs', async () => {
    const { sup, seen } = supervise(script("trap '' INT\necho 'New clock: GstSystemClock'\nexec sleep 30"), { stopTimeoutMs: 300 });
    await until(() => seen.messages.length >= 1, 10_000, 'the child ignoring SIGINT');
    const t0 = Date.now();
    await sup.stop();
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(seen.ended).toEqual([{ run: 1, why: 'no exit within 300 ms of SIGINT', stopping: true }]);
  });
});
