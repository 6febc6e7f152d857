// A power cut for one process (see powercut/powercut.c): what it wrote under
// one folder and did not fsync is lost, then it dies as if SIGKILLed. The
// library is compiled on first use (cc from build-essential; set-up installs
// it) into a cache named by the source's hash.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const SOURCE = fileURLToPath(new URL('./powercut/powercut.c', import.meta.url));

/** Path of the compiled library. */
export function powercutLibrary(): string {
  const src = readFileSync(SOURCE);
  const dir = join(tmpdir(), 'busguard-powercut');
  const lib = join(dir, `powercut-${createHash('sha256').update(src).digest('hex').slice(0, 12)}.so`);
  if (existsSync(lib)) return lib;
  mkdirSync(dir, { recursive: true });
  const tmp = `${lib}.${process.pid}.tmp`;
  try {
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', tmp, SOURCE, '-ldl', '-lpthread'], { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    throw new Error(`cannot build the power-cut library from ${SOURCE} (${(err as Error).message}); install a C compiler (apt-get install gcc)`);
  }
  renameSync(tmp, lib);
  return lib;
}

export interface PowerCut {
  /** Environment for the process whose power is to be cut. */
  env: Record<string, string>;
  /** Cut the power now: the process rolls back what it did not fsync under `dir` and exits with 137. */
  cut(): void;
  /** Make it possible to run another process under the same rig. */
  reset(): void;
}

/** A rig for writes under `dir`; `trigger` is a file path nothing else uses. */
export function powerCut(dir: string, trigger: string): PowerCut {
  return {
    env: { LD_PRELOAD: powercutLibrary(), POWERCUT_DIR: dir, POWERCUT_TRIGGER: trigger },
    cut: () => writeFileSync(trigger, ''),
    reset: () => {
      try {
        execFileSync('rm', ['-f', trigger]);
      } catch {
        // not there
      }
    },
  };
}
