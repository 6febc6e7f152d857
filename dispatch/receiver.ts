// The receiving end: subscribes to every vehicle's uplink (as a member of an
// MQTT 5 shared-subscription group, so several receivers split the load),
// commits each alarm, incident and position to SQLite, and only then sends
// the bus its receipt. Duplicates (a bus re-sending after a lost receipt or a
// crash) are stored once and receipted again. Acknowledgements are re-sent
// until the bus confirms it has them.
//
// Two connections: alarms and incidents (protocol/kinds.ts `connection`)
// come on one of their own, as "{identity}/alarms", and are committed and
// receipted the moment they arrive; everything else comes on the bulk one and
// is committed in batches (dispatch/bulk-ingest.ts). At the broker each has
// its own session queue, so an alarm never waits behind the fleet's track.

import { EventEmitter } from 'node:events';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import { type AckMessage, type AlarmMessage, type FootageRequest, type Decoded, type Envelope, type ReceiptMessage, type RepeatMessage, decode } from '../protocol/messages.ts';
import { UPLINK, type UplinkKindSpec, type UplinkWire } from '../protocol/kinds.ts';
import { MqttSession } from '../common/mqtt-session.ts';
import { DISPATCH_USER, alarmConnectionIdentity } from '../protocol/acl.ts';
import { BulkIngest } from './bulk-ingest.ts';
import { Checkpointer } from './checkpointer.ts';
import { Retention } from './retention.ts';
import { RECEIVER_BEAT_MS, ReceiverRegistry } from './receivers.ts';
import type { Lane } from '../protocol/lanes.ts';
import { type DownlinkKind, UPLINK_KINDS, type UplinkKind, type VehicleRef, dispatchUplinkFilter, downlinkTopic, parseTopic, sharedFilter } from '../protocol/topics.ts';
import { DispatchSigner, receiverIdentity } from './command-signer.ts';
import { type UplinkHandlers, uplinkHandlers } from './uplink-handlers.ts';
import { createLogger, monoMs } from '../common/log.ts';
import { type DispatchConfig, registeredVehicles } from './config.ts';
import { DispatchStore, type StoredAlarm } from './store.ts';
import { FileReceiver } from './files.ts';
import { SignatureBook } from './signatures.ts';
import { RefusalLog } from './refusals.ts';
import { commandExpiry } from './person-signer.ts';
import { parseFileTopic } from '../protocol/file-transfer.ts';

/** How often a receiver looks for recorded commands to send: a dispatcher's ack reaches the bus within this. */
const COMMAND_POLL_MS = 250;

export interface ReceiverEvents {
  /** A new alarm or incident, committed. */
  alarm: [alarm: AlarmMessage, atMonoMs: number];
  /** The driver pressed again while an alarm was open, committed. */
  repeat: [repeat: RepeatMessage];
  receiptSent: [receipt: ReceiptMessage, atMonoMs: number];
  ackSeen: [alarmIds: string[]];
  rejected: [topic: string, reason: string];
  /** The receiver cannot go on (its identity was taken over): stop it and exit. */
  fatal: [reason: string];
}

interface PendingReceipt {
  ref: VehicleRef;
  epoch: string;
  lanes: Map<Lane, number>;
  ids: string[];
}

/** The lanes whose receipts go out on the alarm connection. */
const ALARM_LANES: readonly Lane[] = ['alarm', 'incident'];

