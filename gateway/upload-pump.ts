// The sending side of the bus's file upload (gateway/file-upload.ts): takes
// the pending files of the queue (gateway/upload-queue.ts) and sends each as
// init, segments at byte offsets and fin, in EMQX's framing, and keeps the
// state of each file while it goes. What dispatch holds comes back in its
// receipts (down/file) as byte ranges, and is committed to the queue as it
// arrives, so after a cut, a reconnect or a restart only what dispatch does
// not hold goes again. Before segments, the bus announces the file (init) and
// waits for dispatch's answer, which says what it already has: segments
// whose receipts were lost in a cut are not sent twice.
//
// Order: snapshots before clips (their lane order), oldest first; a file
// starts only when every segment of the one before is out. A window bounds
// the segments out and not yet receipted (in count and bytes), so at most
// that much file data sits in the socket in front of an alarm published
// now; `yieldTo` lets the agent stop new segments while an alarm waits.
// With prefix "$file" the PUBACK reason codes answer instead of receipts
// (gateway/upload-emqx.ts).

import type { CommandTrust } from './command-trust.ts';
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  FILE_PREFIXES,
  FileReceiptSchema,
  type InitPayload,
  type Range,
  SHIPPED_MOSQUITTO_LIMIT_BYTES,
  coversAll,
  fileReceiptTopic,
  finTopic,
  initTopic,
  segmentSizeProblem,
  segmentTopic,
  sha256Hex,
} from '../protocol/file-transfer.ts';
import { decode, encode } from '../protocol/messages.ts';
import type { VehicleRef } from '../protocol/topics.ts';
import type { MqttSession } from '../common/mqtt-session.ts';
import { type FileVerb, PubackCodes, type Verdict, emqxVerdict, refusalVerdict } from './upload-emqx.ts';
import { checkLocalCopy, readLocalRange } from './upload-local.ts';
import type { UploadRecord, UploadStore } from './upload-queue.ts';
import { type EvidenceSigner, fileSigningText } from '../protocol/signed-evidence.ts';
import { type FileUnderWay, type FileUploadEvents, type SegmentSent, UploadState } from './upload-state.ts';

export const FileUploadConfigSchema = z
  .object({
    /** "vehicle": busguard/v1/{fleet}/{vehicle}/up/file/... to our dispatch; "$file": EMQX's own file transfer. */
    prefix: z.enum(FILE_PREFIXES).default('vehicle'),
    /**
     * Bytes per segment. Small enough that a segment ahead of an alarm in the
     * socket costs little time on a slow 4G uplink (64 KiB ≈ 1 s at 0.5 Mbit/s),
     * large enough that topic and receipt overhead stay under 1 %.
     */
    segmentBytes: z.number().int().min(1024).max(16 * 1024 * 1024).default(64 * 1024),
    /** The broker's packet limit (Mosquitto message_size_limit, EMQX max_packet_size): segments must fit under it with their topic. */
    brokerMaxPacketBytes: z.number().int().min(4096).default(SHIPPED_MOSQUITTO_LIMIT_BYTES),
    /** Segments out and not yet receipted, at most. */
    windowSegments: z.number().int().min(1).max(256).default(4),
    /** Bytes out and not yet receipted, at most (one segment may always go). */
    windowBytes: z.number().int().min(1024).max(64 * 1024 * 1024).default(256 * 1024),
    /** Send init, a segment or fin again when dispatch has not answered it after this long while connected. */
    resendS: z.number().min(0.5).max(3_600).default(30),
    /** Whole-file re-sends after SHA-256 failures at dispatch before the file is given up as failed. */
    maxRestarts: z.number().int().min(0).max(100).default(3),
    /** EMQX only: how long it keeps loose segments (init's segments_ttl). */
    segmentsTtlS: z.number().int().min(1).optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    const problem = segmentSizeProblem(c.segmentBytes, c.brokerMaxPacketBytes);
    if (problem) ctx.addIssue({ code: 'custom', path: ['segmentBytes'], message: problem });
  });
export type FileUploadConfig = z.output<typeof FileUploadConfigSchema>;

