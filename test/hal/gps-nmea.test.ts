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
import { atof, atoi, ddmmyy, hhmmss, nanosOf, nmeaAngle } from '../../hal/gps/nmea-fields.ts';

// gpsd's regression captures, real receivers' bytes (see its README). The
// single lines quoted below come from the copy in the repository; the
// whole-corpus checks at the end read BUSGUARD_GPS_CORPUS when it is set
// (further logs of gpsd's suite), and hold only the repository's copy to
// its size.
import { CORPUS } from '../helpers/corpus.ts';

const VENDORED = new URL('../fixtures/gps-corpus/', import.meta.url);
const CORPUS_IS_VENDORED = CORPUS.href === VENDORED.href;

function corpusLines(log: string, corpus: URL = CORPUS): string[] {
  return readFileSync(new URL(log, corpus), 'latin1').split('\n');
}

/** The first line of a capture that starts with `prefix`, exactly as the receiver sent it (CRLF included). */
function corpusLine(log: string, prefix: string): string {
  const line = corpusLines(log, VENDORED).find((l) => l.startsWith(prefix));
  if (line === undefined) throw new Error(`corpus ${log}: no line starts with ${prefix}`);
  return `${line}\n`;
}

function withChecksum(body: string): string {
  return `$${body}*${hex2(nmeaChecksum(body))}\r\n`;
}

function sentence(line: string): ParsedSentence {
  const r = parseSentence(line);
  if ('error' in r) throw new Error(r.error);
  return r;
}

function rmc(line: string): RmcSentence {
  const r = sentence(line);
  if (r.type !== 'RMC') throw new Error(`expected RMC, got ${r.type}`);
  return r;
}

function gga(line: string): GgaSentence {
  const r = sentence(line);
  if (r.type !== 'GGA') throw new Error(`expected GGA, got ${r.type}`);
  return r;
}

function error(line: string): NmeaError {
  const r = parseSentence(line);
  if (!('error' in r)) throw new Error(`expected an error for ${line}, got ${r.type}`);
  return r;
}

const ms = (h: number, m: number, s: number) => ((h * 60 + m) * 60 + s) * 1000;

