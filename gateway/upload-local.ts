// The bus's own copy of a queued evidence file, as the pump reads it
// (gateway/upload-pump.ts): still there, still the bytes that were queued
// (its SHA-256), and a range of it at a time. Every problem comes back as
// the sentence the file is failed with.

import { open, stat } from 'node:fs/promises';
import { type Range, hashFile } from '../protocol/file-transfer.ts';

/** What the check needs of a queued file. */
export interface LocalCopy {
  path: string;
  size: number;
  sha256: string;
  /** The modification time (whole ms) at which it last matched its SHA-256. */
  mtimeMs: number;
}

function unreadable(path: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `file ${path} was deleted on the bus before it was sent`;
  return `file ${path} cannot be read (${code ?? (err as Error).message})`;
}

/**
 * Why the file on disk is no longer what was queued, or null when it is.
 * Without `fullHash` an unchanged size and modification time suffice; a file
 * touched since is hashed again, and when its bytes are still the same its
 * new time goes to `remember` (an error there is reported as the file's).
 */
export async function checkLocalCopy(f: LocalCopy, fullHash: boolean, remember: (mtimeMs: number) => void): Promise<string | null> {
  const { path, size, sha256 } = f;
  try {
    const st = await stat(path);
    if (st.size !== size) return `file ${path} changed on the bus before it was sent: queued with ${size} bytes, now ${st.size}`;
    if (!fullHash && Math.trunc(st.mtimeMs) === f.mtimeMs) return null;
    const now = await hashFile(path);
    if (now.sha256 !== sha256) return `file ${path} changed or is corrupted on the bus: queued with sha256 ${sha256}, now ${now.sha256}`;
    if (Math.trunc(st.mtimeMs) !== f.mtimeMs) remember(Math.trunc(st.mtimeMs));
    return null;
  } catch (err) {
    return unreadable(path, err);
  }
}

/** The bytes of [start, end) of the file, or why they cannot be had. */
export async function readLocalRange(path: string, [s, e]: Range): Promise<Buffer | string> {
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(e - s);
      let got = 0;
      while (got < buf.length) {
        const { bytesRead } = await fh.read(buf, got, buf.length - got, s + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got !== buf.length) return `file ${path} is shorter than queued: ${got} bytes at offset ${s}, expected ${buf.length}`;
      return buf;
    } finally {
      await fh.close();
    }
  } catch (err) {
    return unreadable(path, err);
  }
}
