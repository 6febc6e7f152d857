// The bus's MQTT session: MQTT 5, QoS 1, a persistent session, a retained
// status with a last will, reconnect with backoff and jitter, and the outbox
// drained through it. Nothing is published that is not committed first, and
// nothing leaves the outbox on a PUBACK: only dispatch's receipt removes it.

import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import {
  type VehicleRef,
  downlinkTopic,
  mqttUsername,
  parseTopic,
  uplinkTopic,
  vehicleDownlinkFilter,
} from '../protocol/topics.ts';
import {
  type AckMessage,
  AckMessageSchema,
  ReceiptMessageSchema,
  type StatusMessage,
  decode,
  encode,
} from '../protocol/messages.ts';
import { type MqttConnection, MqttSession } from '../protocol/mqtt-session.ts';
import type { Outbox } from './outbox.ts';

export interface UplinkOptions {
  ref: VehicleRef;
  mqtt: MqttConnection;
  outbox: Outbox;
  /** Re-send a message not confirmed after this long while connected. */
  resendMs: number;
  /** Messages published and not yet confirmed, at most. */
  window?: number;
  agent: string;
  log: Logger;
}

export interface UplinkEvents {
  connected: [];
  disconnected: [];
  /** Dispatch confirmed these outbox ids (they were removed). */
  confirmed: [ids: string[]];
  ack: [ack: AckMessage];
}

export class Uplink extends EventEmitter<UplinkEvents> {
  private session: MqttSession | null = null;
  private resendTimer: NodeJS.Timeout | null = null;
  private readonly window: number;

  constructor(private readonly o: UplinkOptions) {
    super();
    this.window = o.window ?? 100;
  }

  get connected(): boolean {
    return this.session?.connected ?? false;
  }

  start(): void {
    const { ref } = this.o;
    const session = new MqttSession(
      this.o.mqtt,
      { username: mqttUsername(ref), clientId: `bg-${ref.fleet}-${ref.vehicle}` },
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
    this.resendTimer = setInterval(() => this.flush(), Math.min(1000, this.o.resendMs));
    this.resendTimer.unref();
  }

  /** Something was appended: send it now if we can. */
  kick(): void {
    this.flush();
  }

  /** Tell dispatch the bus has applied these acks, so it stops re-sending them. */
  sendBusReceipt(alarmIds: string[]): void {
    // If this is lost, dispatch re-sends the ack and we answer again.
    if (!this.session?.connected) return;
    this.session.client.publish(uplinkTopic(this.o.ref, 'receipt'), encode({ v: 1, acks: alarmIds }), { qos: 1 });
  }

  async stop(): Promise<void> {
    if (this.resendTimer) clearInterval(this.resendTimer);
    await this.session?.stop({ topic: uplinkTopic(this.o.ref, 'status'), payload: this.status('offline'), retain: true });
  }

  private status(state: StatusMessage['state']): Buffer {
    return encode({ v: 1, state, at: new Date().toISOString(), agent: this.o.agent } satisfies StatusMessage);
  }

  private onConnect(sessionPresent: boolean): void {
    const client = this.session!.client;
    this.o.log.info({ event: 'mqtt.connected', url: this.o.mqtt.url, sessionPresent, pending: this.o.outbox.size() }, 'connected to broker');
    client.publish(uplinkTopic(this.o.ref, 'status'), this.status('online'), { qos: 1, retain: true });
    client.subscribe(vehicleDownlinkFilter(this.o.ref), { qos: 1 }, (err, granted) => {
      const refused = granted?.filter((g) => g.qos >= 0x80) ?? [];
      if (err || refused.length) {
        this.o.log.error({ event: 'mqtt.subscribe-refused', err: err?.message, granted }, 'broker refused our command topics: receipts and acks cannot arrive; check the broker ACL');
      }
    });
    // Whatever was in flight on the old connection may be lost: send it all again.
    this.o.outbox.resetSent();
    this.flush();
    this.emit('connected');
  }

  private flush(): void {
    if (!this.session?.connected) return;
    const client = this.session.client;
    let items;
    try {
      items = this.o.outbox.due(Date.now() - this.o.resendMs, this.window);
    } catch (err) {
      this.o.log.error({ event: 'outbox.read-failed', err: (err as Error).message }, 'cannot read the outbox');
      return;
    }
    if (items.length === 0) return;
    for (const item of items) {
      client.publish(item.topic, item.payload, { qos: 1 }, (err) => {
        if (err) {
          this.o.log.error(
            { event: 'uplink.publish-refused', id: item.id, lane: item.lane, topic: item.topic, err: err.message },
            'broker refused a publish; it stays in the outbox',
          );
        }
      });
      if (item.attempts > 0) {
        this.o.log.info({ event: 'uplink.resend', id: item.id, lane: item.lane, attempt: item.attempts + 1 }, 're-sending unconfirmed message');
      }
    }
    this.o.outbox.markSent(items.map((i) => i.id));
  }

  private onMessage(topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    const mine = downlinkTopic(this.o.ref, 'receipt').slice(0, -'receipt'.length);
    if (!parsed || parsed.direction !== 'down' || !topic.startsWith(mine)) {
      this.o.log.warn({ event: 'downlink.rejected', topic, reason: 'not one of this vehicle\'s command topics' }, 'ignored message');
      return;
    }
    if (parsed.kind === 'receipt') {
      const msg = decode(ReceiptMessageSchema, payload);
      if (!msg.ok) {
        this.o.log.warn({ event: 'downlink.rejected', topic, reason: msg.error }, 'malformed receipt ignored');
        return;
      }
      const removed = this.o.outbox.confirm(msg.value.ids);
      if (removed.length) this.emit('confirmed', removed);
      return;
    }
    const msg = decode(AckMessageSchema, payload);
    if (!msg.ok) {
      this.o.log.warn({ event: 'downlink.rejected', topic, reason: msg.error }, 'malformed ack ignored');
      return;
    }
    this.emit('ack', msg.value);
  }
}
