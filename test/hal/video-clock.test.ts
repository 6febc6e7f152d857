// One clock for segments and presses (hal/video/clock.ts): the head unit
// boots with a wrong clock and learns GPS time later, during recording, even
// during a clip's post-roll. Segment times are monotonic instants read out
// through the current mapping, so when the mapping jumps by hours the ring,
// the press and the clip window move together, and the clip is whole.
// Against a real gst-launch-1.0 recorder; the clock is a test clock whose
// offset the test moves.

import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, expect, it, onTestFinished } from 'vitest';
import { captureAlarmClip } from '../../hal/video/alarm-clip.ts';
import type { RecorderClock } from '../../hal/video/clock.ts';
import { cutFootage } from '../../hal/video/footage.ts';
import type { VideoRecorder } from '../../hal/video/recorder.ts';
import { until } from '../../scripts/lib/until.ts';
import { closeAfterTest } from '../helpers/close-after-test.ts';
import { recordingRing } from '../helpers/video-ring.ts';

const HOUR = 3_600_000;

/** UTC = mono + base; the test moves base as GPS time arriving would. */
class MovableClock implements RecorderClock {
  base = Date.now() - performance.now();
  utcAt(mono: number): number {
    return mono + this.base;
  }
  utcNow(): number {
    return this.utcAt(performance.now());
  }
}

/** A ring recording on a clock the test moves, 3 closed segments in; stopped and removed after the test. */
async function ringOnMovableClock(): Promise<{ dir: string; rec: VideoRecorder; clock: MovableClock }> {
  const dir = await mkdtemp(join(tmpdir(), 'busguard-video-clock-'));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  const clock = new MovableClock();
  const rec = closeAfterTest(await recordingRing({ name: 'cabin', dir: join(dir, 'ring'), maxSegments: 30, clock }, 3));
  return { dir, rec, clock };
}

describe('segments and presses on one clock, whenever it moves', () => {
  for (const jumpH of [2, -3]) {
    it(`the clock jumps ${jumpH > 0 ? 'ahead' : 'back'} ${Math.abs(jumpH)} h during the post-roll: the clip is whole, with no gap`, async () => {
      const { dir, rec, clock } = await ringOnMovableClock();
      const preS = 2;
      const postS = 2;
      const pressMono = performance.now();
      const job = captureAlarmClip(rec, { press: { mono: pressMono }, preS, postS, pinDir: join(dir, 'pins'), out: join(dir, 'alarm.mp4') });
      // The pre-roll is pinned at once: from the segment holding press − pre to the one being written.
      // How many segments that is depends on how far behind the pipeline's messages are (under load
      // the segment being written may have opened more than preS before the press: then it is the only one).
      expect(Math.min(...job.pinned.map((p) => p.startMs))).toBeLessThanOrEqual(clock.utcAt(pressMono) - preS * 1000);
      expect(job.pinned.map((p) => p.name)).toContain(rec.segments().at(-1)!.name);
      // GPS time arrives: every reading moves by hours.
      clock.base += jumpH * HOUR;
      const clip = await job.done;
      const pressMs = clock.utcAt(pressMono);
      expect(clip.gaps).toEqual([]);
      expect(clip.durationS).toBeGreaterThanOrEqual(preS + postS - 0.15);
      expect(clip.coveredFromMs).toBeLessThanOrEqual(pressMs - preS * 1000 + 1);
      expect(clip.coveredToMs).toBeGreaterThanOrEqual(pressMs + postS * 1000 - 150);
      // The ring reads on the new clock too: its newest segment ends about now.
      expect(Math.abs(rec.segments().at(-1)!.startMs - clock.utcNow())).toBeLessThan(5000);
    }, 40_000);
  }

  it('a footage window in the new clock\'s terms finds video recorded before the clock moved', async () => {
    const { dir, rec, clock } = await ringOnMovableClock();
    await until(() => rec.segments().filter((s) => s.state === 'closed').length >= 5, 20_000, '5 closed segments');
    clock.base += 2 * HOUR;
    const segs = rec.segments().filter((s) => s.state === 'closed');
    const fromMs = segs[1]!.startMs;
    const toMs = segs[3]!.endMs!;
    const answer = await cutFootage(rec, { fromMs, toMs, out: join(dir, 'f.mp4'), pinDir: join(dir, 'pins-f') });
    expect(answer.coverage.status).toBe('full');
    expect(answer.clip!.gaps).toEqual([]);
  }, 40_000);
});
