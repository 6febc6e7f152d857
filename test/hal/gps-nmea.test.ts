import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  type GgaSentence,
  type NmeaError,
  type ParsedSentence,
  type RmcSentence,
  KNOTS_TO_MPS,
  hex2,
  nmeaChecksum,
  parseSentence,
} from '../../hal/gps/nmea.ts';

// gpsd's regression captures, real receivers' bytes (see its README).
import { CORPUS } from '../helpers/corpus.ts';

function corpusLines(log: string): string[] {
  return readFileSync(new URL(log, CORPUS), 'latin1').split('\n');
}

/** The first line of a capture that starts with `prefix`, exactly as the receiver sent it (CRLF included). */
function corpusLine(log: string, prefix: string): string {
  const line = corpusLines(log).find((l) => l.startsWith(prefix));
  if (line === undefined) throw new Error(`corpus ${log}: no line starts with ${prefix}`);
  return `${line}\n`;
}

function withChecksum(body: string): string {
  return `$${body}*${hex2(nmeaChecksum(body))}\r\n`;
}

function rmc(line: string): RmcSentence {
  const r = parseSentence(line);
  if ('error' in r) throw new Error(r.error);
  if (r.type !== 'RMC') throw new Error(`expected RMC, got ${r.type}`);
  return r;
}

function gga(line: string): GgaSentence {
  const r = parseSentence(line);
  if ('error' in r) throw new Error(r.error);
  if (r.type !== 'GGA') throw new Error(`expected GGA, got ${r.type}`);
  return r;
}

function error(line: string): NmeaError {
  const r = parseSentence(line);
  if (!('error' in r)) throw new Error(`expected an error for ${line}, got ${JSON.stringify(r)}`);
  return r;
}

const ms = (h: number, m: number, s: number) => ((h * 60 + m) * 60 + s) * 1000;

describe('RMC', () => {
  it('parses a Trimble RTK RMC: time, status, western longitude, knots to m/s, course, date, mode', () => {
    const s = rmc(corpusLine('nmea-fuzzy-cases.log', '$GPRMC,132820.60'));
    // $GPRMC,132820.60,A,4134.49821229,N,09345.03351845,W,3.252,92.308,180320,11.5985,E,D*1A
    expect(s.talker).toBe('GP');
    expect(s.timeOfDayMs).toBe(ms(13, 28, 20.6));
    expect(s.status).toBe('A');
    expect(s.mode).toBe('D');
    expect(s.lat).toBeCloseTo(41 + 34.49821229 / 60, 9);
    expect(s.lon).toBeCloseTo(-(93 + 45.03351845 / 60), 9);
    expect(s.speedMps).toBeCloseTo(3.252 * KNOTS_TO_MPS, 9);
    expect(s.speedMps).toBeCloseTo(1.673, 3); // what gpsd reports for this line
    expect(s.trackDeg).toBe(92.308);
    expect(s.date).toEqual({ year: 2020, month: 3, day: 18 });
  });

  it('gives southern latitudes and western longitudes negative signs, eastern positive', () => {
    // Haicom 305N near Brisbane.
    const s = rmc(corpusLine('haicom-305N.log', '$GPRMC,095304.802,A'));
    expect(s.lat).toBeCloseTo(-(27 + 12.652 / 60), 9);
    expect(s.lon).toBeCloseTo(153 + 3.1397 / 60, 9);
    // u-blox AC12 in Mexico.
    const w = rmc(corpusLine('ac12.log', '$GPRMC,193221.00'));
    expect(w.lat).toBeGreaterThan(0);
    expect(w.lon).toBeCloseTo(-(87 + 4.0848 / 60), 9);
  });

  it("keeps status 'V' and the position a receiver repeats while it has no fix", () => {
    const s = rmc(corpusLine('haicom-305N.log', '$GPRMC,095255.810,V'));
    expect(s.status).toBe('V');
    expect(s.lat).toBeCloseTo(-27.2107, 4);
  });

  it('gives null position, speed and course when the fields are empty (cold start)', () => {
    const s = rmc(corpusLine('beidou-bd.log', '$GNRMC,074150.799,V'));
    expect(s).toMatchObject({ status: 'V', lat: null, lon: null, speedMps: null, trackDeg: null, mode: 'N' });
    expect(s.date).toEqual({ year: 2015, month: 2, day: 25 });
    expect(rmc('$GPRMC,,V,,,,,,,,,,N*53').timeOfDayMs).toBeNull();
  });

  it('reads a two-digit year 80..99 as 19xx (GPS time starts in 1980)', () => {
    expect(rmc(corpusLine('april6_2019.log', '$GPRMC,000231.42')).date).toEqual({ year: 1999, month: 8, day: 22 });
  });

  it('drops a corrupt date but keeps the position (Telit HE910 after the 2019 week rollover)', () => {
    const s = rmc(corpusLine('april6_2019.log', '$GPRMC,000231.099'));
    expect(s.date).toBeNull();
    expect(s.lat).toBeCloseTo(48 + 29.0005 / 60, 9);
  });

  it('accepts NMEA 2.0 RMC without the mode field', () => {
    const s = rmc(withChecksum('GPRMC,120000,A,3415.6000,N,10856.4000,E,10.0,90.0,010124,,'));
    expect(s.mode).toBeNull();
    expect(s.timeOfDayMs).toBe(ms(12, 0, 0));
  });
});

