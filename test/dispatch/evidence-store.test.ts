// Where dispatch keeps verified evidence (dispatch/evidence-store.ts): one
// folder per file id. A bus chooses both the id and the name, so the stored
// path must not let one file land on another's, and must fit the file
// system's 255-byte limit for the longest id and name the protocol allows.

import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { sha256Hex } from '../../common/hash.ts';
import { migrate, openDatabase } from '../../common/sqlite.ts';
import { DISPATCH_FILES_SCHEMA, EvidenceStore } from '../../dispatch/evidence-store.ts';
import { type InitPayload, type Range, normalizeRanges } from '../../protocol/file-transfer.ts';

const dir = mkdtempSync(join(tmpdir(), 'bg-evidence-store-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const ref = { fleet: 'city', vehicle: 'bus-1' };

function init(name: string, bytes: Buffer): InitPayload {
  return {
    name,
    size: bytes.length,
    checksum: sha256Hex(bytes),
    user_data: { v: 1, kind: 'snapshot', fleet: 'city', vehicle: 'bus-1', alarmId: null, capturedAt: '2026-12-03T10:00:00.000Z', timeSource: 'gps', geotag: null },
  };
}

describe('evidence store paths', () => {
  it('ids and names that ran together ("a-b" + "c.jpg", "a" + "b-c.jpg") and the longest id with the longest name each keep their own bytes', async () => {
    const db = openDatabase(join(dir, 'd.db'));
    migrate(db, [DISPATCH_FILES_SCHEMA]);
    const store = new EvidenceStore(db, join(dir, 'evidence'));
    const files: [string, string][] = [
      ['a-b', 'c.jpg'],
      ['a', 'b-c.jpg'],
      ['i'.repeat(64), `${'n'.repeat(236)}.jpg`],
    ];
    const stored: { path: string; bytes: Buffer }[] = [];
    for (const [fileId, name] of files) {
      const bytes = randomBytes(1000);
      store.announce(ref, fileId, init(name, bytes));
      await store.putSegment(ref, fileId, 0, bytes);
      const f = store.get(ref, fileId)!;
      const got = (await store.received(ref, f))!;
      expect(got.sha256).toBe(sha256Hex(bytes));
      const done = await store.complete(ref, f, got.sha256, got.inPlace);
      stored.push({ path: done!.path!, bytes });
    }
    expect(new Set(stored.map((s) => s.path)).size).toBe(3);
    for (const s of stored) expect(readFileSync(s.path).equals(s.bytes)).toBe(true);
    db.close();
  });
});

describe('evidence store ranges', () => {
  it('whatever order and overlap segments arrive in, the held ranges are their union: sorted, disjoint, not touching', async () => {
    const db = openDatabase(join(dir, 'ranges.db'));
    migrate(db, [DISPATCH_FILES_SCHEMA]);
    const store = new EvidenceStore(db, join(dir, 'evidence-ranges'));
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(200), fc.integer({ min: 1, max: 20 })), { minLength: 1, maxLength: 40 }), async (segments) => {
        const fileId = `f${n++}`;
        store.announce(ref, fileId, init('x.jpg', Buffer.alloc(220)));
        for (const [offset, length] of segments) await store.putSegment(ref, fileId, offset, Buffer.alloc(length, 1));
        expect(store.ranges(ref, fileId)).toEqual(normalizeRanges(segments.map(([o, l]): Range => [o, o + l])));
      }),
      { numRuns: 60 },
    );
    db.close();
  });
});
