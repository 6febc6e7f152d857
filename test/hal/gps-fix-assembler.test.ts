// The fix assembler reports what gpsd reports, when gpsd reports it. Each
// case below is one of gpsd's rules on a few hand-written sentences; the
// corpus test (gps-corpus.test.ts) holds the whole thing against gpsd's own
// output for 68 receivers.

import { describe, expect, it } from 'vitest';
import { FixAssembler } from '../../hal/gps/fix-assembler.ts';
import { hex2, nmeaChecksum, parseSentence } from '../../hal/gps/nmea.ts';
import type { GpsFix } from '../../hal/gps/types.ts';

function line(body: string): string {
  return `$${body}*${hex2(nmeaChecksum(body))}\r\n`;
}

/** Feed sentence bodies (without $ and checksum); the fixes each one produced, in order. */
function feed(asm: FixAssembler, ...bodies: string[]): GpsFix[][] {
  return bodies.map((body) => {
    const r = parseSentence(line(body));
    if ('error' in r) throw new Error(r.error);
    return asm.push(r);
  });
}

function assembler(): FixAssembler {
  return new FixAssembler({ now: () => 1000 });
}

const RMC = (time: string, lat = '3415.6600', date = '200524') => `GPRMC,${time},A,${lat},N,10856.4000,E,15.55,181.5,${date},,,A`;
const GGA = (time: string, lat = '3415.6600') => `GPGGA,${time},${lat},N,10856.4000,E,1,09,0.9,405.0,M,-28.0,M,,`;
const T = (hms: string) => new Date(`2024-05-20T${hms}Z`);