describe('RMC and GGA', () => {
  it('parses a Trimble RTK RMC: time, status, western longitude, knots to m/s, course, date, mode', () => {
    const s = rmc(corpusLine('nmea-fuzzy-cases.log', '$GPRMC,132820.60'));
    // $GPRMC,132820.60,A,4134.49821229,N,09345.03351845,W,3.252,92.308,180320,11.5985,E,D*1A
    expect(s).toMatchObject({ talker: 'GP', formatter: 'RMC', status: 'A', mode: 'D', trackDeg: 92.308 });
    expect(s.timeOfDayMs).toBe(ms(13, 28, 20.6));
    expect(s.lat).toBeCloseTo(41 + 34.49821229 / 60, 10);
    expect(s.lon).toBeCloseTo(-(93 + 45.03351845 / 60), 10);
    expect(s.speedMps).toBeCloseTo(3.252 * KNOTS_TO_MPS, 10);
    expect(s.date).toEqual({ year: 2020, month: 3, day: 18 });
  });

  it('reads a GGA: quality, satellites, HDOP, altitude and geoid height; empty quality is -1', () => {
    const s = gga(corpusLine('ac12.log', '$GPGGA,193221.00'));
    // $GPGGA,193221.00,2037.72792,N,08704.08478,W,1,04,1.7,-30.40,M,-13.9,M,,*7D
    expect(s).toMatchObject({ quality: 1, sats: 4, hdop: 1.7, altM: -30.4, geoidSepM: -13.9 });
    expect(gga(withChecksum('GPGGA,120000,3415.6,N,10856.4,E,,08,1.0,400,M,,M,,')).quality).toBe(-1);
  });

  it('takes any status other than A as V, and an empty RMC as no position', () => {
    expect(rmc(withChecksum('GPRMC,120000,X,3415.6,N,10856.4,E,0,0,010124,,')).status).toBe('V');
    expect(rmc(withChecksum('GPRMC,,V,,,,,,,,,,N'))).toMatchObject({ status: 'V', mode: 'N', lat: null, lon: null, date: null, timeOfDayMs: null });
  });

  it('decodes GLL, GNS, GSA, VTG and ZDA into their typed forms', () => {
    expect(sentence(withChecksum('GPGLL,4916.45,N,12311.12,W,225444,A,A'))).toMatchObject({ type: 'GLL', status: 'A', mode: 'A', timeOfDayMs: ms(22, 54, 44) });
    expect(sentence(withChecksum('GNGNS,224749.00,3333.4268304,N,11153.3538273,W,D,19,0.6,406.110,-26.294,6.0,0138,S'))).toMatchObject({
      type: 'GNS',
      modes: 'D',
      sats: 19,
      altM: 406.11,
      geoidSepM: -26.294,
      navStatus: 'S',
    });
    expect(sentence(withChecksum('GNGSA,A,3,13,12,22,19,08,21,,,,,,,1.05,0.64,0.83,4'))).toMatchObject({ type: 'GSA', fixMode: 3, pdop: 1.05, hdop: 0.64, vdop: 0.83 });
    expect(sentence(withChecksum('GPVTG,054.7,T,034.4,M,005.5,N,010.2,K,A'))).toMatchObject({ type: 'VTG', trackDeg: 54.7, magneticTrackDeg: 34.4, mode: 'A' });
    expect(sentence(withChecksum('GPZDA,160012.71,11,03,2004,-1,00'))).toMatchObject({ type: 'ZDA', day: 11, month: 3, year: 2004, nanos: 710_000_000 });
  });

  it("reads Quectel's $PQGSA as a GSA, and $PGRMC (Garmin's configuration echo) not as an RMC", () => {
    expect(sentence(withChecksum('PQGSA,A,3,12,,,,,,,,,,,,1.2,0.9,0.9,4'))).toMatchObject({ type: 'GSA', talker: 'PQ' });
    expect(sentence(withChecksum('PGRMC,A,218.8,100,6378137.000,298.257223563,0.0,0.0,0.0,A,3,1,1,4,30'))).toMatchObject({ type: 'other', talker: 'P', formatter: 'GRMC' });
  });

  it('keeps every field in place, past the end reading as empty', () => {
    const s = sentence(corpusLine('beidou-bd.log', '$GPGSV,7,1'));
    expect(s).toMatchObject({ type: 'other', talker: 'GP', formatter: 'GSV', address: 'GPGSV' });
    expect(s.fields.text(0)).toBe('GPGSV');
    expect(s.fields.text(1)).toBe('7');
    expect(s.fields.count).toBe(s.fields.toArray().length);
    expect(s.fields.text(99)).toBe('');
    expect(s.fields.isEmpty(99)).toBe(true);
  });
});

describe('checksum', () => {
  it('rejects a wrong checksum, saying what was expected and what came', () => {
    const good = corpusLine('haicom-305N.log', '$GPRMC,095304.802,A').trimEnd(); // ...*78
    const e = error(`${good.slice(0, -2)}79\r\n`);
    expect(e.kind).toBe('checksum');
    expect(e.error).toContain('expected 78, got 79');
  });

  it('rejects a missing or one-digit checksum, saying what it should have been', () => {
    const e = error('$GPRMC,095304.802,A,2712.6520,S,15303.1397,E,0.00,133.96,080407,,,A\r\n');
    expect(e.kind).toBe('checksum');
    expect(e.error).toMatch(/expected \*78, got none/);
    expect(error('$GPRMC,095304.802,A,2712.6520,S,15303.1397,E,0.00,133.96,080407,,,A*7\r\n').kind).toBe('checksum');
  });

  it('accepts lower-case hex digits (Magellan EC-10X) and ignores what follows the checksum, as gpsd does', () => {
    const line = corpusLine('beidou-bd.log', '$GPGSV,7,5').replace('*7F', '*7f');
    expect(sentence(line).formatter).toBe('GSV');
    expect(sentence(withChecksum('GPGSA,A,3,10,28,09,13,,,,,,,,,03.4,01.7,03.0').replace('\r\n', ' tail\r\n')).type).toBe('GSA');
  });

  it("lets Skytraq's $STI through without a checksum, as gpsd does", () => {
    expect(sentence('$STI,IC,0\r\n').talker).toBe('ST');
  });
});

