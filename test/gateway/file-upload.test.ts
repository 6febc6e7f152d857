// The file-transfer framing (EMQX's topics and payloads), its byte ranges and
// the segment-size rule, and the uploader speaking to EMQX's own file transfer
// ("$file"), where the PUBACK reason code is the answer. There is no EMQX on
// these machines: a session stand-in answers as EMQX's synchronous mode does
// (its reason codes as documented for file transfer). And the queue's store
// interface: a contract every implementation passes, run on the SQLite one.

import { randomBytes, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { testTrust } from '../helpers/command-keys.ts';
import { FILE_UPLOAD_SCHEMA, FileUpload, FileUploadConfigSchema, type QueuedFile } from '../../gateway/file-upload.ts';
import {
  type EvidenceMeta,
  InitPayloadSchema,
  coversAll,
  dispatchFileFilter,
  fileReceiptTopic,
  finTopic,
  initTopic,
  missingRanges,
  normalizeRanges,
  parseFileTopic,
  segmentSizeProblem,
  segmentTopic,
  sha256Hex,
  unionRanges,
} from '../../protocol/file-transfer.ts';
import type { MqttSession } from '../../common/mqtt-session.ts';
import { currentDurability, migrate, openDatabase } from '../../common/sqlite.ts';
import { type NewUpload, SqliteUploadStore, type UploadStore } from '../../gateway/upload-queue.ts';
import { until } from '../integration/fixture.ts';

const bus1 = { fleet: 'city', vehicle: 'bus-1' };
const SUM = 'ab'.repeat(32);

describe('file-transfer framing', () => {
  it('puts files under the vehicle\'s own uplink by default, or under EMQX\'s "$file", with the same tail', () => {
    expect(initTopic('vehicle', bus1, 'f1')).toBe('busguard/v1/city/bus-1/up/file/f1/init');
    expect(segmentTopic('vehicle', bus1, 'f1', 65536, SUM)).toBe(`busguard/v1/city/bus-1/up/file/f1/65536/${SUM}`);
    expect(finTopic('vehicle', bus1, 'f1', 100, SUM)).toBe(`busguard/v1/city/bus-1/up/file/f1/fin/100/${SUM}`);
    expect(initTopic('$file', bus1, 'f1')).toBe('$file/f1/init');
    expect(segmentTopic('$file', bus1, 'f1', 0)).toBe('$file/f1/0');
    expect(finTopic('$file', bus1, 'f1', 100)).toBe('$file/f1/fin/100');
    expect(dispatchFileFilter()).toBe('busguard/v1/+/+/up/file/#');
    expect(fileReceiptTopic(bus1)).toBe('busguard/v1/city/bus-1/down/file');
  });

  it('parses what it makes, tells malformed file topics from topics that are not its business', () => {
    expect(parseFileTopic(segmentTopic('vehicle', bus1, 'f1', 8192, SUM))).toEqual({ ok: true, ref: bus1, fileId: 'f1', command: { type: 'segment', offset: 8192, checksum: SUM } });
    expect(parseFileTopic(finTopic('$file', bus1, 'f1', 7))).toEqual({ ok: true, ref: null, fileId: 'f1', command: { type: 'fin', size: 7, checksum: null } });
    expect(parseFileTopic(`busguard/v1/city/bus-1/up/file/f1/0/${SUM.toUpperCase()}`)).toMatchObject({ ok: true, command: { checksum: SUM } });
    for (const other of ['busguard/v1/city/bus-1/up/alarm', 'busguard/v1/city/bus-1/down/file', 'busguard/v2/city/bus-1/up/file/f1/init', 'elsewhere/f1/init', '']) {
      expect(parseFileTopic(other), other).toBeNull();
    }
    for (const [bad, why] of [
      ['busguard/v1/city/bus-1/up/file/f1/-1', /neither init, fin nor a byte offset/],
      ['busguard/v1/city/bus-1/up/file/f1/99999999999999999', /neither init, fin nor a byte offset/],
      ['busguard/v1/city/bus-1/up/file/f1/fin/x', /fin size "x"/],
      ['busguard/v1/city/bus-1/up/file/f+1/init', /file id "f\+1" not valid/],
      ['busguard/v1/city/bus 1/up/file/f1/init', /fleet or vehicle id not valid/],
      ['$file/f1/fin/3/abc', /fin checksum "abc" is not a SHA-256/],
    ] as const) {
      const p = parseFileTopic(bad);
      expect(p, bad).toMatchObject({ ok: false });
      expect((p as { error: string }).error).toMatch(why);
    }
  });

  it('takes EMQX\'s init JSON, with our evidence description in user_data', () => {
    const init = {
      name: 'snap-1.jpg',
      size: 10,
      checksum: SUM.toUpperCase(),
      expire_at: 1_900_000_000,
      segments_ttl: 600,
      user_data: { v: 1, kind: 'snapshot', fleet: 'city', vehicle: 'bus-1', alarmId: randomUUID(), capturedAt: '2025-01-01T00:00:00Z', timeSource: 'gps', geotag: null },
    };
    expect(InitPayloadSchema.parse(init).checksum).toBe(SUM);
    expect(InitPayloadSchema.safeParse({ ...init, name: '.hidden' }).success).toBe(false);
    expect(InitPayloadSchema.safeParse({ ...init, name: `${'a'.repeat(241)}` }).success).toBe(false);
    expect(InitPayloadSchema.safeParse({ ...init, user_data: { ...init.user_data, kind: 'audio' } }).success).toBe(false);
  });

  it('keeps byte ranges sorted and merged, and says what is missing', () => {
    expect(normalizeRanges([[10, 20], [0, 5], [5, 8], [19, 25], [30, 30]])).toEqual([[0, 8], [10, 25]]);
    expect(unionRanges([[0, 4096]], [[8192, 12288], [4096, 8192]])).toEqual([[0, 12288]]);
    expect(missingRanges([[0, 4096], [8192, 9000]], 10_000)).toEqual([[4096, 8192], [9000, 10_000]]);
    expect(missingRanges([], 0)).toEqual([]);
    expect(coversAll([[0, 100]], 100)).toBe(true);
    expect(coversAll([[0, 99]], 100)).toBe(false);
  });

  it('refuses a segment size the broker\'s packet limit cannot carry with its topic', () => {
    expect(FileUploadConfigSchema.parse({}).segmentBytes).toBe(64 * 1024);
    expect(segmentSizeProblem(256 * 1024, 262_144)).toMatch(/segmentBytes 262144 does not fit the broker's packet limit of 262144 bytes .*at most 261632/);
    const refused = FileUploadConfigSchema.safeParse({ segmentBytes: 256 * 1024 });
    expect(refused.success).toBe(false);
    expect(refused.error!.issues[0]!.path).toEqual(['segmentBytes']);
    // EMQX's default 1 MB packet takes 256 KiB segments.
    expect(FileUploadConfigSchema.parse({ segmentBytes: 256 * 1024, brokerMaxPacketBytes: 1024 * 1024, prefix: '$file' }).segmentBytes).toBe(256 * 1024);
  });
});

/** Stands in for an MqttSession on EMQX: records publishes; the test answers each with a PUBACK reason code. */
class EmqxStandIn extends EventEmitter {
  connected = true;
  readonly client = Object.assign(new EventEmitter(), {
    published: [] as { topic: string; payload: Buffer; messageId: number; answered: boolean; cb: (err?: Error, packet?: { messageId: number }) => void }[],
    publish: (topic: string, payload: Buffer, _opts: unknown, cb: (err?: Error, packet?: { messageId: number }) => void) => {
      this.client.published.push({ topic, payload, messageId: this.client.published.length + 1, answered: false, cb });
    },
    subscribe: () => {},
  });

  /** Answer the first unanswered publish on `topic` as EMQX would: a PUBACK with this reason code. */
  puback(topic: string, rc: number): void {
    const p = this.client.published.find((x) => !x.answered && x.topic === topic);
    if (!p) throw new Error(`nothing unanswered on ${topic}; published: ${this.client.published.map((x) => x.topic).join(', ')}`);
    p.answered = true;
    this.client.emit('packetreceive', { cmd: 'puback', messageId: p.messageId, reasonCode: rc });
    // As mqtt.js does: an error for codes >= 0x80, plain success below (0x10 included).
    if (rc >= 0x80) p.cb(Object.assign(new Error(`Publish error: ${rc}`), { code: rc }));
    else p.cb(undefined, { messageId: p.messageId });
  }

  waiting(topic: string): boolean {
    return this.client.published.some((x) => !x.answered && x.topic === topic);
  }

  count(topic: string): number {
    return this.client.published.filter((x) => x.topic === topic).length;
  }
}

describe('uploader on EMQX\'s own file transfer ("$file", PUBACK reason codes)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'busguard-emqx-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  async function setup() {
    const db = openDatabase(join(dir, `${randomUUID()}.db`));
    migrate(db, [FILE_UPLOAD_SCHEMA]);
    const session = new EmqxStandIn();
    const lines: Record<string, unknown>[] = [];
    const upload = new FileUpload({
      ref: bus1,
      db,
      session: session as unknown as MqttSession,
      config: FileUploadConfigSchema.parse({ prefix: '$file', segmentBytes: 1024, windowSegments: 4, windowBytes: 8192, resendS: 600 }),
      log: pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) }),
      trust: testTrust(bus1),
    });
    const delivered: QueuedFile[] = [];
    const failed: QueuedFile[] = [];
    upload.on('delivered', (f) => delivered.push(f));
    upload.on('failed', (f) => failed.push(f));
    upload.start();
    const data = randomBytes(3 * 1024);
    const path = join(dir, `${randomUUID()}.jpg`);
    writeFileSync(path, data);
    const q = await upload.enqueue({ path, kind: 'snapshot', alarmId: null, capturedAt: '2025-01-01T00:00:00Z', timeSource: 'gps', geotag: null });
    const seg = (i: number) => `$file/${q.id}/${i * 1024}/${sha256Hex(data.subarray(i * 1024, (i + 1) * 1024))}`;
    const fin = `$file/${q.id}/fin/${data.length}/${sha256Hex(data)}`;
    const init = `$file/${q.id}/init`;
    return { db, session, upload, q, seg, fin, init, delivered, failed, lines, stop: async () => { await upload.stop(); db.close(); } };
  }

  it('confirms segments by PUBACK 0x00, sends a segment again on 0x80, the whole file again when fin gets 0x80, done on fin 0x00', async () => {
    const t = await setup();
    const { session } = t;
    await until(() => session.waiting(t.init), 5000, 'init');
    const init = InitPayloadSchema.parse(JSON.parse(session.client.published[0]!.payload.toString()));
    expect(init).toMatchObject({ name: t.q.name, size: 3072, checksum: t.q.sha256, user_data: { kind: 'snapshot', fleet: 'city', vehicle: 'bus-1' } });
    session.puback(t.init, 0x00);
    await until(() => [0, 1, 2].every((i) => session.waiting(t.seg(i))), 5000, 'three segments');
    session.puback(t.seg(0), 0x00);
    session.puback(t.seg(1), 0x80); // EMQX could not store it: that block again
    session.puback(t.seg(2), 0x00);
    await until(() => session.waiting(t.seg(1)), 5000, 'segment 1 again');
    expect(t.upload.get(t.q.id)!.confirmed).toEqual([[0, 1024], [2048, 3072]]);
    expect(session.waiting(t.fin)).toBe(false);
    session.puback(t.seg(1), 0x00);
    await until(() => session.waiting(t.fin), 5000, 'fin');
    session.puback(t.fin, 0x80); // assembly failed: every block again
    await until(() => [0, 1, 2].every((i) => session.count(t.seg(i)) >= 2 && session.waiting(t.seg(i))), 5000, 'every segment again');
    expect(t.upload.get(t.q.id)).toMatchObject({ restarts: 1, confirmed: [] });
    for (const i of [0, 1, 2]) session.puback(t.seg(i), 0x00);
    await until(() => session.waiting(t.fin), 5000, 'fin again');
    session.puback(t.fin, 0x00);
    await until(() => t.delivered.length === 1, 5000, 'delivered');
    expect(t.upload.get(t.q.id)).toMatchObject({ state: 'delivered', confirmed: [[0, 3072]] });
    expect([0, 1, 2].map((i) => session.count(t.seg(i)))).toEqual([2, 3, 2]);
    await t.stop();
  });

  it('0x10 on a segment means every block again; 0x83 cancels the file with the reason recorded', async () => {
    const t = await setup();
    const { session } = t;
    await until(() => session.waiting(t.init), 5000, 'init');
    session.puback(t.init, 0x00);
    await until(() => session.waiting(t.seg(2)), 5000, 'segments');
    session.puback(t.seg(0), 0x00);
    session.puback(t.seg(1), 0x10); // mqtt.js calls this success; EMQX means "send the whole file again"
    await until(() => t.upload.get(t.q.id)!.restarts === 1, 5000, 'restart on 0x10');
    expect(t.upload.get(t.q.id)!.confirmed).toEqual([]);
    session.puback(t.seg(2), 0x83);
    await until(() => t.failed.length === 1, 5000, 'cancelled');
    expect(t.upload.get(t.q.id)).toMatchObject({ state: 'failed', error: expect.stringMatching(/EMQX cancelled the transfer at segment \(0x83\)/) });
    await t.stop();
  });
});

