// The receiving end: subscribes to every vehicle's uplink (as a member of an
// MQTT 5 shared-subscription group, so several receivers split the load),
// commits each alarm, incident and position to SQLite, and only then sends
// the bus its receipt. Duplicates (a bus re-sending after a lost receipt or a
// crash) are stored once and receipted again. Acknowledgements are re-sent
// until the bus confirms it has them.

import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Logger } from 'pino';
import {
  type AckMessage,
  type AlarmMessage,
  AlarmWireSchema,
  BusReceiptMessageSchema,
  DiagWireSchema,
  type Envelope,
  FootageAnswerWireSchema,
  PositionWireSchema,
  type ReceiptMessage,
  type RepeatMessage,
  RepeatWireSchema,
  StatusMessageSchema,
  decode,
  encode,
} from '../protocol/messages.ts';
import { MqttSession } from '../common/mqtt-session.ts';
import type { Lane } from '../protocol/lanes.ts';
import { type VehicleRef, dispatchUplinkFilter, downlinkTopic, parseTopic, sharedFilter } from '../protocol/topics.ts';
import { createLogger, monoMs } from '../common/log.ts';
import type { DispatchConfig } from './config.ts';
import { DispatchStore, type StoredAlarm } from './store.ts';
import { FileReceiver } from './files.ts';
import { parseFileTopic } from '../protocol/file-transfer.ts';

export interface ReceiverEvents {
  /** A new alarm or incident, committed. */
  alarm: [alarm: AlarmMessage, atMonoMs: number];
  /** The driver pressed again while an alarm was open, committed. */
  repeat: [repeat: RepeatMessage];
  receiptSent: [receipt: ReceiptMessage, atMonoMs: number];
  ackSeen: [alarmIds: string[]];
  rejected: [topic: string, reason: string];
}

export class Receiver extends EventEmitter<ReceiverEvents> {
  readonly log: Logger;
  readonly store: DispatchStore;
  /** Evidence files (snapshots, clips) from the buses: reassembled, verified, stored with their alarm. */
  readonly files: FileReceiver;
  private session: MqttSession | null = null;
  private resendTimer: NodeJS.Timeout | null = null;
  /** Receipts per vehicle, gathered within one tick so a burst costs one message. */
  private pendingReceipts = new Map<string, { ref: VehicleRef; epoch: string; lanes: Map<Lane, number>; ids: string[] }>();
  private receiptFlushScheduled = false;
  /** stop() has begun: nothing more is published (the bus re-sends, and is answered by the next receiver). */
  private stopping = false;
  /** When the message being handled came off the socket (for the alarm-latency bench's breakdown). */
  private arrivedMonoMs = 0;

  constructor(
    private readonly config: DispatchConfig,
    log?: Logger,
  ) {
    super();
    this.log = log ?? createLogger('dispatch', config.log.level);
    this.store = new DispatchStore(config.storage.path);
    this.files = new FileReceiver({
      db: this.store.db,
      config: { ...config.files, dir: config.files.dir ?? join(dirname(config.storage.path), 'evidence') },
      log: this.log,
      publish: (topic, payload) => {
        // Not connected (or stopping): the bus asks again and gets the receipt then.
        if (this.session?.connected && !this.stopping) this.session.client.publish(topic, payload, { qos: 1 });
      },
    });
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

  start(): void {
    const session = new MqttSession(this.config.mqtt, { username: 'dispatch', clientId: `dispatch-${hostname()}` }, this.log);
    this.session = session;
    session.on('connected', (sessionPresent) => {
      this.log.info({ event: 'mqtt.connected', url: this.config.mqtt.url, sessionPresent, sharedGroup: this.config.sharedGroup }, 'dispatch connected');
      const group = this.config.sharedGroup;
      const filters: Record<string, { qos: 1 }> = {
        [sharedFilter(group, dispatchUplinkFilter('alarm'))]: { qos: 1 },
        [sharedFilter(group, dispatchUplinkFilter('incident'))]: { qos: 1 },
        [sharedFilter(group, dispatchUplinkFilter('repeat'))]: { qos: 1 },
        [sharedFilter(group, dispatchUplinkFilter('position'))]: { qos: 1 },
        [sharedFilter(group, dispatchUplinkFilter('diag'))]: { qos: 1 },
        [sharedFilter(group, dispatchUplinkFilter('footage'))]: { qos: 1 },
        [sharedFilter(group, dispatchUplinkFilter('receipt'))]: { qos: 1 },
        // Not shared: retained status is not delivered to shared subscriptions (MQTT 5 §4.8.2).
        [dispatchUplinkFilter('status')]: { qos: 1 },
      };
      session.subscribeChecked(filters, 'the uplink topics; check the broker ACL for user "dispatch"');
      this.resendAcks();
    });
    session.on('disconnected', () => this.log.warn({ event: 'mqtt.disconnected' }, 'dispatch disconnected from broker'));
    session.on('message', (topic, payload) => this.onMessage(topic, payload));
    // Subscribes to the file topics on each connect and takes their messages itself.
    this.files.attach(session, this.config.sharedGroup);
    this.resendTimer = setInterval(() => this.resendAcks(), this.config.ack.resendS * 1000);
    this.resendTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.resendTimer) clearInterval(this.resendTimer);
    await this.files.idle();
    await this.session?.stop();
    this.store.close();
  }

