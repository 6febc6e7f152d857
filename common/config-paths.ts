// What a config file names on disk, checked before anything is opened: a
// process that creates its database and opens the serial ports, then dies on
// an unreadable password file, leaves a half-made install behind and a
// technician reading a stack trace. Every problem is reported at once, each
// naming its key, and the process exits 2 (ConfigError) having touched
// nothing. A folder on a kernel pseudo-filesystem (/proc, /sys) is refused:
// creating folders there never ends (the agent spun at 100 % CPU on a
// storage.dir under /proc).

import { X509Certificate } from 'node:crypto';
import { readPrivateKey } from './keys.ts';
import { accessSync, constants, readFileSync, statSync, statfsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** statfs f_type of file systems that are views of the kernel, not storage. */
const PSEUDO_FS: ReadonlyMap<number, string> = new Map([
  [0x9fa0, 'procfs'],
  [0x62656572, 'sysfs'],
  [0x1cd1, 'devpts'],
  [0x27e0eb, 'cgroup'],
  [0x63677270, 'cgroup2'],
  [0x64626720, 'debugfs'],
  [0x74726163, 'tracefs'],
  [0x73636673, 'securityfs'],
  [0xcafe4a11, 'bpf'],
]);

/** The closest existing ancestor of `path` (itself if it exists). */
function nearestExisting(path: string): string {
  let p = resolve(path);
  for (;;) {
    try {
      statSync(p);
      return p;
    } catch {
      const up = dirname(p);
      if (up === p) return p;
      p = up;
    }
  }
}

/**
 * `path` must be a folder this process can write to, or one it can create
 * (its closest existing ancestor is a writable folder), on real storage.
 */
export function checkWritableDir(key: string, path: string, problems: string[], value: string = path): void {
  const shown = `key "${key}" = ${JSON.stringify(value)}${value === path ? '' : ` (its folder ${path})`}`;
  const at = nearestExisting(path);
  try {
    const type = PSEUDO_FS.get(Number(statfsSync(at).type));
    if (type) {
      problems.push(`${shown}: ${at} is on ${type}, a view of the kernel, not storage; choose a folder on a disk (e.g. /var/lib/busguard)`);
      return;
    }
  } catch {
    // statfs not possible: the checks below still say what is wrong
  }
  let st;
  try {
    st = statSync(at);
  } catch (err) {
    problems.push(`${shown}: cannot look at ${at} (${(err as NodeJS.ErrnoException).code})`);
    return;
  }
  if (!st.isDirectory()) {
    problems.push(`${shown}: ${at} is ${at === resolve(path) ? 'not a folder' : 'a file, so no folder can be made under it'}`);
    return;
  }
  try {
    accessSync(at, constants.W_OK | constants.X_OK);
  } catch {
    problems.push(
      at === resolve(path)
        ? `${shown}: the folder is not writable by this user (uid ${process.getuid?.() ?? '?'}); fix its owner or permissions`
        : `${shown}: it does not exist and cannot be created: ${at} is not writable by this user (uid ${process.getuid?.() ?? '?'})`,
    );
  }
}

/** `path` must be a readable file with something on its first line (a password file). */
export function checkSecretFile(key: string, path: string, problems: string[]): void {
  const shown = `key "${key}" = ${JSON.stringify(path)}`;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    problems.push(`${shown}: cannot read it (${code}${code === 'EACCES' ? `: uid ${process.getuid?.() ?? '?'} may not read it` : code === 'ENOENT' ? ': no such file' : ''})`);
    return;
  }
  if ((text.split('\n')[0] ?? '').length === 0) problems.push(`${shown}: its first line is empty; put the password on the first line`);
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o007) !== 0) problems.push(`${shown}: readable by every user of this machine (mode ${mode.toString(8)}); run: chmod 640 ${path}`);
}

/** The broker CA, this end's certificate and its key (0600, an X.509 certificate that is not expired): each problem names its key. */
export function checkTlsFiles(m: { caFile?: string; certFile?: string; keyFile?: string }, problems: string[], caKey = 'mqtt.caFile', section = 'mqtt'): void {
  for (const [key, path] of [[caKey, m.caFile], [`${section}.certFile`, m.certFile]] as const) {
    if (path === undefined) continue;
    const shown = `key "${key}" = ${JSON.stringify(path)}`;
    try {
      const cert = new X509Certificate(readFileSync(path));
      if (Date.parse(cert.validTo) < Date.now()) problems.push(`${shown}: the certificate expired on ${cert.validTo}`);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      problems.push(`${shown}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'may not read it' : 'not a PEM certificate'}`);
    }
  }
  if (m.keyFile !== undefined) readPrivateKey(`${section}.keyFile`, m.keyFile, problems);
}
