// Evidence files over MQTT on real parts: Mosquitto with the shipped config
// and ACL, the bus's uploader behind the TCP proxy that stands in for its 4G
// link (or a process of its own, for the kill), dispatch's file receiver on
// SQLite and a folder, and a spy subscriber that counts what reached the
// broker. Segments are small (4 KiB) so a file has many.

import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { type Socket, connect as netConnect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import pino, { type Logger } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DISPATCH_FILES_SCHEMA, FileReceiver, FilesConfigSchema, type StoredFile } from '../../dispatch/files.ts';
import { FILE_UPLOAD_SCHEMA, FileUpload, type FileUploadConfig, FileUploadConfigSchema, type QueuedFile, type SegmentSent } from '../../gateway/file-upload.ts';
import { type FileReceipt, type InitPayload, type Range, containsRange, coversAll, fileReceiptTopic, sha256Hex } from '../../protocol/file-transfer.ts';
import type { Fix } from '../../protocol/messages.ts';
import { type MqttConnection, MqttConnectionSchema, MqttSession } from '../../common/mqtt-session.ts';
import { SIGNATURES_SCHEMA, SignatureBook } from '../../dispatch/signatures.ts';
import { type Db, migrate, openDatabase } from '../../common/sqlite.ts';
import { TcpProxy } from '../../scripts/lib/tcp-proxy.ts';
import { sealed, testTrust } from '../helpers/command-keys.ts';
import { Mosquitto, REPO, USERS } from '../helpers/mosquitto.ts';
import { LoggedProcess } from '../helpers/process.ts';
import { until } from './fixture.ts';

const SEG = 4096;
const ref = { fleet: 'city', vehicle: 'bus-1' };
const BASE = 'busguard/v1/city/bus-1/up/file';
const GEOTAG: Fix = { valid: true, lat: 34.3416, lon: 108.9398, altM: 412, speedMps: 7.5, trackDeg: 88, time: '2025-03-01T08:15:02.000Z', ageS: 0.4, stale: false, sats: 9, hdop: 0.9 };

type Line = Record<string, unknown> & { event?: string };

function memoryLog(name: string): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const log = pino({ name, level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  return { log, lines };
}

function connection(url: string, user: string): MqttConnection {
  return MqttConnectionSchema.parse({ url, password: USERS[user], reconnectMinMs: 50, reconnectMaxMs: 300, keepaliveS: 5, connectTimeoutMs: 3000 });
}

/** Connect once with a clean start and no session expiry: whatever session the broker kept for `user` is gone. */
async function endSession(url: string, user: string): Promise<void> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, username: user, password: USERS[user], clientId: user, clean: true, properties: { sessionExpiryInterval: 0 }, reconnectPeriod: 0 });
  await c.endAsync();
}

/** Dispatch's file receiver with its own session, database and evidence folder. */
class DispatchSide {
  session!: MqttSession;
  files!: FileReceiver;
  db!: Db;
  readonly stored: StoredFile[] = [];
  readonly receipts: FileReceipt[] = [];
  readonly logs = memoryLog('dispatch');

  constructor(
    private readonly url: string,
    readonly dbPath: string,
    readonly evidenceDir: string,
  ) {}

  private running = false;

  async start(): Promise<void> {
    this.running = true;
    this.db = openDatabase(this.dbPath);
    migrate(this.db, [DISPATCH_FILES_SCHEMA, SIGNATURES_SCHEMA]);
    this.session = new MqttSession(connection(this.url, 'dispatch'), { username: 'dispatch' }, this.logs.log);
    const session = this.session;
    this.files = new FileReceiver({
      db: this.db,
      signatures: new SignatureBook(this.db, null),
      config: FilesConfigSchema.parse({ dir: this.evidenceDir, maxSegmentBytes: 64 * 1024 }),
      log: this.logs.log,
      sendReceipt: (ref, receipt) => session.client.publish(fileReceiptTopic(ref), sealed('file', ref, receipt), { qos: 1 }),
    });
    this.files.on('stored', (f) => this.stored.push(f));
    this.files.on('receiptSent', (_ref, r) => this.receipts.push(r));
    const ready = new Promise<void>((resolve) => this.files.once('ready', () => resolve()));
    this.files.attach(this.session, 'dispatch');
    await withDeadline(ready, 10_000, 'dispatch subscribed to the file topics');
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    await this.files.idle();
    await this.session.stop();
    this.db.close();
  }

  rejected(): Line[] {
    return this.logs.lines.filter((l) => l.event === 'file.rejected');
  }
}

