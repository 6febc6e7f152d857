// `busguard gps replay` as a fleet technician runs it: the real CLI in a
// child process, over every capture of the GPS corpus in one invocation.
// What it prints must agree with gpsd's own reports (the .chk files) by the
// same three figures as the corpus test, so the command shows exactly what
// the bus would send.

import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { agreement, agrees, parseChk, sumAgreements, matchedPct, timePct } from '../../hal/gps/conformance.ts';
import { hex2, nmeaChecksum } from '../../hal/gps/nmea.ts';
import { CORPUS_DIR, corpusLogs } from '../helpers/corpus.ts';

const BIN = fileURLToPath(new URL('../../bin/busguard.js', import.meta.url));

function busguard(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

interface Record {
  source: string;
  time?: string;
  lat: number;
  lon: number;
  mode: number;
  altHAE?: number;
  speed?: number;
  track?: number;
}

const s = (body: string) => `$${body}*${hex2(nmeaChecksum(body))}\r\n`;

describe('busguard gps replay', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'busguard-replay-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('--json over the whole corpus in one run: one line per fix, and the lines agree with gpsd on every capture', async () => {
    const logs = corpusLogs();
    const paths = logs.map((l) => join(CORPUS_DIR, l));
    const { code, stdout, stderr } = await busguard(['gps', 'replay', '--json', ...paths]);
    // One capture in the corpus never gets a fix (a u-blox LEA-5Q without
    // lock): stderr says why, stdout stays fixes only.
    const noFix = join(CORPUS_DIR, 'ublox-lea-5q.log');
    expect(stderr).toBe(
      `${noFix}: no 2D/3D fix; 63 lines read: 63 valid NMEA sentences, 0 failed their checksum, 0 not NMEA at all; 5 comment lines skipped\n` +
        '  why: every position sentence said there was no fix (9 GGA with quality 0, 9 GLL with status V, 9 RMC with status V): ' +
        'the receiver had no satellite lock when this was captured; check its antenna and its view of the sky, and give a cold start a few minutes\n',
    );
    expect(code).toBe(0);
    const bySource = new Map<string, Record[]>();
    for (const line of stdout.split('\n')) {
      if (!line) continue;
      const r = JSON.parse(line) as Record;
      expect(Object.keys(r).every((k) => ['source', 'time', 'lat', 'lon', 'mode', 'altHAE', 'speed', 'track'].includes(k))).toBe(true);
      expect([2, 3]).toContain(r.mode);
      if (r.time !== undefined) expect(r.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      const list = bySource.get(r.source) ?? [];
      list.push(r);
      bySource.set(r.source, list);
    }
    const results = paths.map((path, i) => {
      const gpsd = parseChk(readFileSync(`${path}.chk`, 'latin1'));
      const mine = (bySource.get(path) ?? []).map((r) => ({ mode: r.mode, lat: r.lat, lon: r.lon, time: r.time ? new Date(r.time) : null }));
      const a = agreement(gpsd, mine);
      expect(agrees(a), `${logs[i]}: ${a.matched}/${a.gpsdPositions} matched, ${a.invented} invented, ${a.timeAgreed}/${a.timed} timed`).toBe(true);
      return a;
    });
    const total = sumAgreements(results);
    expect({ matched: matchedPct(total), invented: total.invented, time: timePct(total) }).toEqual({ matched: 100, invented: 0, time: 100 });
  }, 180_000);

  it('skips comments and junk, keys only what is known, and prints a table without --json', async () => {
    const capture = join(dir, 'bus-17.nmea');
    await writeFile(
      capture,
      [
        '# bus 17, receiver under the dashboard\r\n',
        'garbage\x00\xff\r\n',
        s('GPGGA,120000,3415.6600,N,10856.4000,E,1,09,0.9,405.0,M,-28.0,M,,'), // no date yet: no time
        s('GPRMC,120001,A,3415.6700,N,10856.4100,E,15.55,90.0,200524,,,A'),
        s('GPGGA,120001,3415.6700,N,10856.4100,E,1,09,0.9,405.0,M,-28.0,M,,'),
        s('PUBX,00,foo'), // proprietary: skipped
      ].join(''),
      'latin1',
    );
    const json = await busguard(['gps', 'replay', '--json', capture]);
    expect(json.code).toBe(0);
    const records = json.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record);
    expect(records[0]).toEqual({ source: capture, lat: 34.261, lon: 108.94, mode: 3, altHAE: 377 });
    const last = records.at(-1)!;
    expect(last).toMatchObject({ source: capture, time: '2024-05-20T12:00:01.000Z', mode: 3, altHAE: 377, track: 90 });
    expect(last.lat).toBeCloseTo(34 + 15.67 / 60, 9);
    expect(last.speed).toBeCloseTo(15.55 * 0.514444, 3);

    const table = await busguard(['gps', 'replay', capture]);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toBe(`${capture}: ${records.length} fix(es)`);
    expect(lines[1]).toMatch(/time \(UTC\)\s+mode\s+lat\s+lon\s+altHAE m\s+speed m\/s\s+track/);
    expect(lines.at(-1)).toMatch(/^ {2}2024-05-20T12:00:01\.000Z\s+3D\s+34\.2611667\s+108\.9401667\s+377\.0\s+8\.00\s+90\.0$/);
  }, 60_000);

  describe('a capture without a 2D/3D fix: what was read and why there is no fix, on stderr', () => {
    const cases: Array<{ name: string; content: string | Buffer; read: string; why: RegExp }> = [
      { name: 'empty.nmea', content: '', read: '0 lines read: 0 valid NMEA sentences, 0 failed their checksum, 0 not NMEA at all', why: /^the file is empty$/ },
      {
        name: 'comments.nmea',
        content: '# nothing recorded\r\n\r\n',
        read: '0 lines read: 0 valid NMEA sentences, 0 failed their checksum, 0 not NMEA at all; 1 comment line skipped',
        why: /^the file has no data, only comments and blank lines$/,
      },
      {
        name: 'garbage.bin',
        content: Buffer.from([0xb5, 0x62, 0x01, 0x07, 0x5c, 0x00, 0x0a, 0xff, 0x00, 0x24, 0x0d, 0x0a, 0x41, 0x42, 0x0a, 0x0d, 0x0a, 0x00]),
        read: '4 lines read: 0 valid NMEA sentences, 0 failed their checksum, 4 not NMEA at all',
        why: /^no line is an NMEA sentence: binary data or another protocol; check that the receiver was in NMEA mode and the capture was read at its baud rate$/,
      },
      {
        name: 'bad-checksums.nmea',
        content: [
          '$GPRMC,120001,A,3415.6700,N,10856.4100,E,15.55,90.0,200524,,,A*00\r\n',
          '$GPGGA,120001,3415.6700,N,10856.4100,E,1,09,0.9,405.0,M,-28.0,M,,*00\r\n',
          '$GPGGA,120002,3415.6700,N,10856.4100,E,1,09,0.9,405.0,M,-28.0,M,,\r\n', // cut before its checksum
        ].join(''),
        read: '3 lines read: 0 valid NMEA sentences, 3 failed their checksum, 0 not NMEA at all',
        why: /^no sentence passed its checksum \(3 failed\): line noise or a wrong baud rate when it was captured, or the file was edited by hand$/,
      },
      {
        name: 'no-lock.nmea',
        content: [0, 1, 2]
          .map((i) => s(`GPRMC,12000${i},V,,,,,,,200524,,,N`) + s(`GPGGA,12000${i},,,,,0,00,99.9,,M,,M,,`) + s('GPGSV,1,1,00'))
          .concat(['$GPGSA,A,1*XX\r\n', 'noise\r\n'])
          .join(''),
        read: '11 lines read: 9 valid NMEA sentences, 1 failed their checksum, 1 not NMEA at all',
        why: /^every position sentence said there was no fix \(3 GGA with quality 0, 3 RMC with status V\): the receiver had no satellite lock when this was captured; check its antenna/,
      },
      {
        name: 'no-position.nmea',
        content: [0, 1].map((i) => s('GPGSV,1,1,00') + s('GPGSA,A,1,,,,,,,,,,,,,99.9,99.9,99.9') + s(`GPZDA,12000${i},20,05,2024,,`)).join(''),
        read: '6 lines read: 6 valid NMEA sentences, 0 failed their checksum, 0 not NMEA at all',
        why: /^no position sentence \(GGA, RMC, GLL, GNS\) at all; the valid sentences were 2 GSA, 2 GSV, 2 ZDA/,
      },
    ];

    it.each(cases)('$name', async ({ name, content, read, why }) => {
      const file = join(dir, name);
      await writeFile(file, content);
      const table = await busguard(['gps', 'replay', file]);
      expect(table.code).toBe(0); // the file was read; "no fix" is its answer
      expect(table.stdout).toBe(`${file}: 0 fix(es)\n`);
      const [head, reason, ...rest] = table.stderr.split('\n');
      expect(head).toBe(`${file}: no 2D/3D fix; ${read}`);
      expect(reason).toMatch(/^ {2}why: /);
      expect(reason?.slice('  why: '.length)).toMatch(why);
      expect(rest).toEqual(['']);

      // --json: stdout is JSON lines of fixes only (none here), the summary goes to stderr.
      const json = await busguard(['gps', 'replay', '--json', file]);
      expect(json).toEqual({ code: 0, stdout: '', stderr: table.stderr });
    }, 60_000);

    it('a capture with fixes prints no summary, and one without among others gets its own', async () => {
      const good = join(dir, 'good.nmea');
      const silent = join(dir, 'silent.nmea');
      await writeFile(good, s('GPRMC,120001,A,3415.6700,N,10856.4100,E,15.55,90.0,200524,,,A'));
      await writeFile(silent, '');
      const { code, stdout, stderr } = await busguard(['gps', 'replay', '--json', good, silent]);
      expect(code).toBe(0);
      expect(stdout.trim().split('\n').map((l) => (JSON.parse(l) as Record).source)).toEqual([good]);
      expect(stderr).toBe(`${silent}: no 2D/3D fix; 0 lines read: 0 valid NMEA sentences, 0 failed their checksum, 0 not NMEA at all\n  why: the file is empty\n`);
    }, 60_000);
  });

  it('says which file it could not read, goes on with the others, and exits 1', async () => {
    const good = join(CORPUS_DIR, corpusLogs()[0]!);
    const { code, stdout, stderr } = await busguard(['gps', 'replay', '--json', join(dir, 'missing.log'), good]);
    expect(code).toBe(1);
    expect(stderr).toContain(`cannot read ${join(dir, 'missing.log')} (ENOENT)`);
    expect(stdout.split('\n').filter(Boolean).length).toBeGreaterThan(0);
  }, 60_000);
});
