// The bus's MQTT session: MQTT 5, QoS 1, a persistent session, a retained
// status with a last will, reconnect with backoff and jitter, and the outbox
// drained through it. Nothing is published that is not committed first, and
// nothing leaves the outbox on a PUBACK: only dispatch's receipt removes it.
//
// Drain order: every due alarm and incident first, whatever else waits; then
// the other lanes share the link by weight (evidence weighs most, so it goes
// mostly first, but track still makes progress on a slow link). A window
// bounds what is published and not yet PUBACKed, in messages and in bytes:
// enough to fill the link, short enough that a live alarm published now is
// not queued behind megabytes of backlog in the socket.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { type VehicleRef, mqttUsername, uplinkTopic, vehicleDownlinkFilter } from '../protocol/topics.ts';
import { type AckMessage, type FootageRequest, type StatusMessage, encode } from '../protocol/messages.ts';
import type { Health } from '../protocol/health.ts';
import { LANES, LANE_TABLE, type Lane } from '../protocol/lanes.ts';
import { type MqttConnection, MqttSession } from '../common/mqtt-session.ts';
import type { CommandTrust } from './command-trust.ts';
import type { EvidenceSigner } from '../protocol/signed-evidence.ts';
import { type DownlinkHandlers, takeDownlink } from './downlink.ts';
import type { Outbox, OutboxItem } from './outbox.ts';

export interface UplinkOptions {
  ref: VehicleRef;
  mqtt: MqttConnection;
  outbox: Outbox;
  /** Re-send a message not confirmed after this long while connected. */
  resendMs: number;
  agent: string;
  log: Logger;
  /** Ids of the alarms the bus holds open, listed in the "online" status so dispatch can re-send a lost ack. */
  openAlarms?: () => string[];
  /** The unit's latest health (firmware/health.ts), sent with every "online" status. */
  health?: () => Health | null;
  /** The check every command from dispatch passes before the bus acts on it. */
  trust: CommandTrust;
  /** Signs alarm records and evidence files with the unit's key (its TLS identity); null on a unit without a certificate. */
  signer?: EvidenceSigner | null;
}

export interface UplinkEvents {
  connected: [];
  disconnected: [];
  /** Dispatch confirmed these outbox ids (they were removed). */
  confirmed: [ids: string[], lane: Lane];
  ack: [ack: AckMessage];
  /** Dispatch asks for a window of video (validated). */
  footage: [request: FootageRequest];
}

/** Per lane: what has been read from the outbox and not yet published, and how far reading got. */
interface LaneCursor {
  queue: OutboxItem[];
  lastSeq: number;
  /** Turns left in the current weighted round. */
  credit: number;
}

export class Uplink extends EventEmitter<UplinkEvents> {
  private session: MqttSession | null = null;
  private resendTimer: NodeJS.Timeout | null = null;
  private cursors = new Map<Lane, LaneCursor>();
  /** When each message (by id) was last published on this connection. */
  private sentAt = new Map<string, { at: number; lane: Lane }>();
  private inflight = 0;
  private inflightBytes = 0;
  /** Bumped per connection: PUBACK callbacks of an old connection must not touch the window. */
  private generation = 0;
  private flushing = false;
  private rrIndex = 0;
  private readonly wrrLanes: Lane[] = LANES.filter((l) => LANE_TABLE[l].tier > 0);
  /** Ids of messages of amended lanes (the ledger) read for sending, or sent, by this process: a record may be amended only until then. */
  private readonly taken = new Set<string>();
  /** Alarms the disk could not hold: sent from memory with seq 0 until receipted by id. */
  private readonly volatile = new Map<string, { item: OutboxItem; sentAt: number | null }>();
  /** Per lane: re-sends since its last receipt (the back-off of resendDue). */
  private readonly resendRounds = new Map<Lane, number>();
  /** When the current connection came up (ISO). */
  private onlineAt = '';

  constructor(private readonly o: UplinkOptions) {
    super();
  }

  get connected(): boolean {
    return this.session?.connected ?? false;
  }

  /** The check on commands from dispatch: the evidence file upload applies it to file receipts. */
  get signer(): EvidenceSigner | null {
    return this.o.signer ?? null;
  }

  get trust(): CommandTrust {
    return this.o.trust;
  }

  /** The MQTT session, once started: the evidence file upload shares it (one connection per bus). */
  get mqtt(): MqttSession | null {
    return this.session;
  }

