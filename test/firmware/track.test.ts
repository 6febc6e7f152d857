import { describe, expect, it } from 'vitest';
import type { GpsFix } from '../../hal/gps/types.ts';
import { TrackThinner, distanceM, headingDelta } from '../../firmware/track.ts';

const rules = { minIntervalS: 2, minDistanceM: 50, headingChangeDeg: 30, maxGapS: 60 };

function fix(atS: number, lat: number, lon: number, over: Partial<GpsFix> = {}): GpsFix {
  return { valid: true, lat, lon, altM: null, speedMps: 8, trackDeg: 0, time: null, sats: null, hdop: null, receivedAtMs: atS * 1000, ...over } as GpsFix;
}

// 1e-4 degrees of latitude is about 11.1 m.
const north = (m: number) => 34 + m / 111_195;

describe('track thinning', () => {
  it('measures distance and turns', () => {
    expect(distanceM(34, 108, north(100), 108)).toBeCloseTo(100, 0);
    expect(headingDelta(350, 10)).toBe(20);
    expect(headingDelta(90, 270)).toBe(180);
  });

  it('keeps the first point, then one per minDistanceM, never closer than minIntervalS', () => {
    const t = new TrackThinner(rules);
    const kept: [number, string | null][] = [];
    // 8 m/s due north, 1 Hz, for 20 s: 160 m.
    for (let s = 0; s <= 20; s++) kept.push([s, t.offer(fix(s, north(8 * s), 108))]);
    expect(kept.filter(([, r]) => r).map(([s, r]) => `${s}:${r}`)).toEqual(['0:first', '7:distance', '14:distance']);
  });

  it('keeps a turn at speed, but not heading noise when standing still', () => {
    const t = new TrackThinner(rules);
    expect(t.offer(fix(0, 34, 108, { trackDeg: 0 }))).toBe('first');
    expect(t.offer(fix(1, north(5), 108, { trackDeg: 45 }))).toBeNull(); // inside minIntervalS
    expect(t.offer(fix(3, north(10), 108, { trackDeg: 45 }))).toBe('heading');
    expect(t.offer(fix(6, north(10), 108, { trackDeg: 200, speedMps: 0.2 }))).toBeNull();
  });

  it('sends a heartbeat when standing still, at the alarm rate when asked', () => {
    const t = new TrackThinner(rules);
    t.offer(fix(0, 34, 108));
    expect(t.offer(fix(59, 34, 108))).toBeNull();
    expect(t.offer(fix(60, 34, 108))).toBe('heartbeat');
    expect(t.offer(fix(64, 34, 108), 5)).toBeNull();
    expect(t.offer(fix(65, 34, 108), 5)).toBe('heartbeat');
  });

  it('never keeps a fix without a valid position', () => {
    const t = new TrackThinner(rules);
    expect(t.offer(fix(0, 34, 108, { valid: false }))).toBeNull();
    expect(t.offer(fix(1, 34, 108))).toBe('first');
  });
});