export interface UploadPumpOptions {
  ref: VehicleRef;
  store: UploadStore;
  /** The MQTT session to publish on: the uplink's, or one of its own. */
  session: MqttSession;
  config: FileUploadConfig;
  log: Logger;
  /**
   * Subscribe to the receipt topic (down/file) at each connect: true for a
   * session of its own; leave false on the uplink's session, which already
   * subscribes to down/+ (subscribing twice gets every receipt twice).
   */
  subscribe?: boolean;
  /** True while something more urgent waits to go (an alarm not yet confirmed): no new segment starts then. Call kick() when it turns false. */
  yieldTo?: () => boolean;
  /** Where deliveries, failures and segments sent are announced. */
  events: EventEmitter<FileUploadEvents>;
  /** The check a file receipt passes before it is applied (a forged one could delete unsent evidence). */
  trust: CommandTrust;
  /** Signs each file's init (name, size, SHA-256, meta) with the unit's key; null: unsigned. */
  signer?: EvidenceSigner | null;
}

export class UploadPump {
  private readonly files: UploadState;
  private readonly resendMs: number;
  private connection = 0;
  private pumping = false;
  private pumpAgain = false;
  private pumpDone: Promise<void> = Promise.resolve();
  private paused = false;
  private pausedUntil = 0;
  private stopped = true;
  private timer: NodeJS.Timeout | null = null;
  private readonly counters = { segmentsSent: 0, bytesSent: 0, initsSent: 0, finsSent: 0 };
  private readonly pubacks = new PubackCodes();
  private readonly handlers = {
    connected: () => this.onConnected(),
    disconnected: () => this.onDisconnected(),
    message: (topic: string, payload: Buffer) => void this.handleDownlink(topic, payload),
  };

  constructor(private readonly o: UploadPumpOptions) {
    this.resendMs = o.config.resendS * 1000;
    const { store, log, events } = o;
    const { segmentBytes, maxRestarts } = o.config;
    this.files = new UploadState({ store, log, events, segmentBytes, maxRestarts, kick: () => this.kick() });
  }

  get running(): boolean {
    return !this.stopped;
  }

  /** Take the queue up where the store left it and send whenever connected. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    for (const rec of this.o.store.list('pending')) this.activate(rec);
    const { session } = this.o;
    session.on('connected', this.handlers.connected);
    session.on('disconnected', this.handlers.disconnected);
    session.on('message', this.handlers.message);
    if (this.o.config.prefix === '$file') session.client.on('packetreceive', this.pubacks.onPacket);
    this.timer = setInterval(() => this.tick(), Math.min(1000, this.resendMs));
    this.timer.unref();
    if (session.connected) this.onConnected();
  }

  /** Stop sending (the session stays up: it is the caller's). What is confirmed is in the store. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    const { session } = this.o;
    session.off('connected', this.handlers.connected);
    session.off('disconnected', this.handlers.disconnected);
    session.off('message', this.handlers.message);
    session.client.off('packetreceive', this.pubacks.onPacket);
    await this.pumpDone;
  }

  /** Something changed: send what can be sent. */
  kick(): void {
    if (this.stopped) return;
    this.pumpAgain = true;
    if (this.pumping) return;
    this.pumping = true;
    this.pumpDone = this.pump();
  }

  async settled(): Promise<void> {
    while (this.pumping) await this.pumpDone;
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.kick();
  }

  stats(): { segmentsSent: number; bytesSent: number; initsSent: number; finsSent: number; inFlightSegments: number; inFlightBytes: number; connection: number } {
    return { ...this.counters, inFlightSegments: this.files.inflightSegments, inFlightBytes: this.files.inflightBytes, connection: this.connection };
  }

  /** Start sending a pending file (once: a file already under way is left as it is). */
  activate(rec: UploadRecord): void {
    this.files.activate(rec);
  }

  /** A receipt on this vehicle's down/file is applied and true returned; anything else is left alone (false). */
  handleDownlink(topic: string, payload: Buffer): boolean {
    if (topic !== fileReceiptTopic(this.o.ref)) return false;
    const text = this.o.trust.open('file', topic, payload);
    if (text === null) return true;
    const m = decode(FileReceiptSchema, text);
    if (!m.ok) {
      this.o.log.warn({ event: 'file.receipt-rejected', topic, reason: m.error }, 'malformed file receipt ignored');
      return true;
    }
    const f = this.files.get(m.value.fileId);
    if (!f) {
      this.o.log.debug({ event: 'file.receipt-stale', fileId: m.value.fileId, state: m.value.state }, 'receipt for a file not pending here');
      return true;
    }
    try {
      this.files.applyReceipt(f, m.value);
    } catch (err) {
      // A full or failing disk must not take the agent down: the next receipt says the same again.
      this.o.log.error({ event: 'file.receipt-failed', fileId: f.rec.id, err: (err as Error).message }, 'could not record a file receipt');
    }
    this.kick();
    return true;
  }