/** The bus's uploader on a session of its own, through `url` (the proxy, normally). */
class BusSide {
  session!: MqttSession;
  upload!: FileUpload;
  db!: Db;
  readonly sent: SegmentSent[] = [];
  readonly delivered: QueuedFile[] = [];
  readonly failed: QueuedFile[] = [];
  readonly logs = memoryLog('bus');

  constructor(
    private readonly url: string,
    readonly dbPath: string,
    private readonly config: Partial<FileUploadConfig> = {},
    private readonly yieldTo?: () => boolean,
  ) {}

  async start(): Promise<void> {
    this.db = openDatabase(this.dbPath);
    migrate(this.db, [FILE_UPLOAD_SCHEMA]);
    // A fresh session per instance: the broker binds the client id to city/bus-1, and an earlier test's persistent session must not feed this one old receipts.
    await endSession(this.url, 'city/bus-1');
    this.session = new MqttSession(connection(this.url, 'city/bus-1'), { username: 'city/bus-1' }, this.logs.log);
    this.upload = new FileUpload({
      ref,
      db: this.db,
      session: this.session,
      config: FileUploadConfigSchema.parse({ segmentBytes: SEG, windowSegments: 4, windowBytes: 4 * SEG, resendS: 600, ...this.config }),
      log: this.logs.log,
      trust: testTrust(ref, this.logs.log),
      subscribe: true,
      ...(this.yieldTo ? { yieldTo: this.yieldTo } : {}),
    });
    this.upload.on('segmentSent', (s) => this.sent.push(s));
    this.upload.on('delivered', (f) => this.delivered.push(f));
    this.upload.on('failed', (f) => this.failed.push(f));
    this.upload.start();
    await until(() => this.session.connected, 10_000, 'bus connected');
  }

  async stop(): Promise<void> {
    await this.upload.stop();
    await this.session.stop();
    this.db.close();
  }

  sentOf(fileId: string): SegmentSent[] {
    return this.sent.filter((s) => s.fileId === fileId);
  }

  async waitDelivered(fileId: string, timeoutMs = 20_000): Promise<QueuedFile> {
    return until(() => this.delivered.find((f) => f.id === fileId), timeoutMs, `file ${fileId} delivered; bus log tail: ${tail(this.logs.lines)}`);
  }
}

/** Sees every file message that reaches the broker from bus-1. */
class Spy {
  client!: MqttClient;
  readonly seen: { fileId: string; verb: 'init' | 'segment' | 'fin'; offset: number; length: number }[] = [];

  async start(url: string): Promise<void> {
    this.client = mqtt.connect(url, { protocolVersion: 5, username: 'monitor/test', password: USERS['monitor/test'], clientId: 'monitor/test', reconnectPeriod: 0 });
    await withDeadline(new Promise<void>((resolve, reject) => {
      this.client.once('connect', () => resolve());
      this.client.once('error', reject);
    }), 10_000, 'spy connected');
    this.client.on('message', (topic, payload) => {
      const [fileId, verb] = topic.slice(BASE.length + 1).split('/') as [string, string];
      const kind = verb === 'init' || verb === 'fin' ? verb : 'segment';
      this.seen.push({ fileId, verb: kind, offset: kind === 'segment' ? Number(verb) : -1, length: payload.length });
    });
    await this.client.subscribeAsync(`${BASE}/#`, { qos: 1 });
  }

  segments(fileId: string): number[] {
    return this.seen.filter((s) => s.fileId === fileId && s.verb === 'segment').map((s) => s.offset);
  }

  inits(fileId: string): number {
    return this.seen.filter((s) => s.fileId === fileId && s.verb === 'init').length;
  }
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]);
}

function tail(lines: Line[], n = 8): string {
  return lines.slice(-n).map((l) => JSON.stringify(l)).join('\n');
}

/** How many segments a file of `size` bytes takes. */
const segmentsOf = (size: number) => Math.ceil(size / SEG);
/** Offsets of every segment of a file of `size` bytes. */
const offsetsOf = (size: number) => Array.from({ length: segmentsOf(size) }, (_, i) => i * SEG);

async function rawClient(url: string, username: string): Promise<MqttClient> {
  const c = mqtt.connect(url, { protocolVersion: 5, username, password: USERS[username], clientId: `raw-${randomUUID().slice(0, 8)}`, reconnectPeriod: 0 });
  await withDeadline(new Promise<void>((resolve, reject) => {
    c.once('connect', () => resolve());
    c.once('error', reject);
  }), 10_000, `${username} connected`);
  return c;
}