  /** Publish an acknowledgement (already recorded in the store) to its bus. */
  sendAck(alarm: StoredAlarm): void {
    if (!this.session?.connected || this.stopping || !alarm.ackBy || !alarm.ackAt) return;
    const msg: AckMessage = { v: 1, alarmId: alarm.id, by: alarm.ackBy, at: alarm.ackAt };
    this.session.client.publish(downlinkTopic(alarm, 'ack'), encode(msg), { qos: 1 });
  }

  /** Footage requests the bus has not answered: sent again when it comes online (it handles each id once). */
  private resendFootageRequests(ref: VehicleRef): void {
    if (!this.session?.connected || this.stopping) return;
    for (const req of this.store.footage.unanswered(ref)) {
      this.log.info({ event: 'footage.resend', requestId: req.id, fleet: ref.fleet, vehicle: ref.vehicle }, 're-sending footage request');
      this.session.client.publish(downlinkTopic(ref, 'footage'), encode(req), { qos: 1 });
    }
  }

  /**
   * The bus says these of its alarms are open. Any that dispatch has
   * acknowledged lost its acknowledgement on the bus (a write lost to a power
   * cut, a journal restored from a backup): mark it unseen so it is sent again
   * (by resendAcks, now and until the bus confirms it). Only this vehicle's
   * own alarms are touched: a bus naming another bus's alarm changes nothing.
   */
  private reconcileOpenAlarms(ref: VehicleRef, open: readonly string[]): void {
    if (open.length === 0) return;
    const reopened = this.store.reopenAcks(ref, open);
    if (reopened.length) {
      this.log.warn(
        { event: 'ack.lost-on-bus', fleet: ref.fleet, vehicle: ref.vehicle, alarmIds: reopened },
        `bus ${ref.fleet}/${ref.vehicle} lists as open ${reopened.length} alarm(s) dispatch acknowledged: sending the acknowledgement again`,
      );
    }
  }

  private resendAcks(ref?: VehicleRef): void {
    if (!this.session?.connected) return;
    for (const a of this.store.unseenAcks(ref)) {
      this.log.info({ event: 'ack.resend', alarmId: a.id, fleet: a.fleet, vehicle: a.vehicle }, 're-sending acknowledgement');
      this.sendAck(a);
    }
  }