describe('framing, as gpsd frames it', () => {
  it('rejects a line without a $ (the tail of a sentence cut by the port opening)', () => {
    expect(error('4.4343,N,01025.5386,E,200002,A,D*48\r\n')).toMatchObject({ kind: 'framing' });
  });

  it('rejects non-ASCII bytes (wrong baud rate, binary protocol) and a carriage return inside the line', () => {
    const e = error('$GPRMC,000346.03,A,4808\x00\x00\xff\xfe*12\r\n');
    expect(e.kind).toBe('framing');
    expect(e.error).toMatch(/baud rate/);
    expect(error(`${withChecksum('GPGSA,A,1,,,,,,,,,,,,,,,').trimEnd()}\rjunk\r\n`).kind).toBe('framing');
  });

  it("starts the sentence at the last '$': ST Teseo's '$$GNRMC', junk, and a sentence cut by another", () => {
    const s = rmc(corpusLine('st-teseo-liv4f.log', '$$GNRMC,135806.000'));
    expect(s.lat).toBeCloseTo(47 + 23.00484 / 60, 9);
    expect(rmc(`\x00\xffjunk ${withChecksum('GPRMC,,V,,,,,,,,,,N')}`).status).toBe('V');
    // Magellan Triton 400: a GGA cut off by the next sentence.
    expect(sentence(corpusLine('triton400.log', '$GPGGA,030130$GPGLL')).type).toBe('GLL');
  });

  it('accepts the talkers gpsd knows and refuses the others', () => {
    for (const talker of ['GP', 'GN', 'GL', 'GA', 'GB', 'BD', 'QZ', 'GY', 'II', 'IN', 'WI', 'HC', 'HE', 'SD', 'SN', 'TI', 'YX', 'EC', 'AP']) {
      expect(sentence(withChecksum(`${talker}XDR,A,0,D,PITCH`)).talker).toBe(talker);
    }
    expect(sentence(withChecksum('PGRME,15.0,M,22.5,M,27.0,M'))).toMatchObject({ talker: 'P', formatter: 'GRME' });
    expect(error(withChecksum('GIGSV,1,1,01,01,40,083,46')).error).toMatch(/not a talker gpsd knows/);
    expect(error(withChecksum('LOG108,1,100')).kind).toBe('framing');
    expect(error(withChecksum('P1ABC,1')).kind).toBe('framing');
  });

  it('reads AIS reports (!AIVDM, $AIVDM) as their own type, checksummed, without the 130-character limit', () => {
    const body = 'AIVDM,1,1,,A,13u?etPv2;0n:dDPwUM1U1Cb069D,0';
    const bang = `!${body}*${hex2(nmeaChecksum(body))}\r\n`;
    expect(sentence(bang)).toMatchObject({ type: 'AIS', address: 'AIVDM' });
    expect(sentence(bang).fields.text(5)).toBe('13u?etPv2;0n:dDPwUM1U1Cb069D');
    expect(sentence(withChecksum(body)).type).toBe('AIS');
    expect(error(bang.replace('*', '*0')).kind).toBe('checksum');
    expect(error(`!XXVDM,1*00\r\n`).kind).toBe('framing');
  });

  it("drops sentences longer than gpsd's 130 characters, line end included (two sentences run together)", () => {
    const txt = (n: number) => withChecksum(`GPTXT,01,01,02,${'x'.repeat(n - 15)}`); // a body of n characters
    expect(txt(124)).toHaveLength(130);
    expect(parseSentence(txt(124))).not.toHaveProperty('error');
    expect(error(txt(125)).error).toMatch(/131 characters, more than 130/);
    // The same sentence with only LF at the end is one character shorter, as gpsd counts it.
    expect(parseSentence(txt(125).replace('\r\n', '\n'))).not.toHaveProperty('error');
  });
});