describe('GGA', () => {
  it('parses quality, satellites, hdop and altitude', () => {
    const s = gga(corpusLine('nmea-fuzzy-cases.log', '$GPGGA,132820.60'));
    // $GPGGA,132820.60,4134.49821229,N,09345.03351845,W,2,09,1.0,278.020,M,-31.442,M,7.6,0133*7E
    expect(s).toMatchObject({ talker: 'GP', quality: 2, sats: 9, hdop: 1.0, altM: 278.02 });
    expect(s.timeOfDayMs).toBe(ms(13, 28, 20.6));
    expect(s.lat).toBeCloseTo(41 + 34.49821229 / 60, 9);
    expect(s.lon).toBeCloseTo(-(93 + 45.03351845 / 60), 9);
  });

  it('parses a southern-hemisphere GGA', () => {
    const s = gga(corpusLine('haicom-305N.log', '$GPGGA,095304.802'));
    expect(s.lat).toBeCloseTo(-(27 + 12.652 / 60), 9);
    expect(s.lon).toBeCloseTo(153 + 3.1397 / 60, 9);
    expect(s).toMatchObject({ quality: 1, sats: 0, hdop: 17.0, altM: 3.0 });
  });

  it('gives quality 0 and no position before the first fix', () => {
    const s = gga(corpusLine('beidou-bd.log', '$GNGGA,074150.799'));
    expect(s).toMatchObject({ talker: 'GN', quality: 0, sats: 0, lat: null, lon: null, hdop: null, altM: null });
  });
});

describe('talkers', () => {
  it.each([
    ['GN (multi-constellation)', corpusLine('ch-4711.log', '$GNRMC,'), 'GN'],
    ['GL (GLONASS)', corpusLine('ch-4711.log', '$GLRMC,'), 'GL'],
    ['GA (Galileo)', corpusLine('telit-pls83-w.log', '$GARMC,'), 'GA'],
    ['BD (BeiDou, Chinese TSCPB)', withChecksum('BDRMC,074157.000,A,3415.6000,N,10856.4000,E,0.32,4.94,250215,,,A'), 'BD'],
    ['GB (BeiDou, NMEA 4.11)', withChecksum('GBRMC,074157.000,A,3415.6000,N,10856.4000,E,0.32,4.94,250215,,,A'), 'GB'],
  ])('accepts %s', (_name, line, talker) => {
    const s = rmc(line);
    expect(s.talker).toBe(talker);
    expect(s.status).toBe('A');
  });

  it('accepts a BeiDou GGA', () => {
    expect(gga(withChecksum('BDGGA,074157.000,3415.6000,N,10856.4000,E,1,08,1.2,405.0,M,-28.0,M,,')).lat).toBeCloseTo(34.26, 9);
  });
});