  private reject(topic: string, reason: string): void {
    this.log.warn({ event: 'uplink.rejected', topic, reason }, 'rejected message');
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
    if (!t || t.direction !== 'up') {
      this.reject(topic, 'not a busguard v1 uplink topic');
      return;
    }
    const { ref } = t;
    const sameVehicle = (m: { fleet: string; vehicle: string }) => m.fleet === ref.fleet && m.vehicle === ref.vehicle;
    switch (t.kind) {
      case 'alarm':
      case 'incident': {
        const m = decode(AlarmWireSchema, payload);
        if (!m.ok) return this.reject(topic, m.error);
        if (!sameVehicle(m.value)) return this.reject(topic, `payload names ${m.value.fleet}/${m.value.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`);
        const expectedKind = t.kind === 'alarm' ? 'emergency' : 'incident';
        if (m.value.kind !== expectedKind) return this.reject(topic, `kind "${m.value.kind}" on the ${t.kind} topic`);
        if (m.value.lane !== t.kind) return this.reject(topic, `lane "${m.value.lane}" on the ${t.kind} topic`);
        let fresh = false;
        const { upTo } = this.store.accept(ref, m.value, () => {
          fresh = this.store.addAlarm(m.value);
        });
        const at = monoMs();
        if (fresh) {
          this.log.info(
            { event: `${m.value.kind}.received`, alarmId: m.value.id, fleet: ref.fleet, vehicle: ref.vehicle, route: m.value.route, fix: m.value.fix, seq: m.value.seq, stepMonoMs: at, arrivedMonoMs: this.arrivedMonoMs },
            m.value.kind === 'emergency' ? 'EMERGENCY alarm received' : 'incident received',
          );
          this.emit('alarm', m.value, at);
        } else {
          this.log.info({ event: 'alarm.duplicate', alarmId: m.value.id, fleet: ref.fleet, vehicle: ref.vehicle, seq: m.value.seq }, 'duplicate alarm, receipted again');
          const stored = this.store.get(m.value.id);
          if (stored?.ackAt && !stored.ackSeenAt) this.sendAck(stored);
        }
        this.queueReceipt(ref, m.value, upTo, m.value.id);
        return;
      }
      case 'repeat': {
        const m = decode(RepeatWireSchema, payload);
        if (!m.ok) return this.reject(topic, m.error);
        if (!sameVehicle(m.value)) return this.reject(topic, `payload names ${m.value.fleet}/${m.value.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`);
        const lane = m.value.kind === 'emergency' ? 'alarm' : 'incident';
        if (m.value.lane !== lane) return this.reject(topic, `lane "${m.value.lane}" for a repeat of an ${m.value.kind}`);
        const result: { outcome: ReturnType<DispatchStore['addRepeat']> } = { outcome: 'duplicate' };
        // A refused repeat is still taken out of the lane (receipted), or the bus would send it for ever.
        const { upTo } = this.store.accept(ref, m.value, () => {
          result.outcome = this.store.addRepeat(m.value);
        });
        const outcome = result.outcome;
        if (typeof outcome === 'object') {
          this.reject(topic, outcome.refused);
        } else if (outcome === 'new') {
          const stored = this.store.get(m.value.alarmId);
          this.log.warn(
            {
              event: `${m.value.kind}.repeat`,
              alarmId: m.value.alarmId,
              count: m.value.count,
              heldMs: m.value.heldMs,
              fleet: ref.fleet,
              vehicle: ref.vehicle,
              fix: m.value.fix,
              acknowledged: stored?.ackAt != null,
            },
            `${m.value.kind === 'emergency' ? 'EMERGENCY' : 'incident'} button pressed again (press ${m.value.count})${stored?.ackAt ? ' after the acknowledgement was sent' : ''}`,
          );
          this.emit('repeat', m.value);
        }
        this.queueReceipt(ref, m.value, upTo, m.value.id);
        return;
      }
      case 'position': {
        const m = decode(PositionWireSchema, payload);
        if (!m.ok) return this.reject(topic, m.error);
        if (!sameVehicle(m.value)) return this.reject(topic, `payload names ${m.value.fleet}/${m.value.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`);
        if (m.value.lane !== 'track' && m.value.lane !== 'followup') return this.reject(topic, `lane "${m.value.lane}" on the position topic`);
        let added = 0;
        const { fresh, upTo } = this.store.accept(ref, m.value, () => {
          added = this.store.addPosition(m.value);
        });
        this.log.debug(
          { event: 'position.received', id: m.value.id, lane: m.value.lane, seq: m.value.seq, alarmId: m.value.alarmId, points: m.value.points.length, added, fresh, fleet: ref.fleet, vehicle: ref.vehicle },
          'track points',
        );
        this.queueReceipt(ref, m.value, upTo, m.value.id);
        return;
      }
      case 'diag': {
        const m = decode(DiagWireSchema, payload);
        if (!m.ok) return this.reject(topic, m.error);
        if (!sameVehicle(m.value)) return this.reject(topic, `payload names ${m.value.fleet}/${m.value.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`);
        if (m.value.lane !== 'diag') return this.reject(topic, `lane "${m.value.lane}" on the diag topic`);
        const { fresh, upTo } = this.store.accept(ref, m.value, () => {
          this.store.addDiag(m.value);
        });
        if (fresh) {
          this.log.warn(
            { event: 'bus.diag', fleet: ref.fleet, vehicle: ref.vehicle, diag: m.value.event, lane: m.value.affectedLane, count: m.value.count, reason: m.value.reason },
            `bus ${ref.fleet}/${ref.vehicle}: ${m.value.event} ${m.value.reason}`,
          );
        }
        this.queueReceipt(ref, m.value, upTo, m.value.id);
        return;
      }
      case 'footage': {
        const m = decode(FootageAnswerWireSchema, payload);
        if (!m.ok) return this.reject(topic, m.error);
        if (!sameVehicle(m.value)) return this.reject(topic, `payload names ${m.value.fleet}/${m.value.vehicle}, topic is ${ref.fleet}/${ref.vehicle}`);
        if (m.value.lane !== 'clip') return this.reject(topic, `lane "${m.value.lane}" on the footage topic`);
        const { fresh, upTo } = this.store.accept(ref, m.value, () => {
          this.store.footage.answer(m.value);
        });
        if (fresh) {
          this.log.info(
            { event: 'footage.answered', requestId: m.value.requestId, camera: m.value.camera, status: m.value.status, reason: m.value.reason, fileId: m.value.fileId, fleet: ref.fleet, vehicle: ref.vehicle },
            `bus ${ref.fleet}/${ref.vehicle}: footage ${m.value.status}: ${m.value.reason}`,
          );
        }
        this.queueReceipt(ref, m.value, upTo, m.value.id);
        return;
      }
      case 'snapshot':
      case 'clip':
        // Evidence files come on .../up/file/... (this.files); these kinds are kept for the lanes' names.
        return this.reject(topic, `evidence (${t.kind}) travels as a file transfer, not on this topic`);
      case 'receipt': {
        const m = decode(BusReceiptMessageSchema, payload);
        if (!m.ok) return this.reject(topic, m.error);
        this.store.markAckSeen(m.value.acks);
        this.log.info({ event: 'ack.seen', alarmIds: m.value.acks, fleet: ref.fleet, vehicle: ref.vehicle }, 'bus confirmed acknowledgement');
        this.emit('ackSeen', m.value.acks);
        return;
      }
      case 'status': {
        if (payload.length === 0) return; // a cleared retained message
        const m = decode(StatusMessageSchema, payload);
        if (!m.ok) return this.reject(topic, m.error);
        this.store.setStatus(ref, m.value);
        this.log.info({ event: 'vehicle.status', fleet: ref.fleet, vehicle: ref.vehicle, state: m.value.state }, `vehicle ${m.value.state}`);
        if (m.value.state === 'online') {
          this.reconcileOpenAlarms(ref, m.value.openAlarms ?? []);
          this.resendAcks(ref);
          this.resendFootageRequests(ref);
        }
        return;
      }
    }
  }