  /** Alarms or incidents stored and not yet confirmed by dispatch (the file upload yields to them). */
  alarmsWaiting(): boolean {
    return this.volatile.size > 0 || this.o.outbox.size('alarm') > 0 || this.o.outbox.size('incident') > 0;
  }

  start(): void {
    const { ref } = this.o;
    const session = new MqttSession(
      this.o.mqtt,
      { username: mqttUsername(ref) },
      this.o.log,
      { topic: uplinkTopic(ref, 'status'), payload: this.status('offline'), qos: 1, retain: true },
    );
    this.session = session;
    session.on('connected', (sessionPresent) => this.onConnect(sessionPresent));
    session.on('disconnected', () => {
      this.o.log.warn({ event: 'mqtt.disconnected', pending: this.o.outbox.size() }, 'disconnected from broker');
      this.emit('disconnected');
    });
    session.on('message', (topic, payload) => this.onMessage(topic, payload));
    this.resendTimer = setInterval(() => this.resendDue(), Math.min(1000, this.o.resendMs));
    this.resendTimer.unref();
  }

  /** Something was appended to `lane`: send it now if we can (alarms regardless of the window). */
  kick(): void {
    this.flush();
  }

  /** Send an alarm that could not be stored, from memory, until dispatch receipts it by id. */
  sendVolatile(item: { id: string; lane: Lane; topic: string; payload: Buffer }): void {
    this.volatile.set(item.id, { item: { ...item, seq: 0, createdMs: Date.now() }, sentAt: null });
    this.flush();
  }

  /** Tell dispatch the bus has applied these acks, so it stops re-sending them. */
  sendBusReceipt(alarmIds: string[]): void {
    // If this is lost, dispatch re-sends the ack and we answer again.
    if (!this.session?.connected) return;
    this.session.client.publish(uplinkTopic(this.o.ref, 'receipt'), encode({ v: 1, acks: alarmIds }), { qos: 1 });
  }

  /** The unit's health changed: the retained status says so now (when connected; else at the next connect). */
  publishStatus(): void {
    if (!this.session?.connected) return;
    this.session.client.publish(uplinkTopic(this.o.ref, 'status'), this.status('online'), { qos: 1, retain: true });
  }

  async stop(): Promise<void> {
    if (this.resendTimer) clearInterval(this.resendTimer);
    await this.session?.stop({ topic: uplinkTopic(this.o.ref, 'status'), payload: this.status('offline'), retain: true });
  }

  /** Whether this message has been read for sending, or sent, by this process (on any connection): then it must not be amended. */
  takenForSending(id: string): boolean {
    return this.taken.has(id);
  }

  /** Published and not yet PUBACKed: messages and bytes (for tests and benches). */
  inFlight(): { messages: number; bytes: number } {
    return { messages: this.inflight, bytes: this.inflightBytes };
  }

  private status(state: StatusMessage['state']): Buffer {
    let open: string[] | undefined;
    if (state === 'online' && this.o.openAlarms) {
      try {
        open = this.o.openAlarms().slice(0, 100);
      } catch (err) {
        this.o.log.error({ event: 'status.open-alarms-failed', err: (err as Error).message }, 'cannot list open alarms for dispatch');
      }
    }
    const health = state === 'online' ? this.o.health?.() : null;
    // Online: when this connection came up, the same in every status sent on it (dispatch's "online since").
    const at = state === 'online' && this.onlineAt ? this.onlineAt : new Date().toISOString();
    return encode({ v: 1, state, at, agent: this.o.agent, ...(open ? { openAlarms: open } : {}), ...(health ? { health } : {}) } satisfies StatusMessage);
  }

  private onConnect(sessionPresent: boolean): void {
    const client = this.session!.client;
    this.o.log.info({ event: 'mqtt.connected', url: this.o.mqtt.url, sessionPresent, pending: this.o.outbox.size() }, 'connected to broker');
    this.onlineAt = new Date().toISOString();
    client.publish(uplinkTopic(this.o.ref, 'status'), this.status('online'), { qos: 1, retain: true });
    this.session!.subscribeChecked(vehicleDownlinkFilter(this.o.ref), 'our command topics: receipts and acks cannot arrive; check the broker ACL');
    // Whatever was in flight on the old connection may be lost: start over.
    this.generation++;
    this.inflight = 0;
    this.inflightBytes = 0;
    this.sentAt.clear();
    this.cursors.clear();
    this.flush();
    this.emit('connected');
  }

