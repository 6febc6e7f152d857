// `busguard gps replay [--json] FILE...`: what busguard's reader makes of a
// receiver capture, for a fleet technician diagnosing a receiver. The capture
// goes through the same parser and cycle assembler as the live serial reader
// (hal/gps/replay.ts), so what this prints is what the bus would send.

import { readFile } from 'node:fs/promises';
import { gpsfakeFeed } from '../hal/gps/conformance.ts';
import { describeRead, emptyReplayStats, replayNmea, whyNoFix } from '../hal/gps/replay.ts';
import type { GpsFix } from '../hal/gps/types.ts';

/** `v` rounded to `digits` decimals: gpsd's own precision (9 for degrees, 3 for metres), not float noise. */
const round = (v: number, digits: number) => Number(v.toFixed(digits));

/** The JSON line for one fix; keys only when known, as gpsd does. */
export function replayRecord(source: string, f: GpsFix): Record<string, unknown> {
  const r: Record<string, unknown> = { source };
  if (f.time) r.time = f.time.toISOString();
  r.lat = round(f.lat, 9);
  r.lon = round(f.lon, 9);
  r.mode = f.mode;
  if (f.altHAE !== null && f.altHAE !== undefined) r.altHAE = round(f.altHAE, 3);
  if (f.speedMps !== null) r.speed = round(f.speedMps, 3);
  if (f.trackDeg !== null) r.track = round(f.trackDeg, 4);
  return r;
}

/**
 * The fixes worth a line: 2D and 3D ones, without a line that would repeat
 * the one before word for word (gpsd re-reports a fix when a later sentence
 * of the cycle changes only what is not printed here, such as an error estimate).
 */
export function replayRecords(source: string, fixes: GpsFix[]): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  let last = '';
  for (const f of fixes) {
    if (f.mode < 2) continue;
    const r = replayRecord(source, f);
    const key = JSON.stringify(r);
    if (key === last) continue;
    last = key;
    out.push(r);
  }
  return out;
}

const fmt = (v: number | null | undefined, digits: number, width: number) => (v === null || v === undefined ? '-' : v.toFixed(digits)).padStart(width);

export async function gpsReplayCommand(files: string[], opts: { json: boolean }): Promise<number> {
  let failed = 0;
  for (const file of files) {
    let data: Buffer;
    try {
      data = await readFile(file);
    } catch (err) {
      process.stderr.write(`busguard gps replay: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})\n`);
      failed++;
      continue;
    }
    // A capture from gpsd's regression suite may mark packet boundaries with
    // a Delay-Cookie separator: gpsfake strips it before feeding, so do we.
    const stats = emptyReplayStats();
    const records = replayRecords(file, replayNmea(gpsfakeFeed(data.toString('latin1')), { stats }));
    stats.bytes = data.length; // the file's size, not what is left once gpsfake's header is cut: "empty" means the file
    // "0 fix(es)" alone leaves a technician guessing between a dead
    // receiver, a wrong baud rate and the wrong file: say what was read and
    // why it gave no fix. On stderr in both modes: --json's stdout stays one
    // JSON line per fix for the programs that read it. The exit code stays 0:
    // the capture was read, and "no fix" is its answer.
    if (records.length === 0) process.stderr.write(`${file}: no 2D/3D fix; ${describeRead(stats)}\n  why: ${whyNoFix(stats)}\n`);
    if (opts.json) {
      process.stdout.write(records.map((r) => `${JSON.stringify(r)}\n`).join(''));
      continue;
    }
    process.stdout.write(`${file}: ${records.length} fix(es)\n`);
    if (records.length === 0) continue;
    process.stdout.write(`  ${'time (UTC)'.padEnd(24)} mode ${'lat'.padStart(12)} ${'lon'.padStart(13)} ${'altHAE m'.padStart(9)} ${'speed m/s'.padStart(9)} ${'track'.padStart(6)}\n`);
    for (const r of records) {
      const n = (k: string) => r[k] as number | undefined;
      process.stdout.write(
        `  ${((r.time as string | undefined) ?? '(no date)').padEnd(24)} ${`${r.mode}D`.padStart(4)} ${fmt(n('lat'), 7, 12)} ${fmt(n('lon'), 7, 13)} ${fmt(n('altHAE'), 1, 9)} ${fmt(n('speed'), 2, 9)} ${fmt(n('track'), 1, 6)}\n`,
      );
    }
  }
  return failed ? 1 : 0;
}