export class Receiver extends EventEmitter<ReceiverEvents> {
  readonly log: Logger;
  readonly store: DispatchStore;
  /** Evidence files (snapshots, clips) from the buses: reassembled, verified, stored with their alarm. */
  readonly files: FileReceiver;
  /** The bulk connection (track, diagnostics, statuses, files) and the alarm connection. */
  private session: MqttSession | null = null;
  private alarmSession: MqttSession | null = null;
  /** The bulk connection's messages, committed in batches. */
  readonly ingest: BulkIngest<Map<string, PendingReceipt>>;
  /** Four times a second: commands recorded in the store (by `dispatch ack`, `dispatch footage`, this process) go out. */
  private commandTimer: NodeJS.Timeout | null = null;
  /** When this process last sent each pending command ("ack:ID", "footage:ID"), monotonic ms. */
  private readonly lastSent = new Map<string, number>();
  /** Hourly: evidence files left unfinished past files.unfinishedExpiryS are forgotten. */
  private expireTimer: NodeJS.Timeout | null = null;
  /** Receipts per connection and vehicle: alarms' gathered within one tick, the rest per committed batch. */
  private pendingReceipts = { alarms: new Map<string, PendingReceipt>(), bulk: new Map<string, PendingReceipt>() };
  private receiptFlushScheduled = false;
  /** This receiver's row in the receivers table, refreshed while it runs (a second one with its identity is refused). */
  private heartbeat: NodeJS.Timeout | null = null;
  private readonly receivers: ReceiverRegistry;
  private checkpointer: Checkpointer | null = null;
  private retentionTimer: NodeJS.Timeout | null = null;
  /** stop() has begun: nothing more is published (the bus re-sends, and is answered by the next receiver). */
  private stopping = false;
  /** stop() has begun: the bulk queue is drained, nothing new is taken into it. */
  private draining = false;
  /** When the message being handled came off the socket (for the alarm-latency bench's breakdown). */
  private arrivedMonoMs = 0;
  /** The topic of the message being handled (for a handler's refusal). */
  private inHand = '';
  /** Every command to a bus is signed (protocol/signed-command.ts). */
  private readonly signer: DispatchSigner;
  /** The units' signatures of alarm records and evidence files, checked and kept. */
  readonly signatures: SignatureBook;
  /** What dispatch refused from each vehicle, as its diagnostics. */
  private readonly refusals: RefusalLog;

  constructor(
    private readonly config: DispatchConfig,
    log?: Logger,
  ) {
    super();
    this.log = log ?? createLogger('dispatch', config.log.level);
    // Before the database is opened: a key that cannot be used is a config error.
    this.signer = DispatchSigner.fromConfig(config, receiverIdentity());
    this.store = new DispatchStore(config.storage.path);
    this.signatures = new SignatureBook(this.store.db, config.trust.fleetCaFile);
    this.refusals = new RefusalLog(this.store.db);
    this.receivers = new ReceiverRegistry(this.store.db);
    this.signatures.checkPending();
    if (config.fleet.identitiesFile !== null) {
      const r = this.store.vehicles.register(registeredVehicles(config.fleet.identitiesFile));
      this.log.info({ event: 'vehicles.registered', file: config.fleet.identitiesFile, ...r }, `registered buses from ${config.fleet.identitiesFile}: ${r.added} added, ${r.removed} removed`);
    }
    this.handlers = this.makeHandlers();
    this.ingest = new BulkIngest({
      db: this.store.db,
      log: this.log,
      handle: (topic, payload, arrived) => {
        this.arrivedMonoMs = arrived;
        this.handle(topic, payload);
      },
      takeReceipts: () => {
        const taken = this.pendingReceipts.bulk;
        this.pendingReceipts.bulk = new Map();
        return taken;
      },
      sendReceipts: (receipts) => this.sendReceipts(receipts, 'bulk'),
    });
    this.files = new FileReceiver({
      db: this.store.db,
      signatures: this.signatures,
      config: { ...config.files, dir: config.files.dir ?? join(dirname(config.storage.path), 'evidence') },
      log: this.log,
      // Not connected (or stopping): the bus asks again and gets the receipt then.
      sendReceipt: (ref, receipt) => this.command('file', ref, receipt),
    });
    this.files.on('rejected', (topic, reason) => this.refusals.record(topic, reason));
    // A clip asked for with `busguard dispatch footage` is linked to its request by the requestId in its meta.
    this.files.on('stored', (f) => {
      try {
        const requestId = this.store.footage.requestOfFile(f);
        if (!requestId) return;
        this.log.info(
          { event: 'footage.delivered', requestId, fileId: f.fileId, fileName: f.name, path: f.path, sha256: f.sha256, size: f.size, fleet: f.fleet, vehicle: f.vehicle },
          `footage of request ${requestId} from ${f.fleet}/${f.vehicle} stored: ${f.name}`,
        );
      } catch (err) {
        this.log.warn({ event: 'footage.link-failed', fileId: f.fileId, err: (err as Error).message }, 'could not look up the footage request of a stored file');
      }
    });
  }

