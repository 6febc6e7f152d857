#!/usr/bin/env node
// busguard's single command. The sources are TypeScript, and what is in the
// repository is what runs (no separate build step to forget):
// - every command but `agent` runs them through tsx's loader;
// - `agent`, the process that lives for months on a head unit with little
//   RAM, runs them as one plain-JS bundle that esbuild (tsx's own compiler)
//   makes from the sources at start-up. tsx's loader thread and transform
//   cache cost about 30 MB of resident memory for the life of the process
//   (measured: 39 MB for bare node, 71 MB once tsx is registered, before any
//   of our code); the bundle costs a ~0.2 s build at each start and nothing
//   after. The bundle goes under node_modules/.cache so its bare imports
//   (mqtt, better-sqlite3, serialport...) resolve to the installed packages,
//   named by its content so concurrent starts never see a half-written file.
//   (Both figures from `npm run bench -- footprint`: RSS 94.8 MB through tsx,
//   73 MB bundled.) BUSGUARD_AGENT_TSX=1 runs the agent through tsx instead (for a debugger).
// The agent also runs V8 without its optimising compilers (AGENT_V8_FLAGS
// below), with a 1 KiB Buffer pool and a bundle without comments or
// whitespace: `npm run bench -- footprint`, three 300 s runs, RSS p50 61.9,
// 62.3, 62.3 MB (peaks 63.1-63.4) against 81.2, 78.9, 79.4 (peaks 79.9-82.3)
// before, CPU 0.20-0.23 % against 0.21-0.22 %.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import v8 from 'node:v8';

/**
 * V8 flags for the agent, set before any of its code runs. The agent is
 * idle almost all the time (0.2 % of a core: 1 Hz GPS, an alarm now and
 * then), so optimised machine code buys it nothing, while TurboFan's
 * compilations cost resident memory for good: its code pages in the node
 * binary (~3.5 MB more of the file mapped), the compile zones it mallocs on
 * V8's worker threads and that glibc keeps in their arenas (3.6–6.7 MB), the
 * optimised code and deopt data; and when they run is a matter of timing, so
 * the agent's RSS differed by up to 14 MB from one run to the next (p50 76–83 MB,
 * peaks 82–90 MB over 120 s). Measured with `npm run bench -- footprint`,
 * BENCH_SECONDS=120, p50 of RSS:
 *   no flag                                  76.4, 82.9 (peaks 82.5, 90.2)
 *   --no-opt                                 64.8, 64.9, 64.9
 *   --no-opt --no-sparkplug                  64.0, 63.8
 *   --no-opt --no-sparkplug --optimize-for-size  63.2, 63.0, 63.0
 * (--optimize-for-size alone with --no-opt: 64.3.) CPU of the agent in that
 * bench: 0.17–0.22 % with the flags, 0.19–0.27 % without. Where speed could
 * matter it does not show: `bench -- drain` (86,425 items after a day
 * offline) took 2.14 and 2.30 s with --no-opt against 2.38 and 2.64 s without
 * (loaded runs: medians 4.3 against 4.2 s). The NMEA parser alone is 8 times
 * slower without TurboFan (`node --no-opt bin/bench.js gps-parse`: 50,000
 * sentences/s against 425,000), i.e. 0.2 ms of CPU for a second of 1 Hz GPS.
 * Tried and left out: --single-threaded-gc (set at run time it crashes V8 in
 * its first full GC), --no-concurrent-recompilation (76.1: TurboFan's memory
 * stays), --lite-mode (63.1, but it implies --jitless, regular expressions
 * interpreted), --max-lazy (64.8: no change). Flags that only work at
 * start-up (--max-semi-space-size, --v8-pool-size, MALLOC_ARENA_MAX=2: 64.7
 * with --no-opt, no gain) would need a second process; these need none.
 * BUSGUARD_AGENT_V8_FLAGS replaces them ('' = V8's defaults, to compare).
 */
const AGENT_V8_FLAGS = '--no-opt --no-sparkplug --optimize-for-size';

