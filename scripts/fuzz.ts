// `npm run fuzz -- --seconds N`: every parser and MQTT handler of both ends
// (scripts/fuzz-targets.ts) driven with generated input for N seconds, in
// turns. A crash is a broken contract (a throw where none may escape, an
// unsigned command acted on, another vehicle's alarm changed, an error that
// escaped to the process); a hang is one input taking over a second. Each is
// printed with its target, seed and input, to replay; the last line is
// {"fuzz":"summary","seconds":N,"handlers":..,"inputs":..,"crashes":0,"hangs":0,"max_rss_mb":..}.

import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { fuzzTargets } from './fuzz-targets.ts';

const HANG_MS = 1000;
const BATCH = 50;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i === -1) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    process.stderr.write(`fuzz: ${name} needs a positive number\n`);
    process.exit(2);
  }
  return v;
}

function preview(input: unknown): string {
  const text = Buffer.isBuffer(input) ? `<${input.length} bytes> ${input.toString('latin1')}` : (JSON.stringify(input, (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('latin1') : v)) ?? String(input));
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

const seconds = arg('--seconds', 60);
const firstSeed = arg('--seed', Date.now() % 2_147_483_647);
let crashes = 0;
let hangs = 0;
let inputs = 0;
let maxRss = process.memoryUsage().rss;
const escaped: string[] = [];
process.on('uncaughtException', (err) => escaped.push(`uncaught: ${err.stack ?? err.message}`));
process.on('unhandledRejection', (err) => escaped.push(`unhandled rejection: ${(err as Error)?.stack ?? String(err)}`));

const bed = fuzzTargets();
const perTarget = new Map(bed.targets.map((t) => [t.name, 0]));
const deadline = performance.now() + seconds * 1000;
let seed = firstSeed;
try {
  while (performance.now() < deadline) {
    for (const target of bed.targets) {
      seed = (seed + 1) % 2_147_483_647;
      for (const input of fc.sample(target.input, { numRuns: BATCH, seed })) {
        const t0 = performance.now();
        try {
          target.check(input);
        } catch (err) {
          crashes++;
          process.stderr.write(`fuzz: CRASH in "${target.name}" (seed ${seed}): ${(err as Error).stack ?? err}\n  input: ${preview(input)}\n`);
        }
        const ms = performance.now() - t0;
        if (ms > HANG_MS) {
          hangs++;
          process.stderr.write(`fuzz: HANG in "${target.name}" (seed ${seed}): ${ms.toFixed(0)} ms\n  input: ${preview(input)}\n`);
        }
        inputs++;
        perTarget.set(target.name, perTarget.get(target.name)! + 1);
      }
      // Let the receiver's file writes and the like run, so what they throw is seen here.
      await new Promise((r) => setImmediate(r));
      maxRss = Math.max(maxRss, process.memoryUsage().rss);
      if (performance.now() >= deadline) break;
    }
  }
} finally {
  await bed.close();
}
for (const e of escaped) {
  crashes++;
  process.stderr.write(`fuzz: CRASH escaped to the process: ${e}\n`);
}
for (const [name, n] of perTarget) process.stderr.write(`  ${String(n).padStart(8)}  ${name}\n`);
process.stdout.write(
  `${JSON.stringify({ fuzz: 'summary', seconds, handlers: bed.targets.length, inputs, crashes, hangs, max_rss_mb: Math.round((maxRss / 1048576) * 10) / 10, seed: firstSeed })}\n`,
);
process.exitCode = crashes || hangs ? 1 : 0;