  /** This receiver's MQTT identity (the username; over TLS the certificate's CN is what the broker takes). */
  get identity(): string {
    return this.config.mqtt.username ?? DISPATCH_USER;
  }

  start(): void {
    // Two receivers with one identity would take each other's sessions over for ever: the second is refused here.
    this.receivers.claim(this.identity);
    this.checkpointer = new Checkpointer(this.store.db, this.log);
    this.heartbeat = setInterval(() => this.receivers.beat(this.identity), RECEIVER_BEAT_MS);
    this.heartbeat.unref();
    const session = new MqttSession(this.config.mqtt, { username: DISPATCH_USER }, this.log);
    this.session = session;
    const alarmLogin = {
      ...this.config.mqtt,
      username: alarmConnectionIdentity(this.identity),
      clientId: alarmConnectionIdentity(this.config.mqtt.clientId ?? this.identity),
      ...(this.config.alarmConnection ?? {}),
    };
    const alarms = new MqttSession(alarmLogin, { username: DISPATCH_USER }, this.log);
    this.alarmSession = alarms;
    const subscribe = (s: MqttSession, connection: 'alarms' | 'bulk') => {
      // The table's kinds for this connection, shared among the group's receivers or not as the table says.
      const filters: Record<string, { qos: 1 }> = {};
      for (const kind of UPLINK_KINDS) {
        if (UPLINK[kind].connection !== connection) continue;
        const filter = dispatchUplinkFilter(kind);
        filters[UPLINK[kind].subscribe === 'shared' ? sharedFilter(this.config.sharedGroup, filter) : filter] = { qos: 1 };
      }
      s.subscribeChecked(filters, `the uplink topics (${connection}); check the broker ACL for user "${connection === 'alarms' ? alarmLogin.username : this.identity}"`);
    };
    session.on('connected', (sessionPresent) => {
      this.log.info({ event: 'mqtt.connected', url: this.config.mqtt.url, sessionPresent, sharedGroup: this.config.sharedGroup }, 'dispatch connected');
      subscribe(session, 'bulk');
      // Everything pending goes out again on a new connection.
      this.lastSent.clear();
      this.sendPending();
    });
    alarms.on('connected', (sessionPresent) => {
      this.log.info({ event: 'mqtt.alarms-connected', url: this.config.mqtt.url, sessionPresent, identity: alarmLogin.username }, 'dispatch alarm connection up');
      subscribe(alarms, 'alarms');
      this.lastSent.clear();
      this.sendPending();
    });
    session.on('disconnected', () => this.log.warn({ event: 'mqtt.disconnected' }, 'dispatch disconnected from broker'));
    alarms.on('disconnected', () => this.log.warn({ event: 'mqtt.alarms-disconnected' }, 'dispatch alarm connection lost'));
    for (const s of [session, alarms]) s.on('takenOver', () => this.takenOver(s === alarms ? alarmLogin.username : this.identity));
    // Alarms at once; the rest in batches (file transfers are the file receiver's, below).
    alarms.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.ingest.attach(session.client);
    session.on('message', (topic, payload) => {
      if (!parseFileTopic(topic) && !this.draining) this.ingest.push(topic, payload);
    });
    // Subscribes to the file topics on each connect and takes their messages itself.
    this.files.attach(session, this.config.sharedGroup);
    this.commandTimer = setInterval(() => this.sendPending(), COMMAND_POLL_MS);
    this.commandTimer.unref();
    const retention = new Retention(this.store.db, this.config.retention, this.log);
    let retaining: Promise<unknown> | null = null;
    const retain = () => {
      retaining ??= retention
        .run()
        .catch((err: Error) => this.log.error({ event: 'retention.failed', err: err.message }, 'retention pass failed; nothing is lost, the next pass tries again'))
        .finally(() => (retaining = null));
    };
    retain();
    this.retentionTimer = setInterval(retain, this.config.retention.everyS * 1000);
    this.retentionTimer.unref();
    const expire = () =>
      void this.files.expireUnfinished().catch((err: Error) => this.log.error({ event: 'file.expire-failed', err: err.message }, 'could not forget unfinished files'));
    expire();
    this.expireTimer = setInterval(expire, 3_600_000);
    this.expireTimer.unref();
  }

