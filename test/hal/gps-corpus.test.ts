// busguard's GPS reader held against gpsd on gpsd's own regression corpus
// (test/fixtures/gps-corpus, or BUSGUARD_GPS_CORPUS): every capture goes
// through the reader's parser and assembler (replayNmea), and what comes out
// is compared with the TPV reports gpsd wrote for the same bytes. Target:
// every gpsd position reported, none invented, every timed fix agreeing in
// position and 2D/3D mode (figures defined in hal/gps/conformance.ts).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { type Agreement, agreement, agrees, gpsfakeFeed, matchedPct, parseChk, sumAgreements, timePct } from '../../hal/gps/conformance.ts';
import { hex2, nmeaChecksum } from '../../hal/gps/nmea.ts';
import { replayNmea } from '../../hal/gps/replay.ts';
import { CORPUS, CORPUS_DIR, corpusLogs } from '../helpers/corpus.ts';

/**
 * The copy in the repository is held to its size, so that losing captures
 * cannot pass for agreement; a folder given by BUSGUARD_GPS_CORPUS (further
 * logs of gpsd's suite) is checked log by log, whatever its size.
 */
const VENDORED = CORPUS.href === new URL('../fixtures/gps-corpus/', import.meta.url).href;

function agreementFor(log: string): Agreement {
  const gpsd = parseChk(readFileSync(join(CORPUS_DIR, `${log}.chk`), 'latin1'));
  return agreement(gpsd, replayNmea(gpsfakeFeed(readFileSync(join(CORPUS_DIR, log), 'latin1'))));
}

function explain(log: string, a: Agreement): string {
  return [
    `${log}: ${a.matched}/${a.gpsdPositions} positions, ${a.invented} invented, ${a.timeAgreed}/${a.timed} timed fixes`,
    ...a.missedExamples.map((p) => `  missed ${p}`),
    ...a.inventedExamples.map((p) => `  invented ${p}`),
    ...a.timeExamples.map((t) => `  at ${t}`),
  ].join('\n');
}

describe('busguard against gpsd on the GPS corpus', () => {
  const logs = corpusLogs();
  const results = new Map<string, Agreement>();

  it('has the corpus: dozens of receivers, each with what gpsd made of it', () => {
    expect(logs.length).toBeGreaterThanOrEqual(VENDORED ? 60 : 1);
  });

  it.each(logs)('%s: reports what gpsd reports', (log) => {
    const a = agreementFor(log);
    results.set(log, a);
    expect(agrees(a), explain(log, a)).toBe(true);
  });

  it('overall: 100 % of gpsd positions matched, none invented, 100 % of timed fixes agree', () => {
    for (const log of logs) if (!results.has(log)) results.set(log, agreementFor(log));
    const total = sumAgreements([...results.values()]);
    if (VENDORED) expect(total.gpsdPositions).toBeGreaterThan(700);
    expect({ matched: matchedPct(total), invented: total.invented, time: timePct(total) }).toEqual({ matched: 100, invented: 0, time: 100 });
  });
});

