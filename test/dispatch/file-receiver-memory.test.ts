// Dispatch's memory under a flood of evidence segments (dispatch/file-receiver.ts):
// what waits for the disk is bounded per vehicle and in all; past the bound a
// segment is dropped without a receipt (the bus sends it again), and another
// vehicle's segments still get in. Before, a bus could buffer without limit
// (233 → 414 MiB for 293 MiB of segments).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../common/hash.ts';
import { SIGNATURES_SCHEMA, SignatureBook } from '../../dispatch/signatures.ts';
import { migrate, openDatabase } from '../../common/sqlite.ts';
import { DISPATCH_FILES_SCHEMA, FileReceiver, FilesConfigSchema } from '../../dispatch/files.ts';
import { initTopic, segmentTopic } from '../../protocol/file-transfer.ts';

const dir = mkdtempSync(join(tmpdir(), 'bg-file-memory-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;

/** A receiver on its own database with these files.* keys; its log lines and the receipts it sends. */
function receiverWith(name: string, config: Record<string, unknown>) {
  const db = openDatabase(join(dir, `${name}.db`));
  migrate(db, [DISPATCH_FILES_SCHEMA, SIGNATURES_SCHEMA]);
  const lines: Record<string, unknown>[] = [];
  const receipts: string[] = [];
  const files = new FileReceiver({
    db,
    signatures: new SignatureBook(db, null),
    config: FilesConfigSchema.parse({ dir: join(dir, `evidence-${name}`), ...config }),
    log: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }),
    sendReceipt: (ref, r) => receipts.push(`${ref.vehicle}:${r.fileId}:${r.state}`),
  });
  return { db, files, lines, receipts };
}

describe('file receiver memory', () => {
  it('a vehicle past its buffer bound has segments dropped unreceipted; another vehicle still gets in; the bound frees as the disk catches up', async () => {
    const { db, files, lines } = receiverWith('memory', { maxSegmentBytes: 2 * MiB, maxBufferedBytesPerVehicle: 4 * MiB, maxBufferedBytes: 6 * MiB });
    const start = (vehicle: string, fileId: string, size: number) => {
      const ref = { fleet: 'city', vehicle };
      const meta = { v: 1, kind: 'clip', fleet: 'city', vehicle, alarmId: null, capturedAt: '2026-12-03T10:00:00.000Z', timeSource: 'gps', geotag: null };
      files.handle(initTopic('vehicle', ref, fileId), Buffer.from(JSON.stringify({ name: 'c.mp4', size, checksum: sha256Hex(Buffer.alloc(size, 7)), user_data: meta })));
      return (offset: number, bytes: Buffer) => files.handle(segmentTopic('vehicle', ref, fileId, offset, sha256Hex(bytes)), bytes);
    };
    const segment = Buffer.alloc(MiB, 7);
    const flood = start('bus-1', 'flood', 10 * MiB);
    for (let i = 0; i < 10; i++) flood(i * MiB, segment); // all at once, before any is written
    const deferred = () => lines.filter((l) => l.event === 'file.segment-deferred');
    expect(deferred().map((l) => l.vehicle)).toEqual(Array(6).fill('bus-1'));
    // bus-2 has a budget of its own, within the total.
    const other = start('bus-2', 'other', 2 * MiB);
    other(0, segment);
    other(MiB, segment);
    expect(deferred()).toHaveLength(6);
    await files.idle();
    expect(files.get({ fleet: 'city', vehicle: 'bus-1' }, 'flood')?.state).toBe('receiving');
    // Written and freed: bus-1's next segments get in again.
    for (let i = 4; i < 8; i++) flood(i * MiB, segment);
    expect(deferred()).toHaveLength(6);
    await files.idle();
    db.close();
  });
});