  private cursor(lane: Lane): LaneCursor {
    let c = this.cursors.get(lane);
    if (!c) {
      c = { queue: [], lastSeq: 0, credit: 0 };
      this.cursors.set(lane, c);
    }
    return c;
  }

  /** The next unsent message of a lane, reading the outbox in chunks of the lane's batch size. */
  private peek(lane: Lane): OutboxItem | undefined {
    const c = this.cursor(lane);
    while (c.queue.length === 0) {
      const chunk = this.o.outbox.after(lane, c.lastSeq, Math.max(16, this.o.outbox.rules[lane].batch));
      if (chunk.length === 0) return undefined;
      c.lastSeq = chunk.at(-1)!.seq;
      // Skip what went out recently on this connection and is awaiting its receipt.
      c.queue = chunk.filter((i) => !this.sentAt.has(i.id));
      // A record read for sending goes out as read: amending it now (Diagnostics adds
      // evicted ranges to an open ledger record) would change the row and not what is sent.
      if (LANE_TABLE[lane].amended) for (const i of c.queue) this.taken.add(i.id);
    }
    return c.queue[0];
  }

  private take(lane: Lane): OutboxItem | undefined {
    const item = this.peek(lane);
    if (item) this.cursor(lane).queue.shift();
    return item;
  }

  /** Next message by the drain order: alarms and incidents first, then weighted round robin. */
  private next(): OutboxItem | undefined {
    for (const v of this.volatile.values()) {
      if (v.sentAt !== null) continue;
      v.sentAt = Date.now();
      return v.item;
    }
    for (const lane of LANES) {
      if (LANE_TABLE[lane].tier !== 0) break;
      const item = this.take(lane);
      if (item) return item;
    }
    if (this.inflight >= this.o.outbox.config.window || this.inflightBytes >= this.o.outbox.config.windowBytes) return undefined;
    for (let tried = 0; tried < this.wrrLanes.length * 2; tried++) {
      const lane = this.wrrLanes[this.rrIndex % this.wrrLanes.length]!;
      const c = this.cursor(lane);
      if (c.credit <= 0) c.credit = this.o.outbox.rules[lane].weight;
      const item = this.peek(lane);
      if (item) {
        c.queue.shift();
        if (--c.credit <= 0) this.rrIndex++;
        return item;
      }
      c.credit = 0;
      this.rrIndex++;
    }
    return undefined;
  }