describe('evidence file transfer over MQTT', () => {
  const dir = mkdtempSync(join(tmpdir(), 'busguard-files-'));
  const busDir = join(dir, 'bus-media');
  mkdirSync(busDir, { recursive: true });
  let broker: Mosquitto;
  let proxy: TcpProxy;
  let dispatch: DispatchSide;
  const spy = new Spy();
  const started: { stop(): Promise<void> }[] = [];

  function makeFile(name: string, size: number, fill?: (b: Buffer) => void): { path: string; data: Buffer; sha256: string } {
    const data = randomBytes(size);
    fill?.(data);
    const path = join(busDir, name);
    writeFileSync(path, data);
    return { path, data, sha256: sha256Hex(data) };
  }

  async function bus(config: Partial<FileUploadConfig> = {}, yieldTo?: () => boolean, url = proxy.url): Promise<BusSide> {
    const b = new BusSide(url, join(dir, `bus-${randomUUID().slice(0, 8)}.db`), config, yieldTo);
    await b.start();
    started.push(b);
    return b;
  }

  async function stopBus(b: BusSide): Promise<void> {
    await b.stop();
    started.splice(started.indexOf(b), 1);
  }

  beforeAll(async () => {
    broker = await Mosquitto.start(dir);
    proxy = await TcpProxy.start({ target: { host: '127.0.0.1', port: broker.port } });
    dispatch = new DispatchSide(broker.url, join(dir, 'dispatch.db'), join(dir, 'evidence'));
    await dispatch.start();
    await spy.start(broker.url);
  }, 60_000);

  afterAll(async () => {
    for (const s of started.splice(0)) await s.stop().catch(() => {});
    await spy.client?.endAsync().catch(() => {});
    await dispatch?.stop().catch(() => {});
    await proxy?.stop();
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('carries a snapshot and a clip to dispatch, snapshot first, each verified and stored with its alarm and geotag', async () => {
    const b = await bus();
    b.upload.pause();
    const alarmId = randomUUID();
    const clip = makeFile('clip-1.mp4', 9 * SEG + 123);
    const snap = makeFile('snap-1.jpg', 3 * SEG + 7);
    // The clip is queued first; the snapshot still goes first.
    const qc = await b.upload.enqueue({ path: clip.path, kind: 'clip', alarmId, capturedAt: '2025-03-01T08:15:00.000Z', timeSource: 'gps', geotag: GEOTAG, mime: 'video/mp4' });
    const qs = await b.upload.enqueue({ path: snap.path, kind: 'snapshot', alarmId, capturedAt: '2025-03-01T08:15:02.000Z', timeSource: 'gps', geotag: GEOTAG, mime: 'image/jpeg' });
    expect(qs.sha256).toBe(snap.sha256);
    b.upload.resume();
    await b.waitDelivered(qs.id);
    await b.waitDelivered(qc.id);

    for (const [q, f, kind] of [[qs, snap, 'snapshot'], [qc, clip, 'clip']] as const) {
      const stored = dispatch.files.get(ref, q.id)!;
      expect(stored).toMatchObject({ state: 'complete', kind, alarmId, sha256: f.sha256, size: f.data.length, fleet: 'city', vehicle: 'bus-1', geotag: GEOTAG });
      expect(readFileSync(stored.path!).equals(f.data)).toBe(true);
      expect(sha256Hex(readFileSync(stored.path!))).toBe(f.sha256);
    }
    expect(dispatch.files.forAlarm(ref, alarmId).map((f) => f.kind).sort()).toEqual(['clip', 'snapshot']);
    // Every segment of the snapshot reached the broker before the first of the clip.
    const order = spy.seen.filter((s) => s.verb === 'segment' && (s.fileId === qs.id || s.fileId === qc.id)).map((s) => s.fileId);
    expect(order.lastIndexOf(qs.id)).toBeLessThan(order.indexOf(qc.id));
    expect(spy.segments(qs.id).sort((x, y) => x - y)).toEqual(offsetsOf(snap.data.length));
    expect(spy.segments(qc.id).sort((x, y) => x - y)).toEqual(offsetsOf(clip.data.length));
    expect(b.upload.get(qc.id)).toMatchObject({ state: 'delivered', confirmed: [[0, clip.data.length]] });
    const events = dispatch.logs.lines.filter((l) => l.event === 'file.stored' && l.fileId === qc.id);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ alarmId, kind: 'clip', fleet: 'city', vehicle: 'bus-1' });
    await stopBus(b);
  });

  it('link cut with segments out and dispatch away: after it comes back, not one segment dispatch holds is sent again', async () => {
    const N = 17;
    const K = 5; // confirmed before the cut
    const W = 4; // out, reached the broker, never receipted (dispatch is away) when the link is cut
    let limit = K;
    const id = randomUUID();
    const b = await bus({}, () => b.sentOf(id).length >= limit);
    const f = makeFile('clip-cut.mp4', (N - 1) * SEG + 1000);
    await b.upload.enqueue({ id, path: f.path, kind: 'clip', alarmId: randomUUID(), capturedAt: '2025-03-01T09:00:00.000Z', timeSource: 'gps', geotag: GEOTAG });
    await until(() => coversAll(b.upload.get(id)!.confirmed, K * SEG), 10_000, `first ${K} segments confirmed`);

    await dispatch.stop();
    limit = K + W;
    b.upload.kick();
    await until(() => spy.segments(id).length === K + W, 10_000, `${K + W} segments at the broker`);
    // ...and PUBACKed: mqtt.js would otherwise publish the unacknowledged ones again itself after the reconnect.
    await until(() => Object.keys(b.session.client.outgoing).length === 0, 10_000, 'every publish acknowledged by the broker');
    expect(b.upload.stats().inFlightSegments).toBe(W);
    const confirmedAtCut = b.upload.get(id)!.confirmed;
    expect(confirmedAtCut).toEqual([[0, K * SEG]]);

    proxy.cut();
    await until(() => !b.session.connected, 10_000, 'bus sees the link down');
    proxy.restore();
    limit = Infinity;
    await until(() => b.session.connected && spy.inits(id) === 2, 10_000, 'bus back, file announced again');
    // Dispatch, away, has not answered the announcement: however often prodded, nothing more goes.
    b.upload.kick();
    await b.upload.settled();
    expect(b.sentOf(id).filter((s) => s.connection > 1)).toHaveLength(0);
    expect(spy.segments(id)).toHaveLength(K + W);

    await dispatch.start();
    await b.waitDelivered(id);
    // Dispatch took the W queued for it while away, and its answer to the new init said so.
    expect(spy.segments(id).sort((x, y) => x - y)).toEqual(offsetsOf(f.data.length));
    expect(b.sentOf(id)).toHaveLength(N);
    expect(b.sentOf(id).filter((s) => s.connection > 1).every((s) => s.offset >= (K + W) * SEG)).toBe(true);
    expect(readFileSync(dispatch.files.get(ref, id)!.path!).equals(f.data)).toBe(true);
    await stopBus(b);
  });

  it('link cut in the middle of a live transfer: nothing confirmed before the cut goes again, and the file arrives whole', async () => {
    const N = 40;
    const f = makeFile('clip-live-cut.mp4', N * SEG);
    const b = await bus();
    let confirmedAtCut: Range[] | null = null;
    let connectionAtCut = 0;
    b.upload.on('segmentSent', (s) => {
      // Cut on the spot, while segments are out and receipts on their way.
      if (confirmedAtCut === null && s.offset === 12 * SEG) {
        confirmedAtCut = b.upload.get(s.fileId)!.confirmed;
        connectionAtCut = s.connection;
        proxy.cut();
        setTimeout(() => proxy.restore(), 300);
      }
    });
    const q = await b.upload.enqueue({ path: f.path, kind: 'clip', alarmId: null, capturedAt: '2025-03-01T09:10:00.000Z', timeSource: 'system', geotag: null });
    await b.waitDelivered(q.id);
    expect(confirmedAtCut).not.toBeNull();
    const after = b.sentOf(q.id).filter((s) => s.connection > connectionAtCut);
    expect(after.length).toBeGreaterThan(0);
    for (const s of after) expect(containsRange(confirmedAtCut!, [s.offset, s.offset + s.length]), `segment at ${s.offset} re-sent though confirmed`).toBe(false);
    const stored = dispatch.files.get(ref, q.id)!;
    expect(stored.state).toBe('complete');
    expect(readFileSync(stored.path!).equals(f.data)).toBe(true);
    await stopBus(b);
  });

  it('bus process SIGKILLed mid-transfer: the restarted bus sends only what dispatch does not hold', async () => {
    const N = 15;
    const K = 4;
    const W = 3;
    const f = makeFile('clip-kill.mp4', (N - 1) * SEG + 77);
    const id = randomUUID();
    const dbPath = join(dir, 'bus-kill.db');
    const script = fileURLToPath(new URL('../helpers/file-bus.ts', import.meta.url));
    const spawnBus = (holdAfter?: number) => {
      const child = spawn(process.execPath, ['--import', 'tsx', script], {
        cwd: REPO,
        stdio: ['pipe', 'pipe', 'pipe'],
        env: {
          ...process.env,
          BG_URL: proxy.url,
          BG_PASSWORD: USERS['city/bus-1']!,
          BG_CLIENT_ID: 'bg-city-bus-1-kill-test',
          BG_DB: dbPath,
          BG_FILE: f.path,
          BG_FILE_ID: id,
          BG_SEGMENT_BYTES: String(SEG),
          BG_WINDOW_SEGMENTS: String(W),
          ...(holdAfter !== undefined ? { BG_HOLD_AFTER: String(holdAfter) } : {}),
        },
      });
      const p = new LoggedProcess(child);
      started.push({ stop: () => p.kill('SIGKILL') });
      return p;
    };
    const confirmed = (): Range[] => {
      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      try {
        const row = db.prepare('SELECT confirmed FROM file_uploads WHERE id = ?').get(id) as { confirmed: string } | undefined;
        return row ? (JSON.parse(row.confirmed) as Range[]) : [];
      } finally {
        db.close();
      }
    };

    const first = spawnBus(K);
    await first.waitForEvent('file-bus.started', () => true, 20_000);
    await until(() => coversAll(confirmed(), K * SEG), 15_000, `first ${K} segments confirmed in the bus's database`);
    await dispatch.stop();
    first.child.stdin!.write(`hold ${K + W}\n`);
    await until(() => spy.segments(id).length === K + W, 10_000, `${K + W} segments at the broker`);
    await first.kill('SIGKILL');

    const second = spawnBus();
    const up = await second.waitForEvent('file-bus.started', () => true, 20_000);
    expect(up.resumedFrom).toEqual([[0, K * SEG]]);
    await until(() => spy.inits(id) === 2, 10_000, 'the restarted bus announces the file again');
    // Dispatch, away, has not answered: however often prodded, the bus sends nothing yet.
    second.child.stdin!.write('kick\n');
    const settled = await second.waitForEvent('file-bus.settled', () => true, 10_000);
    expect(settled.segmentsSent).toBe(0);
    expect(spy.segments(id)).toHaveLength(K + W);
    await dispatch.start();
    await second.waitForEvent('file.delivered', (l) => l.fileId === id, 20_000);
    expect(spy.segments(id).sort((x, y) => x - y)).toEqual(offsetsOf(f.data.length));
    expect(second.events('file.segment-sent').map((l) => l.offset)).toEqual(offsetsOf(f.data.length).slice(K + W));
    expect(readFileSync(dispatch.files.get(ref, id)!.path!).equals(f.data)).toBe(true);
    await second.kill('SIGTERM');
  });

  it('a segment corrupted on the way fails its checksum at dispatch, is asked for again at once, and the file ends up correct', async () => {
    const marker = randomBytes(32);
    const f = makeFile('snap-flip.jpg', 6 * SEG, (b) => marker.copy(b, 2 * SEG + 100));
    const link = await flippingLink(broker.port, marker);
    const b = await bus({}, undefined, link.url);
    try {
      const q = await b.upload.enqueue({ path: f.path, kind: 'snapshot', alarmId: randomUUID(), capturedAt: '2025-03-01T09:20:00.000Z', timeSource: 'gps', geotag: GEOTAG });
      await b.waitDelivered(q.id);
      expect(link.flipped()).toBe(true);
      const bad = dispatch.rejected().filter((l) => l.fileId === q.id);
      expect(bad).toHaveLength(1);
      expect(bad[0]!.reason).toMatch(/segment \[8192, 12288\) fails its SHA-256 .*corrupted on the way/);
      // That one segment twice, every other once; nothing waited for a timeout (resendS is 600).
      expect(b.sentOf(q.id).map((s) => s.offset).sort((x, y) => x - y)).toEqual([...offsetsOf(f.data.length), 2 * SEG].sort((x, y) => x - y));
      const stored = dispatch.files.get(ref, q.id)!;
      expect(stored.attempt).toBe(1);
      expect(readFileSync(stored.path!).equals(f.data)).toBe(true);
    } finally {
      await stopBus(b);
      await link.stop();
    }
  });

  it('a file whose SHA-256 fails at fin is discarded and asked for again whole; the second time it is stored', async () => {
    const N = 5;
    const f = makeFile('clip-forged.mp4', N * SEG);
    const id = randomUUID();
    // Someone with the bus's credentials gets in first with a wrong first segment, sent without its
    // own checksum (optional in the framing), so only the whole file's SHA-256 can catch it.
    const rogue = await rawClient(broker.url, 'city/bus-1');
    const init: InitPayload = {
      name: 'clip-forged.mp4',
      size: f.data.length,
      checksum: f.sha256,
      user_data: { v: 1, kind: 'clip', fleet: 'city', vehicle: 'bus-1', alarmId: null, capturedAt: '2025-03-01T09:30:00.000Z', timeSource: 'gps', geotag: null },
    };
    await rogue.publishAsync(`${BASE}/${id}/init`, JSON.stringify(init), { qos: 1 });
    await rogue.publishAsync(`${BASE}/${id}/0`, randomBytes(SEG), { qos: 1 });
    await rogue.endAsync();
    await until(() => dispatch.receipts.some((r) => r.fileId === id && coversAll(r.have, SEG)), 10_000, 'the forged segment held at dispatch');

    const b = await bus();
    const q = await b.upload.enqueue({ id, path: f.path, kind: 'clip', alarmId: null, capturedAt: '2025-03-01T09:30:00.000Z', timeSource: 'gps', geotag: null });
    const done = await b.waitDelivered(q.id);
    expect(done.restarts).toBe(1);
    const mismatch = dispatch.logs.lines.filter((l) => l.event === 'file.checksum-mismatch' && l.fileId === id);
    expect(mismatch).toHaveLength(1);
    expect(dispatch.receipts.some((r) => r.fileId === id && r.state === 'corrupt' && r.attempt === 2 && r.have.length === 0)).toBe(true);
    // First round: all but the forged one (dispatch said it held it); second round: the whole file.
    expect(b.sentOf(id)).toHaveLength(N - 1 + N);
    const stored = dispatch.files.get(ref, id)!;
    expect(stored).toMatchObject({ state: 'complete', attempt: 2, sha256: f.sha256 });
    expect(readFileSync(stored.path!).equals(f.data)).toBe(true);
    await stopBus(b);
  });

  it('malformed file messages are refused with a clear reason, and dispatch and the bus keep going', async () => {
    const c = await rawClient(broker.url, 'city/bus-1');
    const small = randomUUID();
    const good = (over: Partial<InitPayload> = {}): string =>
      JSON.stringify({
        name: 'x.jpg',
        size: 100,
        checksum: 'ab'.repeat(32),
        user_data: { v: 1, kind: 'snapshot', fleet: 'city', vehicle: 'bus-1', alarmId: null, capturedAt: '2025-03-01T10:00:00.000Z', timeSource: 'gps', geotag: null },
        ...over,
      });
    const cases: [topic: string, payload: string | Buffer, reason: RegExp][] = [
      [`${BASE}/${randomUUID()}/init`, '{"name":', /init: not JSON/],
      [`${BASE}/${randomUUID()}/init`, JSON.stringify({ name: 'x.jpg', size: 1, user_data: {} }), /init: checksum: .*; user_data/],
      [`${BASE}/${randomUUID()}/init`, good({ name: '../../etc/passwd' }), /init: name: a plain file name/],
      [`${BASE}/${randomUUID()}/init`, good({ size: -5 }), /init: size/],
      [`${BASE}/${randomUUID()}/init`, good({ user_data: { ...JSON.parse(good()).user_data, vehicle: 'bus-2' } }), /init names city\/bus-2, topic is city\/bus-1/],
      [`${BASE}/${randomUUID()}/0`, randomBytes(10), /segment for unknown file .*no init received/],
      [`${BASE}/${randomUUID()}/fin/10`, '', /fin for unknown file/],
      [`${BASE}/not.an.id/init`, good(), /file id "not.an.id" not valid/],
      [`${BASE}/${small}/abc`, 'x', /"abc" is neither init, fin nor a byte offset/],
      [`${BASE}/${small}/007`, 'x', /"007" is neither init, fin nor a byte offset/],
      [`${BASE}/${small}/0/nothex`, 'x', /segment checksum "nothex" is not a SHA-256/],
      [`${BASE}/${small}/0/${'a'.repeat(64)}/extra`, 'x', /segment topic has too many levels/],
      [`${BASE}/${small}/fin`, '', /fin size "" is not a whole number/],
      [`${BASE}/${small}/init/now`, good(), /init takes nothing after it/],
      [`${BASE}/${small}`, 'x', /expected \{fileId\}\/init/],
      // A file announced properly, then abused.
      [`${BASE}/${small}/init`, good(), /^$/],
      [`${BASE}/${small}/90`, randomBytes(20), /segment \[90, 110\) runs past the file's 100 bytes/],
      [`${BASE}/${small}/0`, randomBytes(70 * 1024), /segment of 71680 bytes is larger than files.maxSegmentBytes 65536/],
      [`${BASE}/${small}/0`, Buffer.alloc(0), /empty segment/],
      [`${BASE}/${small}/fin/100`, 'payload', /fin carries no payload/],
      [`${BASE}/${small}/fin/99`, '', /fin says 99 bytes, init said 100/],
      [`${BASE}/${small}/fin/100`, '', /^$/],
    ];
    const from = dispatch.rejected().length;
    for (const [topic, payload] of cases) await c.publishAsync(topic, payload, { qos: 1 });
    await until(() => dispatch.logs.lines.some((l) => l.event === 'file.incomplete' && l.fileId === small), 10_000, 'the last case processed');
    await dispatch.files.idle();
    // One log line per bad message, naming its topic and what is wrong (files go side by side, so in any order).
    const rejected = dispatch.rejected().slice(from);
    const expected = cases.filter(([, , r]) => r.source !== '^$');
    expect(rejected).toHaveLength(expected.length);
    const unmatched = [...rejected];
    for (const [topic, , reason] of expected) {
      const i = unmatched.findIndex((l) => l.topic === topic && reason.test(String(l.reason)));
      expect(i, `no "file.rejected" line for ${topic} matching ${reason}; got ${JSON.stringify(rejected.filter((l) => l.topic === topic))}`).toBeGreaterThanOrEqual(0);
      unmatched.splice(i, 1);
    }
    // Nothing malformed reached the evidence folder or the table.
    expect(dispatch.files.list().filter((f) => f.state === 'complete' && f.fileId === small)).toHaveLength(0);
    await c.endAsync();

    // The bus ignores garbage on its receipt topic, with a log line: unsigned, it is refused
    // before it is read; signed by dispatch's key but malformed, it is rejected as such.
    const b = await bus();
    const d = await rawClient(broker.url, 'dispatch');
    for (const garbage of ['{"v":1,', '{"v":1,"fileId":"x","state":"nonsense","attempt":0,"have":[]}', '[]', Buffer.from([0, 255])]) {
      await d.publishAsync('busguard/v1/city/bus-1/down/file', garbage, { qos: 1 });
    }
    await d.publishAsync('busguard/v1/city/bus-1/down/file', sealed('file', ref, { v: 1, fileId: 'x', state: 'nonsense', attempt: 0, have: [] }), { qos: 1 });
    await until(() => b.logs.lines.filter((l) => l.event === 'downlink.refused' && l.kind === 'file').length === 4, 10_000, 'bus refuses four unsigned receipts');
    await until(() => b.logs.lines.filter((l) => l.event === 'file.receipt-rejected').length === 1, 10_000, 'bus rejects a signed malformed receipt');
    await d.endAsync();

    // And both ends still carry a file.
    const f = makeFile('after-garbage.jpg', 2 * SEG + 5);
    const q = await b.upload.enqueue({ path: f.path, kind: 'snapshot', alarmId: null, capturedAt: '2025-03-01T10:01:00.000Z', timeSource: 'gps', geotag: null });
    await b.waitDelivered(q.id);
    expect(readFileSync(dispatch.files.get(ref, q.id)!.path!).equals(f.data)).toBe(true);
    await stopBus(b);
  });

  it('a file sent again after it was stored is stored once: the bus learns at init that dispatch has it', async () => {
    const f = makeFile('snap-twice.jpg', 3 * SEG + 1);
    const id = randomUUID();
    const evidence = { id, path: f.path, kind: 'snapshot' as const, alarmId: randomUUID(), capturedAt: '2025-03-01T11:00:00.000Z', timeSource: 'gps' as const, geotag: GEOTAG };
    const first = await bus();
    await first.upload.enqueue(evidence);
    await first.waitDelivered(id);
    await stopBus(first);
    const storedBefore = dispatch.stored.filter((s) => s.fileId === id);
    expect(storedBefore).toHaveLength(1);

    // A bus that lost its database queues the same evidence again.
    const second = await bus();
    await second.upload.enqueue(evidence);
    await second.waitDelivered(id);
    expect(second.sentOf(id)).toHaveLength(0);
    expect(spy.inits(id)).toBe(2);
    await stopBus(second);

    // And the whole transfer replayed by hand, segments, fin and all.
    const c = await rawClient(broker.url, 'city/bus-1');
    const init: InitPayload = { name: 'snap-twice.jpg', size: f.data.length, checksum: f.sha256, user_data: { v: 1, kind: 'snapshot', fleet: 'city', vehicle: 'bus-1', alarmId: evidence.alarmId, capturedAt: evidence.capturedAt, timeSource: 'gps', geotag: GEOTAG } };
    await c.publishAsync(`${BASE}/${id}/init`, JSON.stringify(init), { qos: 1 });
    for (const off of offsetsOf(f.data.length)) {
      const part = f.data.subarray(off, off + SEG);
      await c.publishAsync(`${BASE}/${id}/${off}/${sha256Hex(part)}`, part, { qos: 1 });
    }
    const receiptsBefore = dispatch.receipts.length;
    await c.publishAsync(`${BASE}/${id}/fin/${f.data.length}/${f.sha256}`, '', { qos: 1 });
    await until(() => dispatch.receipts.slice(receiptsBefore).some((r) => r.fileId === id && r.state === 'complete'), 10_000, 'dispatch confirms the replay as complete');
    await c.endAsync();

    expect(dispatch.stored.filter((s) => s.fileId === id)).toHaveLength(1);
    expect(dispatch.files.list(ref).filter((s) => s.fileId === id)).toHaveLength(1);
    expect(readdirSync(join(dispatch.evidenceDir, 'city', 'bus-1')).filter((n) => n.startsWith(id))).toEqual([id]);
    expect(readdirSync(join(dispatch.evidenceDir, 'city', 'bus-1', id))).toEqual(['snap-twice.jpg']);
    expect(readFileSync(dispatch.files.get(ref, id)!.path!).equals(f.data)).toBe(true);
  });

  it('an empty file goes as init and fin alone and is stored empty', async () => {
    const b = await bus();
    const f = makeFile('snap-empty.jpg', 0);
    const q = await b.upload.enqueue({ path: f.path, kind: 'snapshot', alarmId: null, capturedAt: '2025-03-01T11:30:00.000Z', timeSource: 'gps', geotag: null });
    await b.waitDelivered(q.id);
    expect(b.sentOf(q.id)).toHaveLength(0);
    const stored = dispatch.files.get(ref, q.id)!;
    expect(stored).toMatchObject({ state: 'complete', size: 0, sha256: f.sha256 });
    expect(readFileSync(stored.path!)).toHaveLength(0);
    await stopBus(b);
  });

  it('a file deleted or changed on the bus before it went is failed with the reason; the rest still goes', async () => {
    const b = await bus();
    await expect(b.upload.enqueue({ path: join(busDir, 'never-was.jpg'), kind: 'snapshot', alarmId: null, capturedAt: '2025-03-01T12:00:00.000Z', timeSource: 'gps', geotag: null })).rejects.toThrow(
      /evidence file .*never-was\.jpg: cannot read it \(ENOENT\); nothing queued/,
    );
    b.upload.pause();
    const gone = makeFile('snap-gone.jpg', 2 * SEG);
    const changed = makeFile('snap-changed.jpg', 2 * SEG);
    const fine = makeFile('clip-fine.mp4', 3 * SEG);
    const common = { alarmId: null, capturedAt: '2025-03-01T12:00:00.000Z', timeSource: 'gps' as const, geotag: null };
    const qg = await b.upload.enqueue({ path: gone.path, kind: 'snapshot', ...common });
    const qc = await b.upload.enqueue({ path: changed.path, kind: 'snapshot', ...common });
    const qf = await b.upload.enqueue({ path: fine.path, kind: 'clip', ...common });
    unlinkSync(gone.path);
    writeFileSync(changed.path, randomBytes(2 * SEG)); // same size, other bytes: bit rot or an overwrite
    b.upload.resume();
    await b.waitDelivered(qf.id);
    await until(() => b.failed.length === 2, 10_000, 'two files failed');
    expect(b.upload.get(qg.id)).toMatchObject({ state: 'failed', error: expect.stringMatching(/snap-gone\.jpg was deleted on the bus before it was sent/) });
    expect(b.upload.get(qc.id)).toMatchObject({ state: 'failed', error: expect.stringMatching(/snap-changed\.jpg changed or is corrupted on the bus: queued with sha256 [0-9a-f]{64}, now [0-9a-f]{64}/) });
    expect(b.logs.lines.filter((l) => l.event === 'file.failed').map((l) => l.fileId).sort()).toEqual([qg.id, qc.id].sort());
    expect(dispatch.files.get(ref, qg.id)).toBeNull();
    expect(dispatch.files.get(ref, qc.id)).toBeNull();
    await stopBus(b);
  });
});

/**
 * A link that flips one bit of the first occurrence of `marker` on its way up
 * (bus → broker), once, and carries everything else unchanged. The bytes of
 * a segment payload travel raw in the PUBLISH, so the marker is found there.
 */
async function flippingLink(targetPort: number, marker: Buffer): Promise<{ url: string; flipped: () => boolean; stop: () => Promise<void> }> {
  let flipped = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = netConnect(targetPort, '127.0.0.1');
    sockets.add(client);
    sockets.add(upstream);
    let tailBytes = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      let out = chunk;
      if (!flipped) {
        const window = Buffer.concat([tailBytes, chunk]);
        const at = window.indexOf(marker);
        if (at >= 0) {
          // The marker's last byte is always in this chunk: had it ended in the tail, the last chunk would have had it.
          out = Buffer.from(chunk);
          const i = at + marker.length - 1 - tailBytes.length;
          out[i] = out[i]! ^ 0x01;
          flipped = true;
        }
        tailBytes = window.subarray(Math.max(0, window.length - (marker.length - 1)));
      }
      if (!upstream.write(out)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const s of [client, upstream]) {
      s.on('error', end);
      s.on('close', end);
    }
  });
  const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)));
  return {
    url: `mqtt://127.0.0.1:${port}`,
    flipped: () => flipped,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