  /** Receipts per vehicle and epoch, gathered within one tick so a burst costs one message. */
  private queueReceipt(ref: VehicleRef, env: Envelope, upTo: number, id: string): void {
    const key = `${ref.fleet}/${ref.vehicle}/${env.epoch}`;
    let entry = this.pendingReceipts.get(key);
    if (!entry) {
      entry = { ref, epoch: env.epoch, lanes: new Map(), ids: [] };
      this.pendingReceipts.set(key, entry);
    }
    if (env.seq === 0) entry.ids.push(id);
    else entry.lanes.set(env.lane, Math.max(upTo, entry.lanes.get(env.lane) ?? 0));
    if (this.receiptFlushScheduled) return;
    this.receiptFlushScheduled = true;
    setImmediate(() => {
      this.receiptFlushScheduled = false;
      const batches = [...this.pendingReceipts.values()];
      this.pendingReceipts.clear();
      for (const b of batches) {
        const lanes = Object.fromEntries(b.lanes) as ReceiptMessage['lanes'];
        for (let i = 0; i === 0 || i < b.ids.length; i += 1000) {
          const ids = b.ids.slice(i, i + 1000);
          const receipt: ReceiptMessage = { v: 1, epoch: b.epoch, lanes: i === 0 ? lanes : {}, ...(ids.length ? { ids } : {}) };
          if (this.stopping || !this.session?.connected) continue; // not receipted: the bus sends it again
          this.session.client.publish(downlinkTopic(b.ref, 'receipt'), encode(receipt), { qos: 1 });
          const at = monoMs();
          this.log.debug({ event: 'receipt.sent', ...receipt, fleet: b.ref.fleet, vehicle: b.ref.vehicle, stepMonoMs: at }, 'receipt sent');
          this.emit('receiptSent', receipt, at);
        }
      }
    });
  }
}