describe('file receiver quotas', () => {
  it('a vehicle over its quota of files in progress, or a disk short of its reserve, gets no receipt for a new file (the bus asks again later); another vehicle still gets in', async () => {
    const quotaBed = receiverWith('quota', { maxReceivingBytesPerVehicle: 3 * MiB });
    const reserveBed = receiverWith('reserve', { minFreeBytes: Number.MAX_SAFE_INTEGER });
    const init = (files: FileReceiver, vehicle: string, fileId: string, size: number) => {
      const meta = { v: 1, kind: 'clip', fleet: 'city', vehicle, alarmId: null, capturedAt: '2026-12-03T10:00:00.000Z', timeSource: 'gps', geotag: null };
      files.handle(initTopic('vehicle', { fleet: 'city', vehicle }, fileId), Buffer.from(JSON.stringify({ name: 'c.mp4', size, checksum: '0'.repeat(64), user_data: meta })));
    };
    const { files: quota, lines, receipts } = quotaBed;
    init(quota, 'bus-1', 'a', 2 * MiB);
    init(quota, 'bus-1', 'b', 2 * MiB); // 4 MiB in progress would pass the 3 MiB quota
    init(quota, 'bus-2', 'c', 2 * MiB);
    await quota.idle();
    expect(receipts.sort()).toEqual(['bus-1:a:receiving', 'bus-2:c:receiving']);
    const deferred = lines.filter((l) => l.event === 'file.init-deferred');
    expect(deferred.map((l) => `${l.vehicle}:${l.fileId}`)).toEqual(['bus-1:b']);
    expect(String(deferred[0]!.reason)).toContain('files.maxReceivingBytesPerVehicle');

    const reserve = reserveBed.files;
    init(reserve, 'bus-3', 'd', 1024);
    await reserve.idle();
    expect(reserveBed.receipts).toEqual([]);
    expect(String(reserveBed.lines.filter((l) => l.event === 'file.init-deferred').at(-1)?.reason)).toMatch(/bytes free on the evidence disk, files.minFreeBytes keeps/);
    // A day's quota counts what was stored too: a bus that sent its 3 MiB today waits for tomorrow.
    const dayBed = receiverWith('day', { maxBytesPerVehiclePerDay: 3 * MiB });
    init(dayBed.files, 'bus-1', 'e', 2 * MiB);
    await dayBed.files.idle();
    dayBed.db.prepare("UPDATE evidence_files SET state = 'complete' WHERE file_id = 'e'").run();
    init(dayBed.files, 'bus-1', 'f', 2 * MiB);
    init(dayBed.files, 'bus-2', 'g', 2 * MiB);
    await dayBed.files.idle();
    expect(dayBed.receipts.sort()).toEqual(['bus-1:e:receiving', 'bus-2:g:receiving']);
    expect(String(dayBed.lines.find((l) => l.event === 'file.init-deferred')?.reason)).toMatch(/announced 2097152 bytes of files in the last 24 h; files.maxBytesPerVehiclePerDay is 3145728/);
    quotaBed.db.close();
    reserveBed.db.close();
    dayBed.db.close();
  });
});

describe('unfinished files', () => {
  it('a file still incomplete past files.unfinishedExpiryS is forgotten, partial bytes and all; a newer one is kept', async () => {
    const { db, files, lines } = receiverWith('expiry', { unfinishedExpiryS: 3600 });
    const ref = { fleet: 'city', vehicle: 'bus-1' };
    const meta = { v: 1, kind: 'clip', fleet: 'city', vehicle: 'bus-1', alarmId: null, capturedAt: '2026-12-03T10:00:00.000Z', timeSource: 'gps', geotag: null };
    for (const fileId of ['old', 'new']) {
      files.handle(initTopic('vehicle', ref, fileId), Buffer.from(JSON.stringify({ name: 'c.mp4', size: 2048, checksum: '0'.repeat(64), user_data: meta })));
      const half = Buffer.alloc(1024, 1);
      files.handle(segmentTopic('vehicle', ref, fileId, 0, sha256Hex(half)), half);
    }
    await files.idle();
    db.prepare("UPDATE evidence_files SET received_at = '2026-01-01T00:00:00.000Z' WHERE file_id = 'old'").run();
    expect(await files.expireUnfinished()).toBe(1);
    expect(files.get(ref, 'old')).toBeNull();
    expect(files.get(ref, 'new')?.state).toBe('receiving');
    expect(db.prepare("SELECT count(*) AS n FROM evidence_ranges WHERE file_id = 'old'").get()).toEqual({ n: 0 });
    expect(lines.filter((l) => l.event === 'file.expired').map((l) => l.fileId)).toEqual(['old']);
    await files.idle(); // nothing left waiting
    db.close();
  });
});