/**
 * What every UploadStore must do (gateway/upload-queue.ts): the pump relies
 * on these and on nothing else. `make` gives an empty store, `reopen` opens
 * the same queue again (as after a restart of the bus), `close` ends both.
 */
function uploadStoreContract(name: string, make: () => { store: UploadStore; reopen: () => UploadStore; close: () => void }) {
  describe(`UploadStore contract: ${name}`, () => {
    const meta = (kind: 'snapshot' | 'clip', alarmId: string | null = null): EvidenceMeta => ({
      v: 1,
      kind,
      fleet: 'city',
      vehicle: 'bus-1',
      alarmId,
      capturedAt: '2025-01-01T00:00:00Z',
      timeSource: 'gps',
      geotag: null,
      mime: kind === 'clip' ? 'video/mp4' : 'image/jpeg',
    });
    const file = (over: Partial<NewUpload> = {}): NewUpload => {
      const kind = over.kind ?? 'snapshot';
      return { id: randomUUID(), path: `/media/${randomUUID()}.jpg`, name: 'snap.jpg', size: 3072, sha256: SUM, mtimeMs: 1_700_000_000_123, kind, priority: kind === 'snapshot' ? 2 : 3, alarmId: null, meta: meta(kind), createdMs: 1000, ...over };
    };

    /** `n` new files, each put in the store. */
    const putNew = (store: UploadStore, n: number): NewUpload[] =>
      Array.from({ length: n }, () => {
        const f = file();
        store.put(f);
        return f;
      });

    it('put stores a new file as pending with nothing confirmed, and get returns it whole', () => {
      const { store, close } = make();
      const f = file({ alarmId: randomUUID() });
      const put = store.put(f);
      expect(put).toEqual({ ...f, state: 'pending', attempt: 0, restarts: 0, confirmed: [], error: null, updatedMs: f.createdMs });
      expect(store.get(f.id)).toEqual(put);
      expect(store.get('no-such-file')).toBeNull();
      close();
    });

    it('put of an id already queued keeps the file queued under it and returns that one', () => {
      const { store, close } = make();
      const f = file();
      store.put(f);
      store.update(f.id, { confirmed: [[0, 1024]], attempt: 1, restarts: 0, updatedMs: 2000 });
      const again = store.put({ ...f, path: '/elsewhere.jpg', size: 1, createdMs: 5000 });
      expect(again).toMatchObject({ path: f.path, size: 3072, confirmed: [[0, 1024]], attempt: 1, createdMs: 1000 });
      expect(store.list()).toHaveLength(1);
      close();
    });

    it('lists in send order (priority, then oldest, then id), all or one state', () => {
      const { store, close } = make();
      const clipOld = store.put(file({ id: 'c-old', kind: 'clip', createdMs: 100 }));
      const snapNew = store.put(file({ id: 's-new', createdMs: 300 }));
      const snapB = store.put(file({ id: 's-b', createdMs: 200 }));
      const snapA = store.put(file({ id: 's-a', createdMs: 200 }));
      expect(store.list().map((f) => f.id)).toEqual([snapA.id, snapB.id, snapNew.id, clipOld.id]);
      store.finish(snapB.id, 'delivered', null, [[0, 3072]], 400);
      store.finish(snapNew.id, 'failed', 'gone', [], 400);
      expect(store.list('pending').map((f) => f.id)).toEqual([snapA.id, clipOld.id]);
      expect(store.list('delivered').map((f) => f.id)).toEqual([snapB.id]);
      expect(store.list('failed').map((f) => f.id)).toEqual([snapNew.id]);
      close();
    });

    it('update saves progress and setMtime the time verified at, and both outlast a reopen', () => {
      const { store, reopen, close } = make();
      const f = file();
      store.put(f);
      store.update(f.id, { confirmed: [[0, 1024], [2048, 3072]], attempt: 2, restarts: 1, updatedMs: 1500 });
      store.setMtime(f.id, 1_700_000_999_000);
      const expected = { state: 'pending', confirmed: [[0, 1024], [2048, 3072]], attempt: 2, restarts: 1, updatedMs: 1500, mtimeMs: 1_700_000_999_000 };
      expect(store.get(f.id)).toMatchObject(expected);
      expect(reopen().get(f.id)).toMatchObject(expected);
      close();
    });

    it('finish records delivered or failed with its reason and what is confirmed, and returns the file', () => {
      const { store, close } = make();
      const [a, b] = putNew(store, 2) as [NewUpload, NewUpload];
      expect(store.finish(a.id, 'delivered', null, [[0, 3072]], 2000)).toMatchObject({ id: a.id, state: 'delivered', error: null, confirmed: [[0, 3072]], updatedMs: 2000 });
      expect(store.finish(b.id, 'failed', 'deleted on the bus', [[0, 1024]], 2100)).toMatchObject({ id: b.id, state: 'failed', error: 'deleted on the bus', confirmed: [[0, 1024]], updatedMs: 2100 });
      expect(store.finish('no-such-file', 'failed', 'x', [], 2200)).toBeNull();
      close();
    });

    it('requeue puts a failed file back to pending with its restarts reset, and nothing else', () => {
      const { store, close } = make();
      const [failed, pending, delivered] = putNew(store, 3) as [NewUpload, NewUpload, NewUpload];
      store.update(failed.id, { confirmed: [[0, 1024]], attempt: 3, restarts: 4, updatedMs: 1500 });
      store.finish(failed.id, 'failed', 'gave up', [[0, 1024]], 1600);
      store.finish(delivered.id, 'delivered', null, [[0, 3072]], 1600);
      expect(store.requeue(failed.id, 1700)).toBe(true);
      expect(store.get(failed.id)).toMatchObject({ state: 'pending', error: null, restarts: 0, attempt: 3, confirmed: [[0, 1024]], updatedMs: 1700 });
      expect(store.requeue(failed.id, 1800)).toBe(false);
      expect(store.requeue(pending.id, 1800)).toBe(false);
      expect(store.requeue(delivered.id, 1800)).toBe(false);
      expect(store.requeue('no-such-file', 1800)).toBe(false);
      expect(store.get(delivered.id)!.state).toBe('delivered');
      close();
    });

    it('prune forgets delivered files last updated before the time, and only those', () => {
      const { store, close } = make();
      const [old, recent, failed, pending] = putNew(store, 4) as [NewUpload, NewUpload, NewUpload, NewUpload];
      store.finish(old.id, 'delivered', null, [[0, 3072]], 1000);
      store.finish(recent.id, 'delivered', null, [[0, 3072]], 5000);
      store.finish(failed.id, 'failed', 'x', [], 1000);
      expect(store.prune(5000)).toBe(1);
      expect(store.list().map((f) => f.id).sort()).toEqual([recent.id, failed.id, pending.id].sort());
      expect(store.prune(5000)).toBe(0);
      close();
    });
  });
}