  // ------------------------------------------------------------ connection

  private holding(): boolean {
    return this.paused || Date.now() < this.pausedUntil || (this.o.yieldTo?.() ?? false);
  }

  private onConnected(): void {
    this.resetConnection();
    if (this.o.subscribe) {
      this.o.session.subscribeChecked(fileReceiptTopic(this.o.ref), 'the file receipt topic: files cannot be confirmed; check the broker ACL');
    }
    this.kick();
  }

  private onDisconnected(): void {
    this.resetConnection();
  }

  /** Whatever was out on the old connection may be lost: the next one starts from what dispatch confirmed. */
  private resetConnection(): void {
    this.connection++;
    this.files.forgetSent();
    this.pubacks.clear();
  }

  // ------------------------------------------------------------ sending

  /**
   * Send until nothing more can go, and again while kicks came in meanwhile.
   * `pumping` is cleared in the same microtask as the last check of
   * `pumpAgain` (not in a .finally() after it), so no kick falls in between.
   */
  private async pump(): Promise<void> {
    try {
      while (this.pumpAgain && !this.stopped) {
        this.pumpAgain = false;
        await this.pumpOnce();
      }
    } catch (err) {
      this.o.log.error({ event: 'file.pump-failed', err: (err as Error).message }, 'file sending stopped on an error; it resumes at the next kick');
    } finally {
      this.pumping = false;
    }
  }

  private windowFull(nextBytes: number): boolean {
    const c = this.o.config;
    const { inflightSegments, inflightBytes } = this.files;
    return inflightSegments >= c.windowSegments || (inflightSegments > 0 && inflightBytes + nextBytes > c.windowBytes);
  }

  private async pumpOnce(): Promise<void> {
    const connection = this.connection;
    const live = () => !this.stopped && this.o.session.connected && connection === this.connection;
    for (const f of this.files.ordered()) {
      if (!live() || this.holding()) return;
      if (!this.files.has(f.rec.id)) continue;
      if (f.verified !== 'yes') {
        if (f.verified === 'no') void this.verify(f);
        return; // in order: the next file waits for this one
      }
      if (f.init !== 'known') {
        if (f.init === 'none') this.publishInit(f);
        return;
      }
      for (;;) {
        if (!live() || this.holding() || !this.files.has(f.rec.id)) return;
        const seg = this.files.nextSegment(f);
        if (!seg) break;
        if (this.windowFull(seg[1] - seg[0])) return;
        this.files.addInflight(f, seg);
        const data = await this.readSegment(f, seg);
        if (!data) return; // the file failed; pump again to go on with the next
        if (!live() || !f.inflight.has(seg[0])) {
          this.files.clearInflight(f, (s) => s === seg[0]);
          return;
        }
        this.publishSegment(f, seg, data);
      }
      if (coversAll(f.confirmed, f.rec.size)) {
        if (f.finSentAt === null) this.publishFin(f);
        continue;
      }
      // Every segment is out; the next file may start while these are confirmed.
    }
  }

  /** Check the file on disk against what was queued; fail it with the reason if it changed or went away. */
  private async verify(f: FileUnderWay): Promise<void> {
    f.verified = 'running';
    const problem = await this.localProblem(f, true);
    // Stopped meanwhile: the database may be closed; the next start() checks again.
    if (this.stopped) return;
    if (problem) {
      this.files.fail(f, problem);
    } else {
      f.verified = 'yes';
    }
    this.kick();
  }

  private localProblem(f: FileUnderWay, fullHash: boolean): Promise<string | null> {
    return checkLocalCopy(f.rec, fullHash, (mtimeMs) => {
      f.rec.mtimeMs = mtimeMs;
      this.o.store.setMtime(f.rec.id, mtimeMs);
    });
  }

  private async readSegment(f: FileUnderWay, range: Range): Promise<Buffer | null> {
    const problem = await this.localProblem(f, false);
    const data = problem ?? (await readLocalRange(f.rec.path, range));
    if (typeof data === 'string') {
      this.files.fail(f, data);
      return null;
    }
    return data;
  }

