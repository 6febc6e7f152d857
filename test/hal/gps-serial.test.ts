// The GPS reader on a real serial line: a corpus capture played back through a
// socat pseudo-terminal pair at the pace of a 9600 baud UART, the pair killed
// and restarted (receiver unplugged and plugged back), a receiver at another
// baud rate than configured, and line noise.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FixAssembler } from '../../hal/gps/fix-assembler.ts';
import { parseSentence } from '../../hal/gps/nmea.ts';
import { NmeaReader, type NmeaReaderStatus } from '../../hal/gps/reader.ts';
import type { GpsFix } from '../../hal/gps/types.ts';
import { until } from '../../scripts/lib/until.ts';
import { closeAfterTest } from '../helpers/close-after-test.ts';
import { CORPUS_DIR } from '../helpers/corpus.ts';
import { NmeaStreamer } from '../helpers/nmea-streamer.ts';
import { serialLineForTest } from '../helpers/serial-pair.ts';

const LOG = 'geos-1m.log';
const lines = readFileSync(join(CORPUS_DIR, LOG), 'latin1')
  .split('\n')
  .map((l) => l.replace(/\r$/, ''))
  .filter((l) => l !== '' && !l.startsWith('#'));

const key = (f: { lat: number; lon: number }) => `${f.lat.toFixed(6)},${f.lon.toFixed(6)}`;

/** What the same parser and assembler make of the capture offline: the positions the live reader must report. */
function offlinePositions(): Set<string> {
  const asm = new FixAssembler({ now: () => 0 });
  const fixes: GpsFix[] = [];
  for (const line of lines) {
    const r = parseSentence(line);
    if (!('error' in r)) fixes.push(...asm.push(r));
  }
  const last = asm.flush();
  if (last) fixes.push(last);
  return new Set(fixes.filter((f) => f.valid).map(key));
}

function collect(r: NmeaReader) {
  const fixes: GpsFix[] = [];
  const statuses: NmeaReaderStatus[] = [];
  r.on('fix', (f) => fixes.push(f));
  r.on('status', (s) => statuses.push(s));
  return { fixes, statuses };
}

describe('GPS reader on a serial line', () => {
  it(`reads ${LOG} streamed at 9600 baud, and comes back by itself when socat is killed and restarted`, async () => {
    const line = await serialLineForTest('gps-serial-');
    const expected = offlinePositions();
    expect(expected.size).toBeGreaterThan(5);
    const streamer = closeAfterTest(new NmeaStreamer({ path: line.pty.a, lines, baudRate: 9600 }));
    await streamer.start();
    const reader = closeAfterTest(new NmeaReader({ path: line.pty.b, baudRate: 9600, reopenMinMs: 100, reopenMaxMs: 1000 }));
    const got = collect(reader);
    reader.start();

    // One whole pass of the capture (~3 s at 9600 baud).
    await until(() => streamer.sent >= lines.length + 5, 15_000, 'one pass of the capture');
    const firstPass = new Set(got.fixes.filter((f) => f.valid).map(key));
    for (const k of firstPass) expect(expected.has(k), `position ${k} not in the capture`).toBe(true);
    for (const k of expected) expect(firstPass.has(k), `position ${k} missed`).toBe(true);
    expect(reader.stats().checksumErrors).toBe(0);

    // Unplugged: the reader says so; plugged back: it reopens and fixes resume.
    const before = got.fixes.length;
    await line.pty.stop();
    await until(() => got.statuses.some((s) => s.state === 'closed'), 10_000, "status 'closed'");
    // Unplugged is a warning (the agent logs gps.closed at this level); the first open was info.
    expect(got.statuses.find((s) => s.state === 'closed')?.level).toBe('warn');
    expect(got.statuses.find((s) => s.state === 'open')?.level).toBe('info');
    await new Promise((r) => setTimeout(r, 500));
    await line.replug();
    await until(() => got.statuses.filter((s) => s.state === 'open').length >= 2, 15_000, "status 'open' again");
    await until(() => got.fixes.length >= before + 3, 15_000, 'fixes after the replug');
    expect(reader.stats().opens).toBeGreaterThanOrEqual(2);
    expect(got.fixes.slice(before).filter((f) => f.valid).some((f) => expected.has(key(f)))).toBe(true);
  });

  it('finds a receiver at 38400 baud when 9600 is configured, and says which rate it found', async () => {
    const { pty } = await serialLineForTest('gps-baud-');
    const streamer = closeAfterTest(new NmeaStreamer({ path: pty.a, lines, baudRate: 38400, peer: pty.b }));
    const reader = closeAfterTest(new NmeaReader({ path: pty.b, baudRate: 9600, baudProbeMs: 800 }));
    const got = collect(reader);
    reader.start();
    await until(() => reader.stats().opens === 1, 5_000, 'the port open');
    await streamer.start();
    await until(() => reader.detectedBaud !== null, 20_000, 'a detected baud rate');
    expect(reader.detectedBaud).toBe(38400);
    expect(streamer.garbled).toBeGreaterThan(0); // it really was noise at 9600
    expect(got.statuses.some((s) => s.state === 'probing' && /no valid NMEA at 9600 baud/.test(s.detail))).toBe(true);
    expect(got.statuses.at(-1)?.detail).toMatch(/valid NMEA at 38400 baud \(configured 9600\)/);
    await until(() => got.fixes.some((f) => f.valid), 10_000, 'a valid fix at 38400');
  });

  it('survives noise, binary bytes, overlong lines and $$ prefixes between real sentences', async () => {
    const { pty } = await serialLineForTest('gps-noise-');
    const dirty: string[] = [];
    for (const [i, l] of lines.entries()) {
      dirty.push(l);
      if (i % 7 === 0) dirty.push('\x00\xff\xfe garbage \x1b[2J');
      if (i % 11 === 0) dirty.push(`$GPGGA,${'9'.repeat(400)}`);
      if (i % 13 === 0) dirty.push(`$$${l.slice(1)}`);
    }
    const streamer = closeAfterTest(new NmeaStreamer({ path: pty.a, lines: dirty, baudRate: 115200 }));
    await streamer.start();
    const reader = closeAfterTest(new NmeaReader({ path: pty.b, baudRate: 115200 }));
    const got = collect(reader);
    reader.start();
    await until(() => streamer.sent >= dirty.length, 15_000, 'one pass of the dirty capture');
    await new Promise((r) => setTimeout(r, 200));
    const expected = offlinePositions();
    const seen = new Set(got.fixes.filter((f) => f.valid).map(key));
    for (const k of expected) expect(seen.has(k), `position ${k} lost in the noise`).toBe(true);
    const stats = reader.stats();
    expect(stats.overlongLines).toBeGreaterThan(0);
    expect(stats.otherErrors + stats.checksumErrors).toBeGreaterThan(0);
  });
});
