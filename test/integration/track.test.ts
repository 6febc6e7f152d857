// The routine track: fixes from the receiver (through the socat pair) are
// thinned, stamped with GPS-corrected time, batched several per message, and
// stored at dispatch once each.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BusFixture, until } from './fixture.ts';

describe('track', () => {
  const bus = new BusFixture();
  // 2 Hz receiver at ~8 m/s: a point per second passes minDistanceM 4, batches every 3 s.
  beforeAll(
    () => bus.start({ position: { intervalS: 3, alarmIntervalS: 1, minIntervalS: 1, minDistanceM: 4, headingChangeDeg: 30, maxGapS: 60, batchMax: 60 } }),
    60_000,
  );
  afterAll(() => bus.stop());

  it('thins the fixes, batches the points, stamps them with GPS time, and stores each once', async () => {
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    const points = await until(() => {
      const p = bus.dispatchPositions();
      return new Set(p.map((x) => x.messageId)).size >= 3 && p;
    }, 20_000, 'three track batches at dispatch');

    const perMessage = new Map<string, number>();
    for (const p of points) perMessage.set(p.messageId, (perMessage.get(p.messageId) ?? 0) + 1);
    expect(Math.max(...perMessage.values())).toBeGreaterThanOrEqual(2);
    expect(points.every((p) => p.timeSource === 'gps')).toBe(true);
    // Thinned: no two points less than minIntervalS apart, so fewer points than the 2 Hz fixes.
    const ats = points.map((p) => Date.parse(p.at));
    for (let i = 1; i < ats.length; i++) expect(ats[i]! - ats[i - 1]!).toBeGreaterThanOrEqual(900);
    const span = (ats.at(-1)! - ats[0]!) / 1000;
    const fixesInSpan = bus.samples.filter((s) => s.time.getTime() >= ats[0]! - 1000 && s.time.getTime() <= ats.at(-1)!).length;
    expect(points.length).toBeLessThan(fixesInSpan);
    expect(points.length).toBeGreaterThanOrEqual(Math.floor(span / 2));
    // Every point is a position the receiver really sent.
    for (const p of points) {
      expect(bus.samples.some((s) => Math.abs(s.lat - p.fix.lat) < 1e-6 && Math.abs(s.lon - p.fix.lon) < 1e-6), `${p.fix.lat},${p.fix.lon}`).toBe(true);
    }
    // Nothing doubled, even though the bus re-sends until receipted.
    expect(new Set(points.map((p) => p.id)).size).toBe(points.length);
  });
});
