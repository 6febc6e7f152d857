// An alarm's clip survives the agent dying during its post-roll (an
// attacker who cuts the power right after the press is the case the clip is
// for): on real parts, the agent is SIGKILLed 3.5 s after the press of a clip
// whose post-roll is 6 s, started again 3 s later, and must cut and send the
// clip from the pinned pre-roll and what the ring recorded after the restart,
// the clip stating the outage and its cause.

import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simPress } from '../../hal/panel/sim-client.ts';
import { SIM_VIDEO_CAMERA, ffprobeFormat } from '../helpers/media.ts';
import { alive } from '../helpers/process.ts';
import { BusFixture, until } from './fixture.ts';

const PRE_S = 4;
const POST_S = 6;



describe('alarm clip: the agent killed during the post-roll', () => {
  const bus = new BusFixture();
  beforeAll(
    () =>
      bus.start({
        video: [SIM_VIDEO_CAMERA],
        clips: { preRollS: PRE_S, postRollS: POST_S },
      }),
    60_000,
  );
  afterAll(() => bus.stop());

  it('SIGKILL 3.5 s after the press, restart 3 s later: the clip is cut at the next start and reaches dispatch, stating the outage', async () => {
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    for (let i = 0; i < PRE_S + 2; i++) await bus.agent.waitForEvent('video.segment', () => true, 15_000, bus.agent.lines.length);
    const from = bus.agent.mark();
    await simPress(bus.socket, { holdMs: 600 });
    const stored = await bus.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
    const alarmId = stored.alarmId as string;
    await bus.agent.waitForEvent('clip.pinned', (l) => l.alarmId === alarmId, 5_000, from);
    const recorderPid = Number(execFileSync('pgrep', ['-P', String(bus.agent.pid), '-f', 'gst-launch-1.0']).toString().trim());
    await new Promise((r) => setTimeout(r, 3500 - (Date.now() - new Date(stored.time as string).getTime())));
    await bus.agent.kill('SIGKILL');
    // The recorder does not outlive the agent for long (it dies on its next message to the dead agent's pipe).
    await until(() => !alive(recorderPid), 10_000, 'the orphaned gst-launch-1.0 to exit');
    await new Promise((r) => setTimeout(r, 3000));

    const dFrom = bus.dispatch.mark();
    const agent = await bus.startAgent();
    await agent.waitForEvent('clip.resumed', (l) => l.alarmId === alarmId, 15_000);
    const cut = await agent.waitForEvent('clip.cut', (l) => l.alarmId === alarmId, 60_000);
    expect(cut.resumed).toBe(true);
    await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId && String(l.fileName).endsWith('.mp4'), 60_000, dFrom);

    const db = new Database(join(bus.dir, 'dispatch.db'), { readonly: true, fileMustExist: true });
    const row = db.prepare("SELECT path FROM evidence_files WHERE alarm_id = ? AND name = ?").get(alarmId, `${alarmId}-cabin.mp4`) as { path: string };
    db.close();
    const { tags } = ffprobeFormat(row.path);
    const comment = JSON.parse(tags.comment ?? '{}') as Record<string, unknown>;
    const pressMs = comment['busguard:press'] as number;
    const covered = comment['busguard:covered'] as [number, number];
    // The whole pre-roll (pinned before the kill) is there.
    expect(covered[0]).toBeLessThanOrEqual(pressMs - PRE_S * 1000 + 1);
    // The stop is stated: a gap inside the post-roll, with its cause.
    const gaps = comment['busguard:gaps'] as [number, number][];
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    expect(gaps[0]![0]).toBeGreaterThan(pressMs);
    expect(gaps[0]![0]).toBeLessThan(pressMs + POST_S * 1000);
    const outages = comment['busguard:outages'] as { reason: string }[];
    expect(outages.map((o) => o.reason).join(' ')).toMatch(/not running/);
    expect(tags.description).toMatch(/NO VIDEO .*not running/);
    expect((comment['busguard:meta'] as Record<string, unknown>).resumedAfterRestart).toBe(true);
    // Nothing more is owed.
    const owed = new Database(join(bus.dir, 'bus', 'outbox.db'), { readonly: true });
    expect(owed.prepare('SELECT count(*) AS n FROM alarm_clips').get()).toEqual({ n: 0 });
    owed.close();
  }, 120_000);
});
