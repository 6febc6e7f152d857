import { describe, expect, it } from 'vitest';
import { parseSentence } from '../../hal/gps/nmea.ts';
import { XIAN_LOOP, nmeaFor, positionAlongRoute } from '../../hal/gps/route-sim.ts';

const AT = new Date('2024-05-20T08:30:15.250Z');

describe('nmeaFor', () => {
  it('writes a GPRMC and a GPGGA with valid checksums and CRLF that parse back to the position', () => {
    const pos = { lat: 34.2610123, lon: 108.9424567, altM: 405, speedMps: 8, trackDeg: 181.5 };
    const [rmc, gga] = nmeaFor(pos, AT);
    expect(rmc).toMatch(/^\$GPRMC,083015\.25,A,.*\*[0-9A-F]{2}\r\n$/);
    expect(gga).toMatch(/^\$GPGGA,083015\.25,.*\*[0-9A-F]{2}\r\n$/);
    const r = parseSentence(rmc);
    const g = parseSentence(gga);
    expect(r).toMatchObject({ type: 'RMC', status: 'A', date: { year: 2024, month: 5, day: 20 }, trackDeg: 181.5 });
    expect(g).toMatchObject({ type: 'GGA', quality: 1, sats: 9, altM: 405 });
    if ('error' in r || r.type !== 'RMC' || 'error' in g || g.type !== 'GGA') throw new Error('unreachable');
    for (const p of [r, g]) {
      expect(Math.abs((p.lat ?? NaN) - pos.lat)).toBeLessThan(1e-7);
      expect(Math.abs((p.lon ?? NaN) - pos.lon)).toBeLessThan(1e-7);
    }
    expect(r.speedMps).toBeCloseTo(8, 3);
  });

  it('writes S and W for negative coordinates and carries 59.9999999 minutes into the degree', () => {
    const [rmc] = nmeaFor({ lat: -33.99999999999, lon: -70.5, altM: 0, speedMps: 0, trackDeg: 0 }, AT);
    expect(rmc).toContain(',3400.000000,S,07030.000000,W,');
  });

  it("writes 'V' / mode N and GGA quality 0 for a receiver without a fix", () => {
    const [rmc, gga] = nmeaFor({ lat: 34.26, lon: 108.94, altM: 405, speedMps: 8, trackDeg: 0 }, AT, { fixValid: false });
    expect(parseSentence(rmc)).toMatchObject({ status: 'V', mode: 'N' });
    expect(parseSentence(gga)).toMatchObject({ quality: 0 });
    const [emptyRmc] = nmeaFor(null, AT);
    expect(parseSentence(emptyRmc)).toMatchObject({ status: 'V', lat: null, lon: null });
  });
});

describe('positionAlongRoute', () => {
  it('starts at the first waypoint, moves along the route and loops', () => {
    const start = positionAlongRoute(XIAN_LOOP, 0, 8, 405);
    expect(start).toMatchObject({ lat: XIAN_LOOP[0]?.lat, lon: XIAN_LOOP[0]?.lon });
    // The first leg runs south down Nan Dajie.
    const later = positionAlongRoute(XIAN_LOOP, 100, 8, 405);
    expect(later.lat).toBeLessThan(start.lat);
    expect(later.trackDeg).toBeGreaterThan(170);
    expect(later.trackDeg).toBeLessThan(190);
    // Roughly 111 km per degree of latitude.
    expect((start.lat - later.lat) * 111_000).toBeCloseTo(100, -1);
  });

  it('comes back to the start after one loop', () => {
    let loopM = 0;
    for (let i = 0; i < XIAN_LOOP.length; i++) {
      const a = XIAN_LOOP[i]!;
      const b = XIAN_LOOP[(i + 1) % XIAN_LOOP.length]!;
      loopM += Math.hypot((b.lat - a.lat) * 111_195, (b.lon - a.lon) * 111_195 * Math.cos((a.lat * Math.PI) / 180));
    }
    const p = positionAlongRoute(XIAN_LOOP, loopM + 1, 8, 405);
    expect(Math.abs(p.lat - (XIAN_LOOP[0]?.lat ?? 0))).toBeLessThan(1e-4);
  });
});