describe('checksum', () => {
  it('rejects a wrong checksum, saying what was expected and what came', () => {
    const good = corpusLine('haicom-305N.log', '$GPRMC,095304.802,A').trimEnd(); // ...*78
    const e = error(`${good.slice(0, -2)}79\r\n`);
    expect(e.kind).toBe('checksum');
    expect(e.error).toContain('expected 78, got 79');
  });

  it('rejects a missing checksum, saying what it should have been', () => {
    const e = error('$GPRMC,095304.802,A,2712.6520,S,15303.1397,E,0.00,133.96,080407,,,A\r\n');
    expect(e.kind).toBe('checksum');
    expect(e.error).toMatch(/expected \*78, got none/);
  });

  it('accepts lower-case hex digits', () => {
    const line = corpusLine('beidou-bd.log', '$GPGSV,7,5').replace('*7F', '*7f');
    expect(parseSentence(line)).toEqual({ type: 'other', talker: 'GP', formatter: 'GSV' });
  });
});

describe('framing', () => {
  it('rejects a line without a $ (the tail of a sentence cut by the port opening)', () => {
    expect(error('4.4343,N,01025.5386,E,200002,A,D*48\r\n')).toMatchObject({ kind: 'framing' });
  });

  it('rejects non-ASCII bytes (wrong baud rate, binary protocol)', () => {
    const e = error('$GPRMC,000346.03,A,4808\x00\x00\xff\xfe*12\r\n');
    expect(e.kind).toBe('framing');
    expect(e.error).toMatch(/baud rate/);
  });

  it("starts the sentence at the last '$': ST Teseo's '$$GNRMC' and junk before it", () => {
    const s = rmc(corpusLine('st-teseo-liv4f.log', '$$GNRMC,135806.000'));
    expect(s.lat).toBeCloseTo(47 + 23.00484 / 60, 9);
    expect(rmc(`\x00\xffjunk ${withChecksum('GPRMC,,V,,,,,,,,,,N')}`).status).toBe('V');
  });

  it('treats other sentences and proprietary ones as other', () => {
    expect(parseSentence(corpusLine('beidou-bd.log', '$GPGSV,7,1'))).toEqual({ type: 'other', talker: 'GP', formatter: 'GSV' });
    expect(parseSentence(corpusLine('beidou-bd.log', '$PSRFEPE'))).toEqual({ type: 'other', talker: 'P', formatter: 'SRFEPE' });
    expect(parseSentence(corpusLine('blumax-gps009.log', '$PSRFTXTVersion'))).toMatchObject({ type: 'other', talker: 'P' });
  });

  it('rejects an address that is not talker + formatter', () => {
    expect(error(withChecksum('LOG108,1,100'))).toMatchObject({ kind: 'framing' });
  });
});

describe('malformed fields are errors, never NaN', () => {
  it.each([
    ['too few RMC fields', 'GPRMC,120000,A,3415.6,N'],
    ['too few GGA fields', 'GPGGA,120000,3415.6,N,10856.4,E,1'],
    ['RMC status neither A nor V', 'GPRMC,120000,X,3415.6,N,10856.4,E,0,0,010124,,'],
    ['latitude without hemisphere', 'GPRMC,120000,A,3415.6,,10856.4,E,0,0,010124,,'],
    ['hemisphere not N/S', 'GPRMC,120000,A,3415.6,E,10856.4,E,0,0,010124,,'],
    ['longitude without latitude', 'GPRMC,120000,A,,,10856.4,E,0,0,010124,,'],
    ['minutes of 60 (MTK placeholder 8960.000000)', 'GPGGA,235946.005,8960.000000,N,00000.000000,E,0,0,,137.000,M,13.000,M,,'],
    ['latitude with three degree digits', 'GPRMC,120000,A,13415.6,N,10856.4,E,0,0,010124,,'],
    ['speed not a number', 'GPRMC,120000,A,3415.6,N,10856.4,E,fast,0,010124,,'],
    ['course over 360', 'GPRMC,120000,A,3415.6,N,10856.4,E,1,361,010124,,'],
    ['time not hhmmss', 'GPRMC,12:00:00,A,3415.6,N,10856.4,E,1,0,010124,,'],
    ['hour 24', 'GPRMC,240000,A,3415.6,N,10856.4,E,1,0,010124,,'],
    ['GGA quality empty', 'GPGGA,120000,3415.6,N,10856.4,E,,08,1.0,400,M,,M,,'],
    ['GGA satellites not an integer', 'GPGGA,120000,3415.6,N,10856.4,E,1,8.5,1.0,400,M,,M,,'],
    ['GGA altitude not a number', 'GPGGA,120000,3415.6,N,10856.4,E,1,08,1.0,high,M,,M,,'],
  ])('%s', (_name, body) => {
    const e = error(withChecksum(body));
    expect(e.kind).toBe('field');
    expect(e.error).toContain(body.slice(0, 5)); // names the sentence
  });
});

