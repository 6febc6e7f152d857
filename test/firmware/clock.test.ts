import { describe, expect, it } from 'vitest';
import pino from 'pino';
import type { GpsFix } from '../../hal/gps/types.ts';
import { type ClockChange, GpsClock } from '../../firmware/clock.ts';

function fix(time: Date | null, receivedAtMs: number, valid = true): GpsFix {
  return { valid, lat: 34, lon: 108, altM: null, speedMps: null, trackDeg: null, time, sats: null, hdop: null, receivedAtMs } as GpsFix;
}

describe('GPS-corrected clock', () => {
  it('stamps with the system clock, marked "system", until a timed fix arrives', () => {
    const clock = new GpsClock(undefined, () => Date.UTC(1970, 0, 1, 0, 5), () => 1000);
    expect(clock.now()).toEqual({ iso: '1970-01-01T00:05:00.000Z', ms: Date.UTC(1970, 0, 1, 0, 5), timeSource: 'system' });
    clock.observe(fix(null, 1000)); // a fix without a date teaches nothing
    clock.observe(fix(new Date('2026-11-23T08:00:00Z'), 1000, false)); // nor one without a position
    expect(clock.offset()).toBeNull();
  });

  it('corrects a head unit that booted in 1970 by the offset measured when the fix arrived', () => {
    let wall = Date.UTC(1970, 0, 1, 0, 5);
    let mono = 10_000;
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: 'warn' }, { write: (s: string) => lines.push(JSON.parse(s)) });
    const clock = new GpsClock(log, () => wall, () => mono);
    // The fix arrived 200 ms ago (mono 9800) and says 08:00:00 UTC.
    clock.observe(fix(new Date('2026-11-23T08:00:00.000Z'), 9_800));
    expect(clock.now()).toMatchObject({ iso: '2026-11-23T08:00:00.200Z', timeSource: 'gps' });
    wall += 60_000;
    mono += 60_000;
    expect(clock.now().iso).toBe('2026-11-23T08:01:00.200Z');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ event: 'clock.offset', system: '1970-01-01T00:04:59.800Z', gps: '2026-11-23T08:00:00.000Z' });
  });

  it('reads an instant taken before GPS time was known on the GPS clock once it is, and says the mapping moved', () => {
    const mono = { now: 5_000 };
    const clock = new GpsClock(undefined, () => Date.UTC(2026, 10, 23, 6, 0) + (mono.now - 5_000), () => mono.now);
    const changes: ClockChange[] = [];
    clock.on('change', (c) => changes.push(c));
    const press = mono.now; // a press at 06:00:00 by the wrong system clock
    expect(clock.stampAt(press)).toMatchObject({ iso: '2026-11-23T06:00:00.000Z', timeSource: 'system' });
    mono.now += 10_000;
    // GPS says it is 08:00:10 (two hours ahead of the system clock).
    clock.observe(fix(new Date('2026-11-23T08:00:10.000Z'), mono.now));
    expect(clock.stampAt(press)).toMatchObject({ iso: '2026-11-23T08:00:00.000Z', timeSource: 'gps' });
    expect(changes).toEqual([{ deltaMs: 2 * 3_600_000, timeSource: 'gps' }]);
  });

  it('keeps the offset steady through late bursts (median of recent fixes) and when the system clock is stepped', () => {
    let wall = Date.UTC(2026, 10, 23, 8, 0);
    let mono = 1_000;
    const clock = new GpsClock(undefined, () => wall, () => mono);
    for (let i = 0; i < 9; i++) {
      // One fix a second, arriving 100 ms late; one of them 900 ms late.
      const t = Date.UTC(2026, 10, 23, 8, 0) + i * 1000;
      clock.observe(fix(new Date(t), 1_000 + i * 1000 + (i === 4 ? 900 : 100)));
    }
    const before = clock.utcAt(3_000);
    // NTP steps the system clock by an hour: GPS-corrected stamps do not move.
    wall += 3_600_000;
    mono += 1;
    expect(clock.utcAt(3_000)).toBe(before);
    expect(before).toBe(Date.UTC(2026, 10, 23, 8, 0) + 1_900);
  });
});
