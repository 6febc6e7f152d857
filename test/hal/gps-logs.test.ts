// What the GPS reader logs when the receiver is silent, babbles or comes
// back (issue 10, item 9): a silent receiver used to log gps.baud.trying
// every 2.5 s forever, about 1,400 lines an hour. Now the search for a baud
// rate backs off per sweep through the rates, the per-rate line is debug,
// each sweep ends in one summary, and a receiver that starts talking resets
// the backoff. Real socat pty pairs throughout; the hour-long schedule runs
// on fake timers over a real (silent) pty.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { NmeaReader, type NmeaReaderOptions, type NmeaReaderStatus } from '../../hal/gps/reader.ts';
import { until } from '../../scripts/lib/until.ts';
import { closeAfterTest } from '../helpers/close-after-test.ts';
import { CORPUS_DIR } from '../helpers/corpus.ts';
import { NmeaStreamer } from '../helpers/nmea-streamer.ts';
import { type SerialLine, openRawPort, serialLineForTest } from '../helpers/serial-pair.ts';

interface Entry {
  level: number;
  time: number;
  event?: string;
  msg?: string;
  [k: string]: unknown;
}

const DEBUG = 20;
const INFO = 30;
const WARN = 40;

/** A pino logger at debug whose lines land in `entries`, parsed. */
function capture() {
  const entries: Entry[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => void entries.push(JSON.parse(s) as Entry) });
  return { log, entries, of: (event: string) => entries.filter((e) => e.event === event) };
}