const storeDir = mkdtempSync(join(tmpdir(), 'busguard-upload-store-'));
afterAll(() => rmSync(storeDir, { recursive: true, force: true }));

uploadStoreContract('SqliteUploadStore', () => {
  const file = join(storeDir, `${randomUUID()}.db`);
  const dbs = [openDatabase(file)];
  migrate(dbs[0]!, [FILE_UPLOAD_SCHEMA]);
  return {
    store: new SqliteUploadStore(dbs[0]!),
    reopen: () => {
      const db = openDatabase(file);
      dbs.push(db);
      return new SqliteUploadStore(db);
    },
    close: () => {
      for (const db of dbs) db.close();
    },
  };
});

describe('SqliteUploadStore on the bus database', () => {
  it('refuses a database without its table, naming the schema to add', () => {
    const db = openDatabase(join(storeDir, `${randomUUID()}.db`));
    expect(() => new SqliteUploadStore(db)).toThrow(/no table file_uploads; add FILE_UPLOAD_SCHEMA \(gateway\/file-upload\.ts\)/);
    db.close();
  });

  it('commits what makes a file evidence with an fsync (FULL), progress without (NORMAL)', () => {
    const db = openDatabase(join(storeDir, `${randomUUID()}.db`));
    migrate(db, [FILE_UPLOAD_SCHEMA]);
    const store = new SqliteUploadStore(db);
    const meta: EvidenceMeta = { v: 1, kind: 'clip', fleet: 'city', vehicle: 'bus-1', alarmId: null, capturedAt: '2025-01-01T00:00:00Z', timeSource: 'gps', geotag: null };
    const f = { id: randomUUID(), path: '/media/c.mp4', name: 'c.mp4', size: 10, sha256: SUM, mtimeMs: 1, kind: 'clip' as const, priority: 3, alarmId: null, meta, createdMs: 1 };
    const level = (op: () => unknown): string => {
      op();
      return currentDurability(db);
    };
    expect(level(() => store.put(f))).toBe('FULL');
    expect(level(() => store.update(f.id, { confirmed: [[0, 5]], attempt: 1, restarts: 0, updatedMs: 2 }))).toBe('NORMAL');
    expect(level(() => store.finish(f.id, 'failed', 'x', [[0, 5]], 3))).toBe('FULL');
    expect(level(() => store.setMtime(f.id, 4))).toBe('NORMAL');
    expect(level(() => store.requeue(f.id, 5))).toBe('FULL');
    expect(level(() => store.prune(6))).toBe('NORMAL');
    expect(level(() => store.finish(f.id, 'delivered', null, [[0, 10]], 7))).toBe('FULL');
    db.close();
  });
});
