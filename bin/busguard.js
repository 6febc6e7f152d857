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
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

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