describe('GPS reader logs', () => {
  let line: SerialLine;
  beforeEach(async () => {
    line = await serialLineForTest('busguard-gps-logs-');
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  function startReader(log: pino.Logger, opts: Partial<NmeaReaderOptions>): { r: NmeaReader; statuses: NmeaReaderStatus[] } {
    const r = closeAfterTest(new NmeaReader({ path: line.pty.b, baudRate: 9600, log, ...opts }));
    const statuses: NmeaReaderStatus[] = [];
    r.on('status', (s) => statuses.push(s));
    r.start();
    return { r, statuses };
  }

  it('a silent receiver: per-rate lines at debug, one summary per sweep, the dwell doubling per sweep up to its ceiling', async () => {
    const { log, entries, of } = capture();
    const { statuses } = startReader(log, { baudProbeMs: 30, baudProbeMaxMs: 240, noDataTimeoutMs: 150 });
    await until(() => of('gps.baud.none').length >= 5, 8000, () => `five sweeps ${JSON.stringify(entries.map((e) => e.event))}`);

    // Each rate gets 30 ms in the first sweep, 60 in the second... up to 240.
    const trying = of('gps.baud.trying');
    expect(trying.length).toBeGreaterThanOrEqual(20);
    for (const e of trying) expect(e.level, 'gps.baud.trying is debug').toBe(DEBUG);
    const dwells = trying.slice(0, 20).map((e) => e.dwellMs);
    // The k-th switch (1-based) sets the dwell for the rate it switches to; every 4th ends a sweep.
    expect(dwells).toEqual(Array.from({ length: 20 }, (_, i) => Math.min(240, 30 * 2 ** Math.floor((i + 1) / 4))));

    // One summary per sweep, the first a warning that says what failed and what to check.
    const none = of('gps.baud.none').slice(0, 5);
    expect(none.map((e) => e.sweeps)).toEqual([1, 2, 3, 4, 5]);
    expect(none[0]?.level).toBe(WARN);
    expect(none[0]?.msg).toMatch(
      new RegExp(
        `^GPS port ${line.pty.b}: no NMEA at 4800, 9600, 38400 or 115200 baud for \\d+ s \\(0 bytes read, 0 garbage lines\\); ` +
          `still trying, each rate for 0\\.1 s; nothing at all arrives: check the receiver's power and the wire from its TX to our RX$`,
      ),
    );
    // Between warnings the outage at least doubles: the sweeps in between are debug.
    let lastWarn = 0;
    for (const e of none) {
      const outage = e.outageMs as number;
      if (e.level === WARN) {
        expect(lastWarn === 0 || outage >= 2 * lastWarn, `warned at ${outage} ms after ${lastWarn} ms`).toBe(true);
        lastWarn = outage;
      } else {
        expect(e.level).toBe(DEBUG);
        expect(outage).toBeLessThan(2 * lastWarn);
      }
    }

    // What an agent at info level writes: far fewer lines than switches.
    const shown = entries.filter((e) => e.level >= INFO);
    expect(shown.length).toBeLessThanOrEqual(2 + none.filter((e) => e.level === WARN).length + 1);
    // The status goes open → probing → no-data (warn) and stays there: no
    // flip back to 'probing' that would read like a recovery.
    expect(statuses.map((s) => `${s.state}/${s.level}`)).toEqual(['open/info', 'probing/info', 'no-data/warn']);
  });

  it('a receiver sending garbage: the summary counts bytes and garbage lines and says to check its mode and wiring', async () => {
    const { log, of } = capture();
    // Dwells well above the writer's pace on a loaded machine: a dwell without a byte would be a silent line.
    startReader(log, { baudProbeMs: 200, baudProbeMaxMs: 400 });
    const raw = await openRawPort(line.pty.a, 9600);
    // Noise as a receiver at the wrong rate or in a binary mode sends it: a
    // line every few milliseconds, never a '$'.
    let writing = true;
    const noise = (async () => {
      while (writing && raw.isOpen) {
        await new Promise<void>((r) => raw.write(Buffer.from('\x00\xb5\x62 garbage \xff\r\n', 'latin1'), () => raw.drain(() => r())));
        await new Promise((r) => setTimeout(r, 5)); // a receiver's pace, not a wait for anything
      }
    })();
    try {
      await until(() => of('gps.baud.none').length >= 2, 8000, 'two sweeps over garbage');
    } finally {
      writing = false;
      await noise;
    }
    const none = of('gps.baud.none');
    expect(none[0]?.level).toBe(WARN);
    const last = none.at(-1)!;
    expect(last.bytes as number).toBeGreaterThan(0);
    expect(last.garbageLines as number).toBeGreaterThan(0);
    expect(last.msg).toMatch(/\(\d+ bytes read, \d+ garbage lines\); still trying, each rate for 0\.4 s; bytes arrive but no checksummed NMEA at any rate: check that the receiver is in NMEA mode/);
    // A line that never goes quiet does not reset the backoff.
    expect(of('gps.baud.activity')).toHaveLength(0);
    expect(of('gps.baud.trying').map((e) => e.dwellMs)).toContain(400);
  });

  it('a silent receiver that starts talking at another rate resets the backoff and is found at the first pace', async () => {
    const lines = readFileSync(join(CORPUS_DIR, 'geos-1m.log'), 'latin1')
      .split('\n')
      .map((l) => l.replace(/\r$/, ''))
      .filter((l) => l !== '' && !l.startsWith('#'));
    const { log, of, entries } = capture();
    // The simulator learns the reader's speed by polling stty every 100 ms
    // (slower on a loaded machine); a dwell well above that keeps it from
    // writing clean lines to a reader that has already moved on.
    const { r } = startReader(log, { baudProbeMs: 600, baudProbeMaxMs: 4800 });
    // Silent until the dwell has grown to 1.2 s per rate (after one sweep).
    await until(() => of('gps.baud.trying').some((e) => e.dwellMs === 1200), 8000, 'the dwell grown to 1.2 s');
    const streamer = closeAfterTest(new NmeaStreamer({ path: line.pty.a, lines, baudRate: 38400, peer: line.pty.b }));
    const talking = Date.now();
    await streamer.start();
    await until(() => r.detectedBaud !== null, 8000, () => `a detected baud rate ${JSON.stringify(entries.slice(-5))}`);
    const foundMs = Date.now() - talking;
    expect(r.detectedBaud).toBe(38400);
    const activity = of('gps.baud.activity');
    expect(activity).toHaveLength(1);
    expect(activity[0]).toMatchObject({ level: DEBUG, silentDwellMs: 1200, dwellMs: 600 });
    // After the reset each rate gets 600 ms again: 38400 is at most three
    // switches away (1.8 s), not three 1.2 s dwells (3.6 s).
    const after = of('gps.baud.trying').filter((e) => e.time >= (activity[0]?.time ?? 0));
    for (const e of after) expect(e.dwellMs).toBe(600);
    expect(foundMs, 'found within three switches at the first pace, plus the simulator catching up').toBeLessThan(3000);
    expect(of('gps.baud.detected')[0]).toMatchObject({ level: WARN, baudRate: 38400, configured: 9600 });
  });

  it('a silent receiver for hours costs a handful of lines an hour (fake clock over a real silent pty)', async () => {
    const { log, entries } = capture();
    // Only the timers and the clock are fake; the pty is real and silent.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
    const { r, statuses } = startReader(log, {}); // the defaults: 2.5 s, up to 60 s per rate, warnings at most 15 min apart
    // The port opens through the thread pool, not a timer: no clock to advance, just wait for it.
    const first = await new Promise<NmeaReaderStatus>((resolve) => r.once('status', resolve));
    expect(first, 'the reader opened the pty').toMatchObject({ state: 'open', level: 'info' });

    const HOUR = 3_600_000;
    /** Lines an agent logging at info writes: the reader's own at info and above, and one per status event. */
    const linesSince = (t: number, s: number) => entries.filter((e) => e.time >= t && e.level >= INFO).length + statuses.length - s;
    const t0 = Date.now();
    await vi.advanceTimersByTimeAsync(HOUR);
    const firstHour = linesSince(t0, 0);
    const t1 = Date.now();
    const s1 = statuses.length;
    await vi.advanceTimersByTimeAsync(HOUR);
    const secondHour = linesSince(t1, s1);
    const t2 = Date.now();
    const s2 = statuses.length;
    await vi.advanceTimersByTimeAsync(HOUR);
    const thirdHour = linesSince(t2, s2);

    const warned = entries.filter((e) => e.event === 'gps.baud.none' && e.level === WARN).map((e) => Math.round((e.outageMs as number) / 1000));
    // Sweeps of 4 × 2.5, 5, 10, 20, 40 s, then 4 × 60 s: a warning while the
    // outage doubles, then one every fourth sweep (16 min).
    expect(warned.slice(0, 10)).toEqual([10, 30, 70, 150, 310, 790, 1750, 2710, 3670, 4630]);
    expect({ firstHour, secondHour, thirdHour }).toEqual({ firstHour: 13, secondHour: 4, thirdHour: 4 });
    // The search goes on all the while: 60 s per rate.
    const trying = entries.filter((e) => e.event === 'gps.baud.trying');
    expect(trying.at(-1)?.dwellMs).toBe(60_000);
    expect(trying.length).toBeGreaterThan(150);
    expect(statuses.map((s) => `${s.state}/${s.level}`)).toEqual(['open/info', 'probing/info', 'no-data/warn']);
    await r.close(); // on the fake clock still, which its timers were set on
  });
});
