// Files that survive a power cut whole: the data is fsync'd before the file
// is renamed into place, and the folder is fsync'd after, because a rename
// (like a create or a hard link) is a change to the folder, which the file
// system journals on its own schedule (ext4 commits every 5 s): without the
// folder's fsync a photo the bus has already queued for upload can vanish
// with the power, or come back under its temporary name. Both ends (the bus's
// evidence, dispatch's received files) and hal/video use this, so it lives
// here with the other things both programs must do the same way.

import { closeSync, constants, fsyncSync, openSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';

/** Make the entries of a folder (files created, renamed or linked into it) durable. */
export async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The same, synchronously (for a caller that must not yield, such as pinning the pre-roll at a press). */
export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** fsync the data of a file another program wrote (ffmpeg does not). */
export async function fsyncFile(path: string): Promise<void> {
  const fh = await open(path, constants.O_RDONLY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Move a finished file (already fsync'd) into place, durably: a power cut leaves the old state or the new one. */
export async function renameDurably(from: string, to: string): Promise<void> {
  await rename(from, to);
  await fsyncDir(dirname(to));
}

/** Write, fsync, rename, fsync the folder: the old file or the whole new one, never half of it, and never none. */
export async function writeFileDurably(file: string, data: Buffer | string): Promise<void> {
  const tmp = `${file}.tmp`;
  const fh = await open(tmp, 'w');
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  await renameDurably(tmp, file);
}