  /**
   * The broker handed this receiver's session to another client with its
   * identity: two receivers were started with one identity. This one stops
   * (exit 3) rather than take the session back, which the other would do in
   * turn, for ever, each losing what was in flight.
   */
  private takenOver(identity: string): void {
    if (this.stopping) return;
    this.log.fatal(
      { event: 'dispatch.identity-taken', identity },
      `another client logged in as "${identity}" and took this receiver's session over: two receivers share one identity. Give each its own (mqtt.username dispatch/NAME, and its password or certificate); this one stops`,
    );
    this.emit('fatal', `identity ${identity} taken over by another client`);
  }

  async stop(): Promise<void> {
    // What is queued is committed and receipted first; what arrives from now on is not taken (its bus sends it again).
    this.draining = true;
    if (this.commandTimer) clearInterval(this.commandTimer);
    if (this.expireTimer) clearInterval(this.expireTimer);
    if (this.retentionTimer) clearInterval(this.retentionTimer);
    if (this.heartbeat) clearInterval(this.heartbeat);
    await this.ingest.idle();
    this.stopping = true;
    this.log.info({ event: 'dispatch.bulk-stats', ...this.ingest.stats }, `bulk ingest: ${this.ingest.stats.messages} messages in ${this.ingest.stats.batches} batches, at most ${this.ingest.stats.maxQueued} queued`);
    this.ingest.close();
    await this.files.idle();
    await Promise.all([this.session?.stop(), this.alarmSession?.stop()]);
    this.refusals.flush();
    await this.checkpointer?.stop();
    if (this.store.db.open) this.receivers.release(this.identity);
    this.store.close();
  }

  /** Publish an acknowledgement (already recorded in the store) to its bus, signed in the name of who acknowledged it. */
  sendAck(alarm: StoredAlarm): void {
    if (!alarm.ackBy || !alarm.ackAt) return;
    const msg: AckMessage = { v: 1, alarmId: alarm.id, by: alarm.ackBy, at: alarm.ackAt };
    const sent = this.personal('ack', alarm, alarm.ackCommand) || this.command('ack', alarm, msg, alarm.ackBy);
    if (sent) this.lastSent.set(`ack:${alarm.fleet}/${alarm.vehicle}/${alarm.id}`, monoMs());
  }

  /** A command its person signed (dispatch/person-signer.ts), published as signed while it has a minute left; false: sign it here. */
  private personal(kind: DownlinkKind, ref: VehicleRef, payload: string | null): boolean {
    const session = this.via(kind);
    if (!session?.connected || this.stopping || commandExpiry(payload) < Date.now() + 60_000) return false;
    session.client.publish(downlinkTopic({ fleet: ref.fleet, vehicle: ref.vehicle }, kind), payload!, { qos: 1 });
    return true;
  }

  /** Acknowledgements (and alarms' receipts) go out on the alarm connection: not behind a backlog of track receipts. */
  private via(kind: DownlinkKind, connection?: 'alarms' | 'bulk'): MqttSession | null {
    return (connection ?? (kind === 'ack' ? 'alarms' : 'bulk')) === 'alarms' ? this.alarmSession : this.session;
  }

  /** Sign a command (in the name of `by`, or of this receiver) and publish it to its bus (QoS 1); false when not connected or stopping: what matters is re-sent. */
  private command(kind: DownlinkKind, ref: VehicleRef, msg: object, by?: string, connection?: 'alarms' | 'bulk'): boolean {
    const session = this.via(kind, connection);
    if (!session?.connected || this.stopping) return false;
    const { topic, payload } = (by === undefined ? this.signer : this.signer.as(by)).seal(kind, { fleet: ref.fleet, vehicle: ref.vehicle }, msg);
    session.client.publish(topic, payload, { qos: 1 });
    return true;
  }