describe('FixAssembler: reporting cycles', () => {
  it('reports every position sentence until it knows where the cycle ends, then once per cycle at its end', () => {
    const asm = assembler();
    const [rmc0 = [], gga0 = [], rmc1 = [], gga1 = []] = feed(asm, RMC('120000.00'), GGA('120000.00'), RMC('120001.00', '3415.6700'), GGA('120001.00', '3415.6700'));
    // First cycle: gpsd has not seen a time change yet, so every position counts.
    expect(rmc0).toEqual([expect.objectContaining({ mode: 2, valid: true, time: T('12:00:00.000'), altMSL: null, speedMps: 15.55 * (1.852 / 3.6) })]);
    expect(gga0).toEqual([expect.objectContaining({ mode: 3, time: T('12:00:00.000'), altMSL: 405, altHAE: 377, sats: 9, hdop: 0.9 })]);
    // The time changed after a GGA: GGA ends this receiver's cycle. The RMC opens the next one silently.
    expect(rmc1).toEqual([]);
    expect(gga1).toHaveLength(1);
    const fix = gga1[0] as GpsFix;
    expect(fix).toMatchObject({ mode: 3, time: T('12:00:01.000'), altM: 405, trackDeg: 181.5, receivedAtMs: 1000 });
    expect(fix.lat).toBeCloseTo(34 + 15.67 / 60, 12);
    expect(fix.speedMps).toBeCloseTo(8, 2);
  });

  it('reports again after the cycle end when a sentence brings something new, and not when it repeats the fix', () => {
    const asm = assembler();
    feed(asm, RMC('120000.00'), GGA('120000.00'), RMC('120001.00'), GGA('120001.00'));
    const [gsv = [], vtg = []] = feed(asm, 'GPGSV,1,1,04,01,40,083,46,02,17,308,41,12,07,344,39,14,22,228,45', 'GPVTG,90.0,T,,M,2.0,N,3.7,K,A');
    expect(gsv).toEqual([]); // the same fix again: not news
    expect(vtg).toEqual([expect.objectContaining({ trackDeg: 90, time: T('12:00:01.000') })]);
    expect(vtg[0]?.speedMps).toBeCloseTo(2 * (1.852 / 3.6), 12);
  });

  it('gives a GGA the date of the last RMC or ZDA, and no time before any', () => {
    const asm = assembler();
    const [gga0 = [], rmc0 = [], gga1 = [], rmc1 = []] = feed(asm, GGA('235959.00'), RMC('235959.00'), GGA('000000.00'), RMC('000000.00', '3415.6600', '210524'));
    expect(gga0).toEqual([expect.objectContaining({ mode: 3, time: null })]);
    expect(rmc0).toEqual([expect.objectContaining({ mode: 3, time: T('23:59:59.000') })]);
    // RMC ended the first cycle; the GGA after midnight still has yesterday's date, but is not reported.
    expect(gga1).toEqual([]);
    expect(rmc1).toEqual([expect.objectContaining({ time: new Date('2024-05-21T00:00:00Z') })]);

    // A ZDA gives the date (and the century). Here it is also the last
    // time-stamped sentence before the time changes: it becomes the cycle
    // end, and the GGA in front of it is reported when it comes.
    const zda = assembler();
    const [, fromZda = [], gga = [], zdaEnd = []] = feed(zda, GGA('193221.00'), 'GPZDA,193221.00,23,12,2020,00,00', GGA('193222.00'), 'GPZDA,193222.00,23,12,2020,00,00');
    expect(fromZda).toEqual([]); // a time, but no position or mode: nothing new to report
    expect(gga).toEqual([]);
    expect(zdaEnd).toEqual([expect.objectContaining({ mode: 3, time: new Date('2020-12-23T19:32:22.000Z') })]);
  });

  it('lets GBS end the cycle: it carries the time of the fix it estimates (gpsd corpus ait250.log)', () => {
    // RMC then GBS each second: the GBS is the last time-stamped sentence
    // before the time changes, so it is the cycle end, and the RMC that
    // opens the next second is not reported until its GBS comes.
    const asm = assembler();
    const GBS = (time: string) => `GPGBS,${time},3.0,1.9,4.2,,,,`;
    const [rmc0 = [], gbs0 = [], rmc1 = [], gbs1 = [], rmc2 = []] = feed(asm, RMC('120000.00'), GBS('120000.00'), RMC('120001.00', '3415.6700'), GBS('120001.00'), RMC('120002.00', '3415.6800'));
    expect(rmc0).toEqual([expect.objectContaining({ mode: 2, time: T('12:00:00.000') })]);
    expect(gbs0).toEqual([]); // the same fix: not news
    expect(rmc1).toEqual([]);
    expect(gbs1).toEqual([expect.objectContaining({ mode: 2, time: T('12:00:01.000') })]);
    expect(rmc2).toEqual([]);
  });

  it("starts learning the cycle again after an RMC without time or date (Telit HE910's no-fix $GPRMC,,V)", () => {
    // Without a time the cycle detector has nothing to go by: gpsd forgets
    // the cycle end it learned, so the first fix after the no-fix phase is
    // reported as soon as its RMC brings the date, not held for a cycle end.
    const asm = assembler();
    const noFix = ['GPGGA,,,,,,0,,,,M,,M,,', 'GPGLL,,,,,,V,N', 'GPGSA,A,1,,,,,,,,,,,,,,,', 'GPRMC,,V,,,,,,,,,,N', 'GPVTG,,T,,M,,N,,K,N'];
    const fix = [
      'GPGGA,105153.71,5050.4122,N,00420.8266,E,1,04,2.25,109.44,M,,M,,',
      'GPGLL,5050.4122,N,00420.8266,E,105153.71,A,A',
      'GPGSA,A,3,15,17,24,28,,,,,,,,,4.00,2.25,3.25',
      'GPRMC,105153.71,A,5050.4122,N,00420.8266,E,0.14,303.60,120319,,,A',
    ];
    const out = feed(asm, ...noFix, ...fix);
    expect(out.slice(0, noFix.length).flat()).toEqual([]); // no position at all
    const [gga = [], gll = [], gsa = [], rmc = []] = out.slice(noFix.length);
    expect(gga).toEqual([expect.objectContaining({ mode: 3, time: null })]); // no date yet
    expect(gll).toEqual([]); // the same fix: not news
    expect(gsa).toEqual([expect.objectContaining({ mode: 3, time: null, epv: 3.25 * 23 })]); // news: VDOP's error estimate
    expect(rmc).toEqual([expect.objectContaining({ mode: 3, time: new Date('2019-03-12T10:51:53.710Z') })]);
  });
});

