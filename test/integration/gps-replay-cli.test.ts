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
    expect(stderr).toBe('');
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

  it('says which file it could not read, goes on with the others, and exits 1', async () => {
    const good = join(CORPUS_DIR, corpusLogs()[0]!);
    const { code, stdout, stderr } = await busguard(['gps', 'replay', '--json', join(dir, 'missing.log'), good]);
    expect(code).toBe(1);
    expect(stderr).toContain(`cannot read ${join(dir, 'missing.log')} (ENOENT)`);
    expect(stdout.split('\n').filter(Boolean).length).toBeGreaterThan(0);
  }, 60_000);
});
