// The fixture's teardown leaves nothing behind: the agent's children (its
// gst-launch-1.0 recorder) are gone when stop() returns, and the folder is
// removed. A killed agent's recorder used to live on for a moment, writing
// segments into the folder being removed: rmSync then failed with ENOTEMPTY
// in afterAll, and vitest counted the file as failed with all its tests
// passed (the "1 failed file" of an earlier suite run).

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { BusFixture } from './fixture.ts';

function processesMentioning(text: string): string[] {
  const out = execFileSync('ps', ['-e', '-o', 'pid=,args='], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.includes(text) && !l.includes('ps -e'));
}

describe('test fixture teardown', () => {
  it('stops the agent with its recorder and removes its folder, however busy the recorder is', async () => {
    const bus = new BusFixture();
    await bus.start({
      video: [{ name: 'cabin', source: 'videotestsrc is-live=true ! video/x-raw,width=160,height=120,framerate=10/1', segmentS: 0.5, keyframeIntervalS: 0.5, maxSegments: 20 }],
    });
    await bus.agent.waitForEvent('video.segment', () => true, 15_000);
    expect(processesMentioning(bus.dir).some((l) => l.includes('gst-launch-1.0'))).toBe(true);
    await bus.stop();
    expect(processesMentioning(bus.dir)).toEqual([]);
    expect(existsSync(bus.dir)).toBe(false);
  }, 60_000);
});