describe('FixAssembler: 2D or 3D from sentences that do not say', () => {
  // A boat instrument hub (Humminbird, gpsd corpus humminbird-M37.log)
  // alternates RMC and GLL, with a GGA every few seconds: only the GGA has
  // an altitude. gpsd's rules for the others: RMC takes the last timed
  // fix's mode (2D at most until a 3D one); GLL is 3D with an altitude or
  // four satellites in this cycle, 2D while the cycle has no fix yet or the
  // previous epoch's fix had no height, and otherwise keeps the cycle's 3D.
  const bodies = [
    'INRMC,194101,A,4426.1130,N,07140.5596,W,5.2,77.3,160906,15.8,W',
    'INGLL,4426.1130,N,07140.5579,W,194102,A',
    'INVTG,77.5,T,93.3,M,5.2,N,9.7,K',
    'INRMC,194103,A,4426.1134,N,07140.5558,W,5.3,77.0,160906,15.8,W',
    'INGGA,194104,4426.1138,N,07140.5536,W,2,10,0.9,267.9,M,,,,',
    'INZDA,194104,16,09,2006,-05,00',
    'INRMC,194105,A,4426.1142,N,07140.5515,W,5.3,76.8,160906,15.8,W',
    'INGLL,4426.1146,N,07140.5499,W,194106,A',
    'INRMC,194107,A,4426.1149,N,07140.5477,W,5.3,76.6,160906,15.8,W',
  ];
  const at = (hms: string) => new Date(`2006-09-16T${hms}Z`);
  const fixes = () => {
    const asm = assembler();
    asm.markCaptureDated();
    return feed(asm, ...bodies).flat();
  };

  it('GLL after a 2D RMC, with no height seen yet: 2D', () => {
    expect(fixes().slice(0, 2)).toEqual([
      expect.objectContaining({ mode: 2, time: at('19:41:01.000') }),
      expect.objectContaining({ mode: 2, time: at('19:41:02.000') }),
    ]);
  });

  it('RMC and GLL after a 3D GGA stay 3D, epoch after epoch, without an altitude of their own', () => {
    expect(fixes().slice(2)).toEqual([
      expect.objectContaining({ mode: 3, time: at('19:41:05.000'), altMSL: null }),
      expect.objectContaining({ mode: 3, time: at('19:41:06.000'), altMSL: null }),
      expect.objectContaining({ mode: 3, time: at('19:41:07.000'), altMSL: null }),
    ]);
  });
});

describe('FixAssembler: when there is no fix', () => {
  it("reports the receiver's position without a fix as mode 1, invalid (gpsd would hide it)", () => {
    const asm = assembler();
    const [rmc = [], gga = []] = feed(asm, 'GPRMC,120000.00,V,3415.6600,N,10856.4000,E,,,200524,,,N', 'GPGGA,120000.00,3415.6600,N,10856.4000,E,0,00,,405.0,M,,M,,');
    expect(rmc).toEqual([]); // status V: no position taken from it
    expect(gga).toEqual([expect.objectContaining({ mode: 1, valid: false, time: null, eph: null })]);
    expect(gga[0]?.lat).toBeCloseTo(34 + 15.66 / 60, 12);
  });

  it('takes a GGA with fewer than three satellites as no fix, whatever its quality says (bn-9015, Hemisphere)', () => {
    const asm = assembler();
    const [gga = []] = feed(asm, 'GPGGA,194050.00,4221.8237733,N,07101.9411707,W,1,00,3.3,10.835,M,-33.320,M,,');
    expect(gga).toEqual([expect.objectContaining({ mode: 1, valid: false })]);
  });

  it('does not believe a GSA after a GGA that repeats its time (a receiver stuck on its last fix)', () => {
    const stuck = assembler();
    feed(stuck, GGA('120000.00'), GGA('120000.00'));
    expect(feed(stuck, 'GPGSA,A,1,,,,,,,,,,,,,,,').flat()).toEqual([]);

    const moving = assembler();
    feed(moving, GGA('120000.00'), GGA('120001.00'));
    expect(feed(moving, 'GPGSA,A,1,,,,,,,,,,,,,,,').flat()).toEqual([expect.objectContaining({ mode: 1, valid: false })]);
  });

  it('drops a position out of range, and keeps the edge: 89°60′ is 90° (an MTK cold-start placeholder)', () => {
    expect(feed(assembler(), 'GPGGA,235946.005,9100.000000,N,00000.000000,E,1,05,,137.000,M,13.000,M,,').flat()).toEqual([]);
    expect(feed(assembler(), 'GPGGA,235946.005,8960.000000,N,00000.000000,E,1,05,,137.000,M,13.000,M,,').flat()).toEqual([expect.objectContaining({ lat: 90, lon: 0 })]);
  });
});

