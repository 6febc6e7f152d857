// Ed25519 keys on disk, as PEM files: dispatch's signing key (private, 0600)
// and the public keys a bus trusts. A private key anyone else on the machine
// can read is refused at start, naming the key and what to run.

import { type KeyObject, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? `uid ${process.getuid?.() ?? '?'} may not read it` : ((err as Error).message ?? String(err));
}

/** Read an Ed25519 private key; every problem goes to `problems` naming `key` (the config key), and null is returned. */
export function readPrivateKey(key: string, path: string, problems: string[]): KeyObject | null {
  return readKey('private', key, path, problems);
}

/** Read an Ed25519 public key (PEM); problems as readPrivateKey. */
export function readPublicKey(key: string, path: string, problems: string[]): KeyObject | null {
  return readKey('public', key, path, problems);
}

function readKey(which: 'private' | 'public', key: string, path: string, problems: string[]): KeyObject | null {
  const shown = `key "${key}" = ${JSON.stringify(path)}`;
  let pem: Buffer;
  try {
    // A private key anyone else on the machine can read is no longer this machine's alone.
    const mode = statSync(path).mode & 0o777;
    if (which === 'private' && (mode & 0o077) !== 0) {
      problems.push(`${shown}: a private key readable by others (mode ${mode.toString(8)}); run: chmod 600 ${path}`);
      return null;
    }
    pem = readFileSync(path);
  } catch (err) {
    problems.push(`${shown}: cannot read it (${errnoText(err)})`);
    return null;
  }
  let k: KeyObject;
  try {
    k = which === 'private' ? createPrivateKey(pem) : createPublicKey(pem);
  } catch (err) {
    problems.push(`${shown}: not a PEM ${which} key (${(err as Error).message})`);
    return null;
  }
  if (k.asymmetricKeyType !== 'ed25519') {
    problems.push(`${shown}: a ${k.asymmetricKeyType} key; busguard signs and verifies with Ed25519 only (busguard pki keygen makes one)`);
    return null;
  }
  return k;
}

/** Write a new file with fsync; 'wx': never overwrite one that exists (a lost private key is a re-provisioning of the fleet). */
export function writeNew(path: string, text: string, mode: number): void {
  // 'wx': never overwrite a key that exists (a lost private key is a re-provisioning of the fleet).
  const fd = openSync(path, 'wx', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Make an Ed25519 key pair as DIR/ID.key (0600) and DIR/ID.pub; refuses to overwrite either. */
export function generateKeyFiles(dir: string, id: string): { privateKeyFile: string; publicKeyFile: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const privateKeyFile = join(dir, `${id}.key`);
  const publicKeyFile = join(dir, `${id}.pub`);
  for (const f of [privateKeyFile, publicKeyFile]) {
    if (existsSync(f)) throw new Error(`${f} already exists: a key is never overwritten (choose another id, or move the old key away first)`);
  }
  writeNew(privateKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  writeNew(publicKeyFile, publicKey.export({ type: 'spki', format: 'pem' }) as string, 0o644);
  return { privateKeyFile, publicKeyFile };
}