describe("fields read the way gpsd's NMEA driver reads them", () => {
  it('atoi and atof stop at the first character that is not part of a number', () => {
    expect(atoi('08')).toBe(8);
    expect(atoi('8.5')).toBe(8);
    expect(atoi('')).toBe(0);
    expect(atoi(' -12x')).toBe(-12);
    expect(atof('12.5M')).toBe(12.5);
    expect(atof('-.5')).toBe(-0.5);
    expect(atof('1e2')).toBe(100);
    expect(atof('')).toBeNaN();
    expect(atof('M')).toBeNaN();
    expect(atof('0.051')).toBe(0.051);
  });

  it('positions: minutes split with integer arithmetic, no decimal point is no value, no range check', () => {
    expect(nmeaAngle('4807.038')).toBe((2887 + 0.038) * (1 / 60));
    expect(nmeaAngle('12118.8472460')).toBeCloseTo(121 + 18.847246 / 60, 12);
    expect(nmeaAngle('4807')).toBeNaN();
    expect(nmeaAngle('.5')).toBeCloseTo(0.5 / 60, 15);
    // MTK's cold-start placeholder: 89°60' is more than 90° and is dropped later, with the fix check.
    expect(nmeaAngle('8960.000000')).toBeCloseTo(90, 12);
  });

  it('times: six digits, any values, the fraction scaled by its length', () => {
    expect(hhmmss('123519')).toBe(123519);
    expect(hhmmss('12:35:19')).toBe(-1);
    expect(hhmmss('12351')).toBe(-1);
    expect(nanosOf('123519.5')).toBe(500_000_000);
    expect(nanosOf('123519.005')).toBe(5_000_000);
    expect(nanosOf('123519')).toBe(0);
  });

  it('dates: two-digit years 69..99 are 19xx and 00..68 20xx; month and day ranges checked', () => {
    expect(ddmmyy('231207')).toEqual({ year: 2007, month: 12, day: 23 });
    expect(ddmmyy('010169')).toEqual({ year: 1969, month: 1, day: 1 });
    expect(ddmmyy('311268')).toEqual({ year: 2068, month: 12, day: 31 });
    expect(ddmmyy('321207')).toBeNull();
    expect(ddmmyy('011307')).toBeNull();
    // Telit HE910 after the April 2019 rollover: year "-1".
    expect(ddmmyy('0604-1')).toBeNull();
  });
});

describe('the whole gpsd corpus', () => {
  const logs = readdirSync(fileURLToPath(CORPUS)).filter((f) => f.endsWith('.log'));

  it('parses every line of every capture without throwing', () => {
    let sentences = 0;
    for (const log of logs) {
      for (const line of corpusLines(log)) {
        if (line.startsWith('#')) continue;
        const r: ParsedSentence | NmeaError = parseSentence(line);
        if (!('error' in r)) sentences++;
      }
    }
    expect(sentences).toBeGreaterThan(CORPUS_IS_VENDORED ? 15_000 : 0);
  });

  // In each .chk file gpsd prints, after the sentence that triggered it, the
  // TPV it reported; after a valid RMC that TPV carries the RMC's position.
  it("decodes positions exactly as gpsd does: every RMC and GGA position gpsd reports, to 1e-9 degrees", () => {
    let compared = 0;
    for (const log of logs) {
      const lines = corpusLines(`${log}.chk`);
      lines.forEach((line, i) => {
        const tpv = tpvAfter(lines, i);
        if (!/^\$..(RMC|GGA),/.test(line) || !tpv || tpv.lat === undefined || tpv.lon === undefined) return;
        const s = parseSentence(line);
        if ('error' in s || (s.type !== 'RMC' && s.type !== 'GGA') || s.lat === null || s.lon === null) return;
        if (s.type === 'RMC' && s.status !== 'A') return;
        // gpsd prints 9 decimals: the same double rounds to the same text.
        expect(s.lat.toFixed(9), `${log}: ${line}`).toBe(tpv.lat.toFixed(9));
        expect(s.lon.toFixed(9), `${log}: ${line}`).toBe(tpv.lon.toFixed(9));
        compared++;
      });
    }
    if (CORPUS_IS_VENDORED) expect(compared).toBeGreaterThan(800);
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
