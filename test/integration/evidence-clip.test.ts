// Alarm → video clip at dispatch, on real parts: the agent records its cabin
// camera with a real gst-launch-1.0 (videotestsrc, live) into its ring, pins
// the pre-roll on the press, cuts [press − pre, press + post] with ffmpeg
// once the post-roll is recorded, and sends it over Mosquitto in segments;
// dispatch verifies and stores it. Short pre/post rolls keep the test quick;
// the logic is the same as for the 20 s/10 s defaults.

import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectStoredIntact } from '../helpers/it-evidence.ts';
import { type EvidenceFileRow, BusFixture } from './fixture.ts';

const PRE_S = 4;
const POST_S = 5;
const KEYFRAME_S = 1;

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => execFile(cmd, args, (err, stdout) => (err ? reject(err) : resolve(stdout))));
}

async function ffprobe(file: string): Promise<{ durationS: number; tags: Record<string, string> }> {
  const j = JSON.parse(await run('ffprobe', ['-v', 'error', '-print_format', 'json', '-show_format', file])) as { format: { duration: string; tags?: Record<string, string> } };
  return { durationS: Number(j.format.duration), tags: j.format.tags ?? {} };
}

describe('evidence: a clip with pre-roll from the cabin video on alarm', () => {
  const bus = new BusFixture();

  beforeAll(async () => {
    await bus.start({
      video: [
        {
          name: 'cabin',
          source: 'videotestsrc is-live=true pattern=ball ! video/x-raw,width=160,height=120,framerate=10/1',
          segmentS: 1,
          keyframeIntervalS: KEYFRAME_S,
          maxSegments: 60,
          bitrateKbps: 200,
        },
      ],
      clips: { preRollS: PRE_S, postRollS: POST_S },
    });
  }, 60_000);
  afterAll(() => bus.stop());

  async function pressAndWaitForClip(recorderKill?: () => void): Promise<{ alarmId: string; fix: { lat: number; lon: number }; row: EvidenceFileRow }> {
    // The kill at once: well inside the post-roll, however busy the machine.
    const { alarmId, received, from, dFrom } = await bus.holdToDispatch({ onStored: recorderKill });
    await bus.agent.waitForEvent('clip.pinned', (l) => l.alarmId === alarmId, 10_000, from);
    await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId && l.kind === 'clip' && String(l.fileName).endsWith('.mp4'), 60_000, dFrom);
    const row = bus.evidenceFiles(alarmId, 'clip').find((r) => r.name.endsWith('.mp4'));
    return { alarmId, fix: received.fix as { lat: number; lon: number }, row: row! };
  }

  it('press → MP4 at dispatch covering pre + post within one keyframe interval, tagged with the fix, SHA-256 intact, no gap', async () => {
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    // Enough video in the ring for the whole pre-roll.
    await bus.agent.waitForEvent('video.segment', () => true, 15_000);
    await new Promise((r) => setTimeout(r, (PRE_S + 1) * 1000));
    const { alarmId, fix, row } = await pressAndWaitForClip();
    expect(row).toMatchObject({ kind: 'clip', state: 'complete' });
    expectStoredIntact(row);

    const { durationS, tags } = await ffprobe(row.path);
    expect(durationS).toBeGreaterThanOrEqual(PRE_S + POST_S - 0.15); // one frame of slack at 10 fps
    expect(durationS).toBeLessThanOrEqual(PRE_S + POST_S + KEYFRAME_S + 0.15);
    // ISO 6709 in the MP4 (4 decimals: ~11 m), as phones write it; the exact fix is in the comment JSON.
    const loc = /^([+-]\d+\.\d+)([+-]\d+\.\d+)/.exec(tags.location ?? '');
    expect(loc, `location tag ${tags.location}`).not.toBeNull();
    expect(Number(loc![1])).toBeCloseTo(fix.lat, 4);
    expect(Number(loc![2])).toBeCloseTo(fix.lon, 4);
    const comment = JSON.parse(tags.comment ?? '{}') as Record<string, unknown>;
    expect(comment['busguard:gaps']).toEqual([]);
    expect((comment['busguard:meta'] as Record<string, unknown>).alarmId).toBe(alarmId);
    // exiftool, the police analyst's tool, reads the same place: the tag's 4 decimals, which the MP4 box
    // stores in 16.16 fixed point (1.5e-5 of a degree), so within 1e-4, not within half the last decimal.
    const exif = JSON.parse(await run('exiftool', ['-j', '-n', row.path])) as Array<Record<string, number>>;
    expect(Math.abs(exif[0]!.GPSLatitude! - fix.lat)).toBeLessThan(1e-4);
    expect(Math.abs(exif[0]!.GPSLongitude! - fix.lon)).toBeLessThan(1e-4);
    // The track over the clip follows as its own file: a GeoJSON FeatureCollection with the route as a LineString.
    await bus.dispatch.waitForEvent('file.stored', (l) => l.alarmId === alarmId && String(l.fileName).endsWith('.geojson'), 30_000);
    const sidecar = bus.evidenceFiles(alarmId, 'clip').find((r) => r.name === `${alarmId}-cabin.geojson`)!;
    const geo = JSON.parse(readFileSync(sidecar.path, 'utf8')) as { type: string; features: Array<{ geometry: { type: string; coordinates: number[][] } }> };
    expect(geo.type).toBe('FeatureCollection');
    const line = geo.features.find((f) => f.geometry.type === 'LineString');
    expect(line?.geometry.coordinates.length).toBeGreaterThanOrEqual(2);
    await bus.ackAndSee(alarmId, 10_000); // closed, so the next hold raises a new alarm
  }, 90_000);

  it('the recorder hung and killed during the post-roll: restarted by the supervisor, and the clip states the gap', async () => {
    const killRecorder = () => {
      const pids = execFileSync('pgrep', ['-P', String(bus.agent.pid), '-f', 'gst-launch-1.0']).toString().trim().split('\n').filter(Boolean);
      expect(pids.length).toBe(1);
      // Frozen for 1.5 s, then killed: a recorder that hangs and dies. The
      // hole is then clearly longer than a restart (which full-jitter backoff
      // may make almost instant) and the clip must say so.
      const pid = Number(pids[0]);
      process.kill(pid, 'SIGSTOP');
      setTimeout(() => process.kill(pid, 'SIGKILL'), 1500);
    };
    const from = bus.agent.mark();
    const { row } = await pressAndWaitForClip(killRecorder);
    await bus.agent.waitForEvent('video.run.start', () => true, 10_000, from); // the supervisor started a new run
    const { tags } = await ffprobe(row.path);
    const comment = JSON.parse(tags.comment ?? '{}') as Record<string, unknown>;
    const gaps = comment['busguard:gaps'] as [number, number][];
    expect(gaps.length).toBeGreaterThanOrEqual(1);
    expect(tags.description ?? '').toContain('NO VIDEO');
    await bus.agent.waitForEvent('clip.cut', (l) => (l.gaps as unknown[]).length > 0, 1_000, from);
  }, 90_000);
});