  private publishInit(f: FileUnderWay): void {
    const { segmentsTtlS } = this.o.config;
    const payload: InitPayload = {
      name: f.rec.name,
      size: f.rec.size,
      checksum: f.rec.sha256,
      ...(segmentsTtlS ? { segments_ttl: segmentsTtlS } : {}),
      user_data: f.rec.meta,
    };
    if (this.o.signer) payload.signature = this.o.signer.sign(fileSigningText(this.o.ref, f.rec.id, payload));
    f.init = 'sent';
    f.initSentAt = Date.now();
    this.counters.initsSent++;
    const connection = this.connection;
    this.o.log.debug({ event: 'file.init-sent', fileId: f.rec.id, size: f.rec.size }, 'file announced');
    this.publish(f, connection, 'init', initTopic(this.o.config.prefix, this.o.ref, f.rec.id), encode(payload), {
      after: (v) => {
        if (v.act !== 'held') return;
        f.init = 'known';
        this.kick();
      },
    });
  }

  private publishSegment(f: FileUnderWay, [s, e]: Range, data: Buffer): void {
    const connection = this.connection;
    this.counters.segmentsSent++;
    this.counters.bytesSent += data.length;
    const sent: SegmentSent = { fileId: f.rec.id, offset: s, length: data.length, connection };
    this.o.events.emit('segmentSent', sent);
    this.o.log.debug({ event: 'file.segment-sent', ...sent }, 'segment sent');
    this.publish(f, connection, 'segment', segmentTopic(this.o.config.prefix, this.o.ref, f.rec.id, s, sha256Hex(data)), data, {
      // Refused (not held, not the whole file again): this segment is out no longer.
      before: (v) => {
        if (v.act === 'fail' || v.act === 'again') this.files.clearInflight(f, (o) => o === s);
      },
      after: (v) => {
        if (v.act === 'held') this.files.confirm(f, [[s, e]], false);
        if (v.act === 'held' || v.act === 'restart') this.kick();
      },
    });
  }

  private publishFin(f: FileUnderWay): void {
    const connection = this.connection;
    f.finSentAt = Date.now();
    this.counters.finsSent++;
    this.o.log.debug({ event: 'file.fin-sent', fileId: f.rec.id }, 'file finished');
    this.publish(f, connection, 'fin', finTopic(this.o.config.prefix, this.o.ref, f.rec.id, f.rec.size, f.rec.sha256), Buffer.alloc(0), {
      after: (v) => {
        if (v.act === 'held') this.files.deliver(f);
        if (this.o.config.prefix === '$file') this.kick();
      },
    });
  }

  /**
   * Publish one command (QoS 1) sent on `connection` and act on its answer,
   * if that still concerns this connection and file. On EMQX ("$file") every
   * PUBACK is an answer; with our own prefix only a refusal is (dispatch's
   * receipt confirms). The command's own `before`, then a restart, failure or
   * later re-send, then the command's own `after`.
   */
  private publish(
    f: FileUnderWay,
    connection: number,
    what: FileVerb,
    topic: string,
    payload: Buffer,
    steps: { before?: (v: Verdict) => void; after: (v: Verdict) => void },
  ): void {
    const emqx = this.o.config.prefix === '$file';
    this.o.session.client.publish(topic, payload, { qos: 1 }, (err, packet) => {
      if (this.stopped || connection !== this.connection || !this.files.has(f.rec.id)) return;
      const rc = this.pubacks.take(err, packet);
      if (!emqx && !err) return;
      const v = emqx ? emqxVerdict(what, rc) : refusalVerdict(what, rc);
      steps.before?.(v);
      if (v.act === 'restart') this.files.restart(f, v.why);
      else if (v.act === 'fail') this.files.fail(f, v.reason);
      else if (v.act === 'again') this.again(f, what, rc, v.pause, emqx, err);
      steps.after(v);
    });
  }

  /** Sent again later: at the next pump (EMQX asked for it) or once resendS passed; a quota pauses every file first. */
  private again(f: FileUnderWay, what: FileVerb, rc: number, pause: boolean, emqx: boolean, err: Error | undefined): void {
    if (pause) this.pausedUntil = Date.now() + this.resendMs;
    if (!emqx) {
      this.o.log.warn({ event: 'file.publish-refused', fileId: f.rec.id, what, rc, err: err?.message }, 'broker refused a file message; sent again later');
      return;
    }
    if (what === 'init') f.init = 'none';
    this.o.log.warn({ event: 'file.emqx-retry', fileId: f.rec.id, what, rc, err: err?.message }, `EMQX asked for the ${what} again`);
  }

  /** Once a second: what has waited longer than resendS for an answer goes again. */
  private tick(): void {
    if (this.stopped || !this.o.session.connected) return;
    const due = this.files.expire(Date.now() - this.resendMs);
    if (due) this.o.log.info({ event: 'file.resend-due', count: due }, 'file messages unanswered: sending again');
    this.kick();
  }
}