describe('FixAssembler: AIS mixed into the stream', () => {
  // Class B ships send their static data in two halves (AIS message 24);
  // gpsd withholds its next report from clients while a half is pending.
  const ais = (payload: string, fill: number) => {
    const body = `AIVDM,1,1,,A,${payload},${fill}`;
    return parseSentence(`!${body}*${hex2(nmeaChecksum(body))}\r\n`);
  };
  const partA = ais('H3`fMU0PE=@T400000000000000', 2); // MMSI 244030868, name
  const partB = ais('H3`fMU4TF5C@5B0@3okhp01h1140', 0); // the same ship, dimensions
  const learned = () => {
    const asm = assembler();
    feed(asm, RMC('120000.00'), GGA('120000.00'), RMC('120001.00'), GGA('120001.00'));
    return asm;
  };
  const push = (asm: FixAssembler, r: ReturnType<typeof parseSentence>) => {
    if ('error' in r) throw new Error(r.error);
    return asm.push(r);
  };

  it('withholds the next report after half a type 24 message, then reports again', () => {
    const asm = learned();
    expect(push(asm, partA)).toEqual([]);
    const [, withheld = [], , next = []] = feed(asm, RMC('120002.00'), GGA('120002.00'), RMC('120003.00'), GGA('120003.00'));
    expect(withheld).toEqual([]);
    expect(next).toEqual([expect.objectContaining({ time: T('12:00:03.000') })]);
  });

  it('reports as usual once both halves came', () => {
    const asm = learned();
    push(asm, partA);
    push(asm, partB);
    const [, gga = []] = feed(asm, RMC('120002.00'), GGA('120002.00'));
    expect(gga).toEqual([expect.objectContaining({ time: T('12:00:02.000') })]);
  });
});

describe('FixAssembler: dates', () => {
  const old = () => feed(assembler(), 'GPRMC,120000,A,3415.6600,N,10856.4000,E,0.0,0.0,230700,,,A')[0]?.[0]?.time;

  it('repairs a live receiver with the GPS week-rollover bug: a date before 2017 is 1024 weeks late', () => {
    expect(old()).toEqual(new Date(Date.UTC(2000, 6, 23, 12) + 1024 * 7 * 86_400_000));
  });

  it('takes dates as sent in a dated capture (gpsd regression logs)', () => {
    const asm = assembler();
    asm.markCaptureDated();
    const [rmc = []] = feed(asm, 'GPRMC,120000,A,3415.6600,N,10856.4000,E,0.0,0.0,230700,,,A');
    expect(rmc?.[0]?.time).toEqual(new Date('2000-07-23T12:00:00Z'));
  });

  it('has no time for a date that does not exist in the calendar of its fields (hour 24)', () => {
    expect(feed(assembler(), 'GPRMC,240000,A,3415.6600,N,10856.4000,E,0.0,0.0,200524,,,A')[0]?.[0]?.time).toBeNull();
  });
});

describe('FixAssembler: error estimates and altitudes, as gpsd computes them', () => {
  it('takes HDOP × 19 m and VDOP × 23 m, and the ellipsoid height from the geoid height (gpsd corpus ac12.log)', () => {
    const asm = assembler();
    const [gga = [], gsa = []] = feed(asm, 'GPGGA,193221.00,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,', 'GPGSA,A,3,10,28,09,13,,,,,,,,,03.4,01.7,03.0');
    // gpsd: {"mode":3,"lat":20.628798667,"lon":-87.068079667,"altHAE":-44.3000,"altMSL":-30.4000,"eph":32.300}
    expect(gga).toEqual([expect.objectContaining({ mode: 3, altMSL: -30.4, epv: null })]);
    expect(gga[0]?.lat.toFixed(9)).toBe('20.628798667');
    expect(gga[0]?.altHAE).toBeCloseTo(-44.3, 9);
    expect(gga[0]?.eph).toBeCloseTo(32.3, 9);
    // then {"mode":3,...,"epv":69.000,...}
    expect(gsa[0]?.epv).toBeCloseTo(69, 9);
    expect(gsa[0]?.sats).toBe(4);
  });

  it('derives the speed from the distance to the previous epoch when the receiver sends none', () => {
    const asm = assembler();
    const zda = (t: string) => `GPZDA,${t},20,05,2024,00,00`;
    // 0.001 arc minute of latitude a second: about 1.85 m/s.
    const [, , , gga1 = []] = feed(asm, zda('120000.00'), GGA('120000.00', '3415.6600'), zda('120001.00'), GGA('120001.00', '3415.6610'));
    expect(gga1).toHaveLength(1);
    expect(gga1[0]?.speedMps).toBeCloseTo(1.8488, 3); // the meridian arc at 34° N: 1848.8 m per arc minute
  });

  it('has nothing to flush: fixes leave as soon as gpsd would report them', () => {
    const asm = assembler();
    feed(asm, RMC('120000.00'));
    expect(asm.flush()).toBeNull();
  });
});