describe('the agreement figures', () => {
  const tpv = (mode: number, time: string | null, lat?: number, lon?: number) =>
    JSON.stringify({ class: 'TPV', mode, ...(time ? { time } : {}), ...(lat === undefined ? {} : { lat, lon }) });
  const chk = [
    '$GPGGA,...',
    tpv(3, null, 20.628798667, -87.068079667),
    '{"class":"SKY","hdop":1.70}',
    tpv(3, '2007-12-23T19:32:21.000Z', 20.628798333, -87.06808),
    tpv(1, '2007-12-23T19:32:22.000Z'),
  ].join('\n');
  const gpsd = parseChk(chk);
  const at = (iso: string) => new Date(iso);

  it('reads the TPV reports of a .chk file, positions only with a 2D/3D mode', () => {
    expect(gpsd).toEqual([
      { mode: 3, timeMs: null, lat: 20.628798667, lon: -87.068079667 },
      { mode: 3, timeMs: Date.parse('2007-12-23T19:32:21.000Z'), lat: 20.628798333, lon: -87.06808 },
      { mode: 1, timeMs: Date.parse('2007-12-23T19:32:22.000Z'), lat: null, lon: null },
    ]);
  });

  it('agrees with a reader that reports the same, within 1e-6 degrees', () => {
    const a = agreement(gpsd, [
      { mode: 3, lat: 20.6287987, lon: -87.0680797, time: null },
      { mode: 3, lat: 20.628798333, lon: -87.06808, time: at('2007-12-23T19:32:21.000Z') },
    ]);
    expect(a).toMatchObject({ gpsdPositions: 2, matched: 2, invented: 0, timed: 1, timeAgreed: 1 });
    expect(agrees(a)).toBe(true);
  });

  it('counts a missed position, an invented one, and a timed fix with the wrong mode or time', () => {
    const missed = agreement(gpsd, [{ mode: 3, lat: 20.628798333, lon: -87.06808, time: at('2007-12-23T19:32:21.000Z') }]);
    expect(missed).toMatchObject({ matched: 1, invented: 0 });
    const invented = agreement(gpsd, [
      { mode: 3, lat: 20.628798667, lon: -87.068079667, time: null },
      { mode: 3, lat: 20.628798333, lon: -87.06808, time: at('2007-12-23T19:32:21.000Z') },
      { mode: 2, lat: 20.6288, lon: -87.0681, time: at('2007-12-23T19:32:22.000Z') },
    ]);
    expect(invented).toMatchObject({ matched: 2, invented: 1, timeAgreed: 1 });
    const wrongMode = agreement(gpsd, [
      { mode: 3, lat: 20.628798667, lon: -87.068079667, time: null },
      { mode: 2, lat: 20.628798333, lon: -87.06808, time: at('2007-12-23T19:32:21.000Z') },
    ]);
    expect(wrongMode).toMatchObject({ matched: 2, timeAgreed: 0 }); // the position is there, but 2D where gpsd says 3D
    const wrongTime = agreement(gpsd, [
      { mode: 3, lat: 20.628798667, lon: -87.068079667, time: null },
      { mode: 3, lat: 20.628798333, lon: -87.06808, time: at('2007-12-23T19:32:21.100Z') },
    ]);
    expect(wrongTime).toMatchObject({ matched: 2, timeAgreed: 0 });
    expect([missed, invented, wrongMode, wrongTime].some(agrees)).toBe(false);
  });

  it("feeds a capture as gpsd's test harness did: Delay-Cookie captures lose their separators and their date", () => {
    const plain = '# Date: 2007-12-23\n$GPGGA,1\r\n';
    expect(gpsfakeFeed(plain)).toBe(plain);
    const cookie = '# Date: 2013-11-03\n# Delay-Cookie: | 0.01\n,1.7*7D\n$GPGGA,|19322|1.00,2037.|72792\r\n';
    expect(gpsfakeFeed(cookie)).toBe(',1.7*7D\n$GPGGA,193221.00,2037.72792\r\n');
  });
});

describe('replayNmea', () => {
  const s = (body: string) => `$${body}*${hex2(nmeaChecksum(body))}\r\n`;
  const capture = [
    '# Name: a receiver with the 1024-week bug\r\n',
    'garbage without a dollar\r\n',
    s('GPRMC,120000,A,3415.6600,N,10856.4000,E,0.0,0.0,230700,,,A'),
    s('GPGGA,120000,3415.6600,N,10856.4000,E,1,09,0.9,405.0,M,-28.0,M,,'),
  ].join('');

  it('plays a capture through the live parser and assembler, comments and junk skipped, bytes or text', () => {
    const fixes = replayNmea(Buffer.from(capture, 'latin1'), { now: () => 0 });
    expect(fixes.map((f) => f.mode)).toEqual([2, 3]);
    expect(replayNmea(capture, { now: () => 0 })).toEqual(fixes);
  });

  it("takes a '# Date:' comment as gpsd does: the capture's receiver dates are then not repaired", () => {
    const live = replayNmea(capture)[0]?.time;
    const dated = replayNmea(`# Date: 2000-07-23\n${capture}`)[0]?.time;
    expect(dated).toEqual(new Date('2000-07-23T12:00:00Z'));
    expect(live).toEqual(new Date(Date.UTC(2000, 6, 23, 12) + 1024 * 7 * 86_400_000));
  });

  it("takes only that exact spelling: after '# Date = ' gpsd dates the capture by its clock and repairs it (neo-m8n.log, rst39.log)", () => {
    const live = replayNmea(capture)[0]?.time;
    expect(replayNmea(`# Date = 2000-07-23\n${capture}`)[0]?.time).toEqual(live);
    expect(replayNmea(`# Date:2000-07-23\n${capture}`)[0]?.time).toEqual(live);
  });
});