  private sendFootageRequest(ref: VehicleRef, req: FootageRequest, signed: string | null): void {
    if (this.personal('footage', ref, signed) || this.command('footage', ref, req, req.by)) this.lastSent.set(`footage:${req.id}`, monoMs());
  }

  /**
   * What is recorded and not yet confirmed: acks not yet shown by their bus
   * (again every ack.resendS), footage requests this process has not sent yet
   * (again only when the bus comes online: an offline bus's broker queue must
   * not fill with copies).
   */
  private sendPending(): void {
    if (!this.session?.connected || this.stopping) return;
    const now = monoMs();
    const pending = new Set<string>();
    for (const a of this.store.unseenAcks()) {
      pending.add(`ack:${a.fleet}/${a.vehicle}/${a.id}`);
      const last = this.lastSent.get(`ack:${a.fleet}/${a.vehicle}/${a.id}`);
      if (last !== undefined && now - last < this.config.ack.resendS * 1000) continue;
      if (last !== undefined) this.log.info({ event: 'ack.resend', alarmId: a.id, fleet: a.fleet, vehicle: a.vehicle }, 're-sending acknowledgement');
      this.sendAck(a);
    }
    for (const { ref, request, command } of this.store.footage.pending()) {
      pending.add(`footage:${request.id}`);
      if (!this.lastSent.has(`footage:${request.id}`)) this.sendFootageRequest(ref, request, command);
    }
    // Confirmed or answered since: forgotten, so the map stays as small as what is pending.
    for (const k of this.lastSent.keys()) if (!pending.has(k)) this.lastSent.delete(k);
  }

  /** A bus came online: its unseen acks and unanswered footage requests, again (it handles each id once). */
  private resendTo(ref: VehicleRef): void {
    if (!this.session?.connected || this.stopping) return;
    for (const a of this.store.unseenAcks(ref)) {
      this.log.info({ event: 'ack.resend', alarmId: a.id, fleet: a.fleet, vehicle: a.vehicle }, 're-sending acknowledgement');
      this.sendAck(a);
    }
    for (const p of this.store.footage.pending()) {
      if (p.ref.fleet !== ref.fleet || p.ref.vehicle !== ref.vehicle) continue;
      this.log.info({ event: 'footage.resend', requestId: p.request.id, fleet: ref.fleet, vehicle: ref.vehicle }, 're-sending footage request');
      this.sendFootageRequest(ref, p.request, p.command);
    }
  }

  private readonly handlers: UplinkHandlers;

  private makeHandlers(): UplinkHandlers {
    return uplinkHandlers({
      store: this.store,
      signatures: this.signatures,
      log: this.log,
      reject: (reason) => this.reject(this.inHand, reason),
      receipt: (ref, env, upTo, id) => this.queueReceipt(ref, env, upTo, id),
      arrivedMonoMs: () => this.arrivedMonoMs,
      alarmReceived: (alarm, at) => this.emit('alarm', alarm, at),
      repeatReceived: (repeat) => this.emit('repeat', repeat),
      acksSeen: (ids) => this.emit('ackSeen', ids),
      sendAck: (alarm) => this.sendAck(alarm),
      busOnline: (ref) => {
        this.resendTo(ref);
      },
    });
  }

  private reject(topic: string, reason: string): void {
    this.log.warn({ event: 'uplink.rejected', topic, reason }, 'rejected message');
    this.refusals.record(topic, reason);
    this.emit('rejected', topic, reason);
  }

  private onMessage(topic: string, payload: Buffer): void {
    this.arrivedMonoMs = monoMs();
    try {
      this.handle(topic, payload);
    } catch (err) {
      // A database error must not take the receiver down: no receipt goes out,
      // so the bus keeps the message and sends it again.
      this.log.error({ event: 'uplink.store-failed', topic, err: (err as Error).message }, 'could not store message; the bus will re-send');
    }
  }