  private flush(): void {
    if (!this.session?.connected || this.flushing) return;
    this.flushing = true;
    const client = this.session.client;
    const generation = this.generation;
    const floors = new Map<Lane, number>();
    try {
      for (let item = this.next(); item; item = this.next()) {
        let floor = floors.get(item.lane);
        if (floor === undefined) {
          floor = this.o.outbox.floor(item.lane);
          floors.set(item.lane, floor);
        }
        const payload = withEnvelope(item, this.o.outbox.epoch, floor);
        const resend = this.sentAt.has(item.id) || item.createdMs < Date.now() - this.o.resendMs;
        if (item.seq > 0) this.sentAt.set(item.id, { at: Date.now(), lane: item.lane });
        if (LANE_TABLE[item.lane].amended) this.taken.add(item.id);
        this.inflight++;
        this.inflightBytes += payload.length;
        client.publish(item.topic, payload, { qos: 1 }, (err) => {
          if (generation !== this.generation) return;
          this.inflight--;
          this.inflightBytes -= payload.length;
          if (err) {
            this.o.log.error(
              { event: 'uplink.publish-refused', id: item.id, lane: item.lane, topic: item.topic, err: err.message },
              'broker refused a publish; it stays in the outbox',
            );
          }
          setImmediate(() => this.flush());
        });
        if (resend) this.o.log.debug({ event: 'uplink.resend', id: item.id, lane: item.lane, seq: item.seq }, 're-sending unconfirmed message');
      }
    } catch (err) {
      this.o.log.error({ event: 'outbox.read-failed', err: (err as Error).message }, 'cannot read the outbox');
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Messages published longer than resendMs ago and still not receipted go
   * out again. Alarms and incidents always after resendMs; any other lane
   * after resendMs × 2^k, k the lane's re-sends since its last receipt (at
   * most RESEND_BACKOFF_MAX×): when a whole fleet comes back at once and
   * dispatch commits slower than the buses send, re-sending every backlog
   * every few seconds only multiplies the load (the fleet bench at 10,000
   * buses stalled at 4/5 drained, every bus re-sending its window).
   */
  private resendDue(): void {
    const now = Date.now();
    const cutoff = now - this.o.resendMs;
    for (const v of this.volatile.values()) if (v.sentAt !== null && v.sentAt <= cutoff) v.sentAt = null;
    const lanes = new Set<Lane>();
    for (const [id, sent] of this.sentAt) {
      const factor = PROTECTED_RESEND.includes(sent.lane) ? 1 : 2 ** Math.min(this.resendRounds.get(sent.lane) ?? 0, RESEND_BACKOFF_LOG2);
      if (sent.at > now - this.o.resendMs * factor) continue;
      this.sentAt.delete(id);
      lanes.add(sent.lane);
    }
    for (const lane of lanes) this.resendRounds.set(lane, (this.resendRounds.get(lane) ?? 0) + 1);
    // Read those lanes again from their start; what is still recent stays skipped.
    for (const lane of lanes) this.cursors.delete(lane);
    if (lanes.size) this.o.log.info({ event: 'uplink.resend-due', lanes: [...lanes] }, 're-sending unconfirmed messages');
    this.flush();
  }

  private onMessage(topic: string, payload: Buffer): void {
    try {
      this.handleDownlink(topic, payload);
    } catch (err) {
      // A full or failing disk must not take the agent down from inside the MQTT client:
      // the receipt is lost, dispatch's next one (or the re-sent message's) covers it.
      this.o.log.error({ event: 'downlink.failed', topic, err: (err as Error).message }, 'could not apply a command');
    }
  }

  private handleDownlink(topic: string, payload: Buffer): void {
    takeDownlink(this.o.ref, this.o.trust, this.downlink, this.o.log, topic, payload);
  }

  private readonly downlink: DownlinkHandlers = {
    receipt: (receipt, topic) => {
      if (receipt.epoch !== this.o.outbox.epoch) {
        this.o.log.warn({ event: 'downlink.rejected', topic, reason: `receipt for epoch ${receipt.epoch}, this outbox is ${this.o.outbox.epoch}` }, 'receipt for another outbox ignored');
        return;
      }
      // A receipt past what the bus has sent is not dispatch's (or dispatch is broken): nothing of it is applied.
      const beyond = (Object.entries(receipt.lanes) as [Lane, number][]).filter(([lane, upTo]) => upTo > this.o.outbox.lastSeq(lane));
      if (beyond.length) {
        const reason = beyond.map(([lane, upTo]) => `${lane} up to ${upTo}, the bus has sent up to ${this.o.outbox.lastSeq(lane)}`).join('; ');
        this.o.log.warn({ event: 'downlink.refused', topic, kind: 'receipt', reason }, 'receipt for messages this bus never sent refused');
        return;
      }
      const volatile = (receipt.ids ?? []).filter((id) => this.volatile.delete(id));
      if (volatile.length) this.emit('confirmed', volatile, 'alarm');
      for (const [lane, upTo] of Object.entries(receipt.lanes) as [Lane, number][]) {
        const removed = this.o.outbox.confirmUpTo(lane, upTo);
        for (const id of removed) {
          this.sentAt.delete(id);
          this.taken.delete(id);
        }
        if (removed.length) {
          this.resendRounds.delete(lane);
          this.emit('confirmed', removed, lane);
        }
      }
      this.flush();
    },
    ack: (ack) => this.emit('ack', ack),
    footage: (req) => this.emit('footage', req),
    // The evidence upload listens on the same session and takes these.
    file: () => {},
  };
}

/** Lanes re-sent after resendMs whatever the backlog: what a person is waiting for. */
const PROTECTED_RESEND: readonly Lane[] = ['alarm', 'incident'];
/** A backlog lane waits at most 2^4 = 16 × resendMs between re-sends (80 s at the default 5 s). */
const RESEND_BACKOFF_LOG2 = 4;

/** The stored JSON object with the lane envelope put in front: `{"lane":..,"epoch":..,"seq":..,"floor":..,` + the rest. */
export function withEnvelope(item: OutboxItem, epoch: string, floor: number): Buffer {
  const head = Buffer.from(`{"lane":"${item.lane}","epoch":"${epoch}","seq":${item.seq},"floor":${floor},`);
  return Buffer.concat([head, item.payload.subarray(1)]);
}