if (process.argv[2] === 'agent') {
  v8.setFlagsFromString(process.env.BUSGUARD_AGENT_V8_FLAGS ?? AGENT_V8_FLAGS);
  // mqtt-packet caches the encoded remaining length of every packet size it
  // has sent (below 16 KiB) in a Buffer of 1-4 bytes taken from Node's shared
  // 8 KiB pool: each new track-message size pins a whole pool slab. Over
  // 30 min of the footprint bench that was 54 cached sizes pinning 43 slabs,
  // 344 KB (heap snapshots), and the sizes keep coming (a simulated day of
  // track messages: 5.1 MB; 7.5 MB at 20,000). With a 1 KiB pool each pins
  // 1 KiB: 52 KB in the same 30 min. Buffers of 512 B and more are then
  // allocated on their own, which the drain bench does not notice.
  // Drop this once mqtt-packet copies what it caches out of the pool
  // (Buffer.allocUnsafeSlow) or stops caching: writeVarByteInt in
  // node_modules/mqtt-packet/writeToStream.js.
  Buffer.poolSize = 1024;
}

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CACHE = join(ROOT, 'node_modules', '.cache', 'busguard');
const KEEP_MS = 7 * 86_400_000;

/**
 * The agent's bundle: `CACHE/agent-HASH/cli.mjs`, with its source map beside
 * it. Node does not load the map unless BUSGUARD_SOURCE_MAPS=1 (it costs
 * ~3.5 MB of resident memory, measured); without it a stack trace names
 * bundle lines, which the .map file beside the bundle turns back into
 * TypeScript lines.
 */
async function agentBundle() {
  const { build, stop } = await import('esbuild');
  const result = await build({
    entryPoints: [join(ROOT, 'scripts', 'cli.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    write: false,
    outfile: join(CACHE, 'cli.mjs'),
    // Whitespace and syntax only, names kept (class and function names show
    // in logs and errors): the bundle shrinks from 553 to 367 KB, and V8
    // holds its source for the life of the process. RSS p50 64.0 and 64.4
    // with --no-opt against 64.8-64.9 without; with the flags above, 62.4 in
    // three runs against 63.0-63.2. (Renaming too: 63.8, for unreadable names.)
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    logLevel: 'silent',
  }).finally(() => stop()); // esbuild's compiler is a child process: it must not live on beside the agent
  const js = result.outputFiles.find((f) => f.path.endsWith('.mjs'));
  const map = result.outputFiles.find((f) => f.path.endsWith('.map'));
  const dir = join(CACHE, `agent-${createHash('sha256').update(js.contents).digest('hex').slice(0, 16)}`);
  const file = join(dir, 'cli.mjs');
  if (!existsSync(file)) {
    const tmp = `${dir}.${process.pid}.tmp`;
    mkdirSync(tmp, { recursive: true });
    writeFileSync(join(tmp, 'cli.mjs.map'), map.contents);
    writeFileSync(join(tmp, 'cli.mjs'), js.contents);
    try {
      renameSync(tmp, dir);
    } catch {
      rmSync(tmp, { recursive: true, force: true }); // another start got there first with the same bundle
    }
    // Bundles of sources edited since (development) pile up: drop week-old ones.
    for (const old of readdirSync(CACHE)) {
      const p = join(CACHE, old);
      if (p !== dir && old.startsWith('agent-') && Date.now() - statSync(p).mtimeMs > KEEP_MS) rmSync(p, { recursive: true, force: true });
    }
  }
  return file;
}

if (process.argv[2] === 'agent' && process.env.BUSGUARD_AGENT_TSX !== '1') {
  let file;
  try {
    file = await agentBundle();
  } catch (err) {
    // A syntax error in a source file: say where, as tsx would.
    process.stderr.write(`busguard: cannot build the agent from its sources: ${err.message}\n`);
    process.exit(1);
  }
  if (process.env.BUSGUARD_SOURCE_MAPS === '1') process.setSourceMapsEnabled(true);
  await import(pathToFileURL(file).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../scripts/cli.ts');
}
