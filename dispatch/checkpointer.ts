// WAL checkpoints off the receiver's event loop. SQLite copies the WAL back
// into the database every 1,000 pages by default, on whichever connection
// commits then, and syncs the database file as it does: on the receiver's
// only thread (better-sqlite3 is synchronous) that stalled every alarm behind
// it, and took a third of a track storm's ingest time (measured with the
// fleet bench's receiver profile). Here a worker thread with a connection of
// its own runs a PASSIVE checkpoint (it never blocks a writer) every
// intervalMs; the receiver's own connection checkpoints only as a safety net,
// should the worker fall behind by SAFETY_PAGES.

import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { Db } from '../common/sqlite.ts';

/** The receiver's connection still checkpoints past this many WAL pages (~200 MB): the worker is gone or far behind. */
const SAFETY_PAGES = 50_000;

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('busy_timeout = 5000');
const timer = setInterval(() => {
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    parentPort.postMessage({ ok: r });
  } catch (err) {
    parentPort.postMessage({ error: String(err && err.message || err) });
  }
}, workerData.intervalMs);
parentPort.on('message', (m) => {
  if (m === 'stop') {
    clearInterval(timer);
    try { db.pragma('wal_checkpoint(PASSIVE)'); } catch {}
    db.close();
    parentPort.close();
  }
});
`;

export class Checkpointer {
  private readonly worker: Worker;
  private failures = 0;

  constructor(db: Db, log: Logger, intervalMs = 1_000) {
    db.pragma(`wal_autocheckpoint = ${SAFETY_PAGES}`);
    this.worker = new Worker(WORKER, { eval: true, workerData: { path: db.name, module: createRequire(import.meta.url).resolve('better-sqlite3'), intervalMs } });
    this.worker.unref();
    this.worker.on('message', (m: { ok?: unknown; error?: string }) => {
      if (m.error === undefined) return void (this.failures = 0);
      // A busy database now and then is normal; only a checkpoint failing again and again is news.
      if (++this.failures % 30 === 1) log.warn({ event: 'sqlite.checkpoint-failed', err: m.error, failures: this.failures }, 'WAL checkpoint failed; the receiver checkpoints itself past the safety limit');
    });
    this.worker.on('error', (err) => log.error({ event: 'sqlite.checkpointer-died', err: err.message }, 'the checkpoint thread died; the receiver checkpoints itself past the safety limit'));
  }

  async stop(): Promise<void> {
    const gone = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage('stop');
    await Promise.race([gone, new Promise<void>((r) => setTimeout(r, 2_000).unref())]);
    await this.worker.terminate();
  }
}