  private handle(topic: string, payload: Buffer): void {
    if (parseFileTopic(topic)) return; // this.files has it
    const t = parseTopic(topic);
    if (!t || t.direction !== 'up') return this.reject(topic, 'not a busguard v1 uplink topic');
    if (t.kind === 'status' && payload.length === 0) return; // a cleared retained message
    this.take(t.kind, t.ref, topic, payload);
  }

  /** Decode with the kind's schema, check vehicle and lane (protocol/kinds.ts), and hand it to its handler. */
  private take<K extends UplinkKind>(kind: K, ref: VehicleRef, topic: string, payload: Buffer): void {
    const spec: UplinkKindSpec = UPLINK[kind];
    const m = decode(spec.wire, payload) as Decoded<UplinkWire<K>>;
    if (!m.ok) return this.reject(topic, m.error);
    // What every kind may carry: the vehicle it names, the lane it came in.
    const msg = m.value as { fleet?: string; vehicle?: string; lane?: Lane; seq?: number; floor?: number };
    if (msg.fleet !== undefined && (msg.fleet !== ref.fleet || msg.vehicle !== ref.vehicle)) {
      return this.reject(topic, `payload names ${msg.fleet}/${msg.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`);
    }
    if (spec.lanes && (msg.lane === undefined || !spec.lanes.includes(msg.lane))) return this.reject(topic, `lane "${msg.lane}" on the ${kind} topic`);
    // The bus's floor is the lowest seq it still holds, so never above a seq it sends: one that is would
    // mark everything below it as settled, and the lane's later messages would be dropped as old.
    if (msg.seq !== undefined && msg.floor !== undefined && msg.seq > 0 && msg.floor > msg.seq) return this.reject(topic, `floor ${msg.floor} above seq ${msg.seq}`);
    this.inHand = topic;
    this.handlers[kind](m.value, ref);
  }

  /**
   * Receipts per vehicle and epoch: an alarm lane's gathered within one tick
   * (a burst costs one message) and sent on the alarm connection; the rest
   * gathered over a committed batch and sent when it commits.
   */
  private queueReceipt(ref: VehicleRef, env: Envelope, upTo: number, id: string): void {
    const connection = ALARM_LANES.includes(env.lane) ? 'alarms' : 'bulk';
    const pending = this.pendingReceipts[connection];
    const key = `${ref.fleet}/${ref.vehicle}/${env.epoch}`;
    let entry = pending.get(key);
    if (!entry) {
      entry = { ref, epoch: env.epoch, lanes: new Map(), ids: [] };
      pending.set(key, entry);
    }
    if (env.seq === 0) entry.ids.push(id);
    else entry.lanes.set(env.lane, Math.max(upTo, entry.lanes.get(env.lane) ?? 0));
    if (connection === 'bulk' || this.receiptFlushScheduled) return;
    this.receiptFlushScheduled = true;
    setImmediate(() => {
      this.receiptFlushScheduled = false;
      const taken = this.pendingReceipts.alarms;
      this.pendingReceipts.alarms = new Map();
      this.sendReceipts(taken, 'alarms');
    });
  }

  private sendReceipts(pending: Map<string, PendingReceipt>, connection: 'alarms' | 'bulk'): void {
    for (const b of pending.values()) {
      const lanes = Object.fromEntries(b.lanes) as ReceiptMessage['lanes'];
      for (let i = 0; i === 0 || i < b.ids.length; i += 1000) {
        const ids = b.ids.slice(i, i + 1000);
        const receipt: ReceiptMessage = { v: 1, epoch: b.epoch, lanes: i === 0 ? lanes : {}, ...(ids.length ? { ids } : {}) };
        if (!this.command('receipt', b.ref, receipt, undefined, connection)) continue; // not receipted: the bus sends it again
        const at = monoMs();
        this.log.debug({ event: 'receipt.sent', ...receipt, fleet: b.ref.fleet, vehicle: b.ref.vehicle, stepMonoMs: at }, 'receipt sent');
        this.emit('receiptSent', receipt, at);
      }
    }
  }
}
