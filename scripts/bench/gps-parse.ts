// gps-parse: NMEA sentences per second over the whole GPS corpus (68
// receivers), for busguard's reader and for the two npm parsers the issue
// names, in the same run on the same pre-split lines (no I/O measured):
//   busguard     parseSentence (checksum verified) + FixAssembler (cycle merging)
//   nmea-simple  parseNmeaSentence (checksum verified; throws on what it refuses)
//   gps          GPS#update (parses and updates its navigation state)
// Each parser runs ROUNDS times, interleaved; the median round is reported.

import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import GPS from 'gps';
import { parseNmeaSentence } from 'nmea-simple';
import { FixAssembler } from '../../hal/gps/fix-assembler.ts';
import { parseSentence } from '../../hal/gps/nmea.ts';
import { round } from './stats.ts';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 7);
export const CORPUS_DIR = process.env.BUSGUARD_GPS_CORPUS ?? fileURLToPath(new URL('../../test/fixtures/gps-corpus/', import.meta.url));

/** Each log as its sentence lines: comments and blank lines dropped, line endings stripped. */
export function corpusSentences(dir = CORPUS_DIR): string[][] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.log'))
    .sort()
    .map((f) =>
      readFileSync(join(dir, f), 'latin1')
        .split('\n')
        .map((l) => l.replace(/\r$/, ''))
        .filter((l) => l !== '' && !l.startsWith('#')),
    );
}

type Runner = (logs: string[][]) => number;

const runners: Record<string, Runner> = {
  busguard(logs) {
    let fixes = 0;
    for (const lines of logs) {
      const asm = new FixAssembler();
      for (const line of lines) {
        const r = parseSentence(line);
        if (!('error' in r)) fixes += asm.push(r).length;
      }
      if (asm.flush()) fixes++;
    }
    return fixes;
  },
  nmea_simple(logs) {
    let parsed = 0;
    for (const lines of logs) {
      for (const line of lines) {
        try {
          parseNmeaSentence(line);
          parsed++;
        } catch {
          // refused: unknown type, bad checksum, malformed
        }
      }
    }
    return parsed;
  },
  gps(logs) {
    let parsed = 0;
    for (const lines of logs) {
      const g = new GPS();
      for (const line of lines) {
        try {
          if (g.update(line)) parsed++;
        } catch {
          // refused
        }
      }
    }
    return parsed;
  },
};

export async function run(): Promise<Record<string, unknown>> {
  const logs = corpusSentences();
  const sentences = logs.reduce((n, l) => n + l.length, 0);
  process.stderr.write(`gps-parse: ${sentences} sentence lines from ${logs.length} logs, ${ROUNDS} rounds each, interleaved\n`);
  const times: Record<string, number[]> = { busguard: [], nmea_simple: [], gps: [] };
  const outputs: Record<string, number> = {};
  // One warm-up round each, so the JIT has seen every parser before timing.
  for (const [name, fn] of Object.entries(runners)) outputs[name] = fn(logs);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, fn] of Object.entries(runners)) {
      const t0 = performance.now();
      fn(logs);
      times[name]!.push(performance.now() - t0);
    }
  }
  const perS = (name: string) => {
    const sorted = [...times[name]!].sort((a, b) => a - b);
    return Math.round(sentences / (sorted[Math.floor(sorted.length / 2)]! / 1000));
  };
  const result = {
    bench: 'gps-parse',
    sentences,
    busguard_per_s: perS('busguard'),
    nmea_simple_per_s: perS('nmea_simple'),
    gps_per_s: perS('gps'),
  };
  const faster = Math.max(result.nmea_simple_per_s, result.gps_per_s);
  process.stderr.write(
    `busguard fixes ${outputs.busguard}, nmea-simple accepted ${outputs.nmea_simple}, gps accepted ${outputs.gps}\n` +
      `target: busguard ≥ 2 × faster peer (${2 * faster}/s): ${result.busguard_per_s >= 2 * faster ? 'met' : 'NOT met'} (${round(result.busguard_per_s / faster)}×)\n`,
  );
  return result;
}
