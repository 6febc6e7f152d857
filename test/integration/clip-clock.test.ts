// Alarm clips when the head unit's clock is off by hours (the boot case: no
// RTC battery, no NTP until the 4G link is up), on real parts: the agent
// records with a real gst-launch-1.0, the GPS simulator's time is hours ahead
// of (or behind) the system clock, and the offset is learned after the
// recorder started, during a post-roll, or before a recorder run began. In
// every case the press, the ring's segments and the clip window are on one
// clock, and dispatch gets a clip of full length with no gap.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simPress } from '../../hal/panel/sim-client.ts';
import { SIM_VIDEO_CAMERA, ffprobeFormat } from '../helpers/media.ts';
import { BusFixture } from './fixture.ts';

const PRE_S = 3;
const POST_S = 2;
const HOUR = 3_600_000;


for (const offsetH of [2, -3]) {
  describe(`GPS time ${offsetH > 0 ? 'ahead of' : 'behind'} the system clock by ${Math.abs(offsetH)} h`, () => {
    const bus = new BusFixture();

    beforeAll(async () => {
      await bus.start(
        {
          video: [SIM_VIDEO_CAMERA],
          clips: { preRollS: PRE_S, postRollS: POST_S },
        },
        // The receiver has no fix yet when the agent starts: its time is learned later.
        { gps: { startTime: new Date(Date.now() + offsetH * HOUR), fixValid: false } },
      );
    }, 60_000);
    afterAll(() => bus.stop());

    function clipAtDispatch(alarmId: string): { path: string; sha256: string } | undefined {
      const db = new Database(join(bus.dir, 'dispatch.db'), { readonly: true, fileMustExist: true });
      try {
        return db.prepare("SELECT path, sha256 FROM evidence_files WHERE alarm_id = ? AND kind = 'clip' AND name LIKE '%.mp4'").get(alarmId) as { path: string; sha256: string } | undefined;
      } finally {
        db.close();
      }
    }

    /** Press, then (optionally at once) let GPS time arrive; the clip at dispatch must be whole. */
    async function pressAndCheckClip(duringPostRoll?: () => void): Promise<void> {
      const from = bus.agent.mark();
      const dFrom = bus.dispatch.mark();
      await simPress(bus.socket, { holdMs: 600 });
      const stored = await bus.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
      duringPostRoll?.();
      const alarmId = stored.alarmId as string;
      await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId && String(l.fileName).endsWith('.mp4'), 60_000, dFrom);
      const cut = await bus.agent.waitForEvent('clip.cut', (l) => l.alarmId === alarmId, 5_000, from);
      expect(cut.gaps, 'gaps the agent found in the clip').toEqual([]);
      const row = clipAtDispatch(alarmId)!;
      const { durationS, tags } = ffprobeFormat(row.path);
      expect(durationS).toBeGreaterThanOrEqual(PRE_S + POST_S - 0.15);
      expect(durationS).toBeLessThanOrEqual(PRE_S + POST_S + 1.15);
      expect(JSON.parse(tags.comment ?? '{}')['busguard:gaps']).toEqual([]);
      expect(tags.description).toContain('no gaps in the recording');
      // The clip is dated on GPS time, within a few seconds of the receiver's clock.
      const covered = JSON.parse(tags.comment ?? '{}')['busguard:covered'] as [number, number];
      const gpsNow = bus.gps.position()!.time.getTime();
      expect(Math.abs(covered[1] - gpsNow)).toBeLessThan(15_000);
      await bus.ack(alarmId);
      await bus.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === alarmId, 15_000, from);
    }

    async function recordFor(seconds: number): Promise<void> {
      const from = bus.agent.mark();
      for (let i = 0; i < seconds; i++) await bus.agent.waitForEvent('video.segment', () => true, 15_000, bus.agent.lines.length);
      void from;
    }

    it('the offset is learned after the recorder started: a press after it gets its whole clip', async () => {
      await recordFor(PRE_S + 1);
      const from = bus.agent.mark();
      bus.gps.setFixValid(true);
      const learned = await bus.agent.waitForEvent('clock.offset', () => true, 15_000, from);
      expect(Math.abs((learned.offsetMs as number) - offsetH * HOUR)).toBeLessThan(5_000);
      // Straight after: the pre-roll lies in segments recorded before the offset was known.
      await pressAndCheckClip();
    }, 90_000);

    it('a recorder run that began after the offset was learned', async () => {
      const from = bus.agent.mark();
      const pid = execFileSync('pgrep', ['-P', String(bus.agent.pid), '-f', 'gst-launch-1.0']).toString().trim();
      process.kill(Number(pid), 'SIGKILL');
      await bus.agent.waitForEvent('video.run.start', () => true, 15_000, from);
      await recordFor(PRE_S + 2);
      await pressAndCheckClip();
    }, 90_000);

    it('the offset is learned during the post-roll of a press made before it (a fresh agent, no fix yet)', async () => {
      bus.gps.setFixValid(false);
      await bus.agent.kill('SIGTERM');
      const agent = await bus.startAgent();
      await agent.waitForEvent('video.run.start', () => true, 15_000);
      await recordFor(PRE_S + 2);
      await pressAndCheckClip(() => bus.gps.setFixValid(true));
      expect(agent.events('clock.offset').length).toBeGreaterThanOrEqual(1);
    }, 90_000);
  });
}