describe('the whole gpsd corpus', () => {
  const logs = readdirSync(fileURLToPath(CORPUS)).filter((f) => f.endsWith('.log'));

  it('parses every line of every capture without throwing or producing NaN', () => {
    let sentences = 0;
    for (const log of logs) {
      for (const line of corpusLines(log)) {
        if (line.startsWith('#')) continue;
        const r: ParsedSentence | NmeaError = parseSentence(line);
        if ('error' in r) continue;
        sentences++;
        for (const v of Object.values(r)) {
          if (typeof v === 'number') expect(Number.isFinite(v), `${log}: ${line}`).toBe(true);
        }
      }
    }
    expect(sentences).toBeGreaterThan(15_000);
  });

  // In each .chk file gpsd prints, after the sentence that triggered it, the
  // TPV it reported; after a valid RMC that TPV carries the RMC's time and position.
  it("agrees with gpsd's TPV after every valid RMC: time to the ms, lat/lon within 1e-6 degrees", () => {
    let compared = 0;
    for (const log of logs) {
      const lines = corpusLines(`${log}.chk`);
      lines.forEach((line, i) => {
        const tpv = tpvAfter(lines, i);
        if (!/^\$..RMC,/.test(line) || !tpv || tpv.lat === undefined || tpv.time === undefined) return;
        const s = parseSentence(line);
        if ('error' in s || s.type !== 'RMC' || s.status !== 'A' || !s.date || s.timeOfDayMs === null) return;
        const time = new Date(Date.UTC(s.date.year, s.date.month - 1, s.date.day) + s.timeOfDayMs).toISOString();
        expect({ log, line, time }).toEqual({ log, line, time: tpv.time });
        expect(Math.abs((s.lat ?? NaN) - tpv.lat), `${log}: ${line}`).toBeLessThan(1e-6);
        expect(Math.abs((s.lon ?? NaN) - (tpv.lon ?? NaN)), `${log}: ${line}`).toBeLessThan(1e-6);
        compared++;
      });
    }
    expect(compared).toBeGreaterThan(500);
  });

  it("agrees with gpsd's TPV after every GGA with a fix: lat/lon within 1e-6 degrees, altitude MSL", () => {
    let compared = 0;
    for (const log of logs) {
      const lines = corpusLines(`${log}.chk`);
      lines.forEach((line, i) => {
        const tpv = tpvAfter(lines, i);
        if (!/^\$..GGA,/.test(line) || !tpv || tpv.lat === undefined) return;
        const s = parseSentence(line);
        if ('error' in s || s.type !== 'GGA' || s.quality === 0) return;
        expect(Math.abs((s.lat ?? NaN) - tpv.lat), `${log}: ${line}`).toBeLessThan(1e-6);
        expect(Math.abs((s.lon ?? NaN) - (tpv.lon ?? NaN)), `${log}: ${line}`).toBeLessThan(1e-6);
        if (tpv.altMSL !== undefined) expect(s.altM, `${log}: ${line}`).toBeCloseTo(tpv.altMSL, 3);
        compared++;
      });
    }
    expect(compared).toBeGreaterThan(300);
  });
});

interface Tpv {
  time?: string;
  lat?: number;
  lon?: number;
  altMSL?: number;
}

function tpvAfter(lines: string[], i: number): Tpv | null {
  const next = lines[i + 1];
  if (!next?.startsWith('{"class":"TPV"')) return null;
  return JSON.parse(next) as Tpv;
}
