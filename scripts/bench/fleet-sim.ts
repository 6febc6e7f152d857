// Light simulated buses for the fleet bench: each its own MQTT 5 session
// (mqtt.js) on the real broker, sending what a bus sends, built by the
// project's own code (gateway/lane-item.ts for the message and its topic,
// gateway/uplink.ts's withEnvelope for the lane envelope, the receipts
// checked by gateway/downlink.ts with the bus's CommandTrust), with the
// uplink's rules: alarms first and regardless of the window, the rest within
// a window of unacknowledged publishes, everything kept until dispatch's
// receipt and sent again after resendS. What it leaves out is the disk: the
// outbox is in memory, and a track batch is made when it is sent.
//
// Run as a child process by scripts/bench/fleet.ts (the fleet), and imported
// by it (the probe buses that time the alarms). Commands over IPC.

import { randomBytes, randomUUID } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import mqtt, { type MqttClient } from 'mqtt';
import pino from 'pino';
import { CommandTrust } from '../../gateway/command-trust.ts';
import { type DownlinkHandlers, takeDownlink } from '../../gateway/downlink.ts';
import { laneItem } from '../../gateway/lane-item.ts';
import { withEnvelope } from '../../gateway/uplink.ts';
import { readPublicKey } from '../../common/keys.ts';
import type { AlarmMessage, PositionMessage, StatusMessage } from '../../protocol/messages.ts';
import { encode } from '../../protocol/messages.ts';
import { type VehicleRef, uplinkTopic, vehicleDownlinkFilter } from '../../protocol/topics.ts';

const silent = pino({ level: 'silent' });

export interface SimOptions {
  url: string;
  password: string;
  /** The dispatch signing key the buses trust. */
  keyId: string;
  publicKeyFile: string;
  /** Raw mode (the peer run): a message is done at the broker's PUBACK; no receipts are awaited. */
  raw?: boolean;
  resendS?: number;
  window?: number;
}

type SimLane = 'alarm' | 'track';

interface Item {
  id: string;
  seq: number;
  /** Made when first sent (a track batch), kept for re-sending. */
  payload: Buffer | null;
  topic: string;
  kind: 'alarm' | 'track';
  sentAt: number | null;
  madeMs: number;
}

/** A track batch as the track reporter makes it every 30 s: 15 points, 2 s apart, moving along a street. */
function trackMessage(ref: VehicleRef, n: number): PositionMessage {
  const t0 = Date.now() - 30_000;
  return {
    v: 1,
    id: randomUUID(),
    fleet: ref.fleet,
    vehicle: ref.vehicle,
    alarmId: null,
    points: Array.from({ length: 15 }, (_, i) => ({
      at: new Date(t0 + i * 2000).toISOString(),
      timeSource: 'gps' as const,
      fix: { valid: true, lat: 34.26 + (n * 15 + i) * 1e-5, lon: 108.94, altM: 400, speedMps: 8, trackDeg: 0, time: new Date(t0 + i * 2000).toISOString(), ageS: 0.4, stale: false, sats: 9, hdop: 0.9 },
    })),
  };
}

export class SimBus {
  readonly epoch = randomBytes(8).toString('hex');
  private client: MqttClient | null = null;
  private readonly seq: Record<SimLane, number> = { alarm: 0, track: 0 };
  private readonly lanes: Record<SimLane, Map<number, Item>> = { alarm: new Map(), track: new Map() };
  private readonly resendRounds: Record<SimLane, number> = { alarm: 0, track: 0 };
  private inflight = 0;
  private generation = 0;
  private made = 0;
  private readonly trust: CommandTrust;
  private readonly handlers: DownlinkHandlers;
  /** Alarm id → when it was published (Date.now()), until its receipt. */
  private readonly alarmSent = new Map<string, number>();
  /** When the broker last accepted our CONNECT (Date.now()). */
  connectedAt = 0;
  /** Alarm receipts: [alarm id, ms from publish, ms from connect]. */
  readonly alarmLatencies: { id: string; ms: number; fromConnectMs: number; sentAt: number; connectedAt: number }[] = [];
  /** Track messages receipted (or, raw, PUBACKed). */
  trackDone = 0;
  /** When the last track message was done. */
  lastTrackDoneAt = 0;

  constructor(
    readonly ref: VehicleRef,
    private readonly o: SimOptions,
    keys: ReadonlyMap<string, KeyObject>,
  ) {
    this.trust = new CommandTrust({ self: ref, keys, clockSkewS: 86_400, now: () => new Date(), log: silent });
    this.handlers = {
      receipt: (r) => {
        if (r.epoch !== this.epoch) return;
        for (const [lane, upTo] of Object.entries(r.lanes) as [SimLane, number][]) this.settle(lane, upTo);
      },
      ack: () => {},
      footage: () => {},
      file: () => {},
    };
  }

  get user(): string {
    return `${this.ref.fleet}/${this.ref.vehicle}`;
  }

  /** Unfinished work: messages not yet receipted. */
  get pending(): number {
    return this.lanes.alarm.size + this.lanes.track.size;
  }

  connect(): Promise<void> {
    const generation = ++this.generation;
    const client = mqtt.connect(this.o.url, {
      protocolVersion: 5,
      clientId: this.user,
      username: this.user,
      password: this.o.password,
      clean: false,
      properties: { sessionExpiryInterval: 7_200 },
      reconnectPeriod: 1_000,
      connectTimeout: 120_000,
      keepalive: 120,
      writeCache: false,
      will: { topic: uplinkTopic(this.ref, 'status'), payload: this.status('offline'), qos: 1, retain: true },
    });
    this.client = client;
    client.on('message', (topic, payload) => takeDownlink(this.ref, this.trust, this.handlers, silent, topic, payload));
    client.on('error', () => {});
    return new Promise((resolve) => {
      client.on('connect', () => {
        if (generation !== this.generation) return;
        this.connectedAt = Date.now();
        this.inflight = 0;
        for (const lane of ['alarm', 'track'] as const) for (const it of this.lanes[lane].values()) it.sentAt = null;
        client.publish(uplinkTopic(this.ref, 'status'), this.status('online'), { qos: 1, retain: true });
        if (!this.o.raw) client.subscribe(vehicleDownlinkFilter(this.ref), { qos: 1 });
        this.pump();
        resolve();
      });
    });
  }

  /** Gone: the connection dropped (the will says offline); what is unreceipted stays for the next connect. */
  async disconnect(): Promise<void> {
    const c = this.client;
    this.client = null;
    this.generation++;
    if (c) await new Promise<void>((r) => c.end(true, {}, () => r()));
  }

  /** n track batches for the outbox (made when sent). */
  queueTrack(n: number): void {
    for (let i = 0; i < n; i++) {
      const seq = ++this.seq.track;
      this.lanes.track.set(seq, { id: '', seq, payload: null, topic: uplinkTopic(this.ref, 'position'), kind: 'track', sentAt: null, madeMs: Date.now() });
    }
    this.pump();
  }

  /** Press the button: an emergency, stored and sent ahead of everything. Returns its id. */
  press(): string {
    const msg: AlarmMessage = {
      v: 1,
      id: randomUUID(),
      kind: 'emergency',
      fleet: this.ref.fleet,
      vehicle: this.ref.vehicle,
      route: '603',
      raisedAt: new Date().toISOString(),
      timeSource: 'gps',
      heldMs: 600,
      fix: null,
    };
    const item = laneItem(this.ref, 'alarm', 'alarm', msg);
    const seq = ++this.seq.alarm;
    this.lanes.alarm.set(seq, { id: item.id, seq, payload: item.payload, topic: item.topic, kind: 'alarm', sentAt: null, madeMs: Date.now() });
    this.pump();
    return item.id;
  }

  /** Whatever went out resendS ago without a receipt goes again (the uplink's resendDue). */
  resendDue(now = Date.now()): void {
    // Raw: the broker's PUBACK is the end (mqtt.js itself re-sends what a lost connection left unacknowledged).
    if (this.o.raw) return;
    let any = false;
    for (const lane of ['alarm', 'track'] as const) {
      // As the uplink does (gateway/uplink.ts resendDue): the track backs off while dispatch does not receipt it.
      const cutoff = now - (this.o.resendS ?? 5) * 1000 * (lane === 'alarm' ? 1 : 2 ** Math.min(this.resendRounds[lane], 4));
      let due = false;
      for (const it of this.lanes[lane].values()) {
        if (it.sentAt !== null && it.sentAt <= cutoff) {
          it.sentAt = null;
          due = true;
        }
      }
      if (due) this.resendRounds[lane]++;
      any ||= due;
    }
    if (any) this.pump();
  }

  private status(state: 'online' | 'offline'): Buffer {
    return encode({ v: 1, state, at: new Date().toISOString(), agent: 'busguard-fleet-sim/0.1.0', openAlarms: [] } satisfies StatusMessage);
  }

  private floor(lane: SimLane): number {
    for (const seq of this.lanes[lane].keys()) return seq;
    return this.seq[lane] + 1;
  }

  /** Alarms regardless of the window; then track while the window has room. */
  private pump(): void {
    const c = this.client;
    if (!c?.connected) return;
    for (const lane of ['alarm', 'track'] as const) {
      for (const it of this.lanes[lane].values()) {
        if (it.sentAt !== null) continue;
        if (lane === 'track' && this.inflight >= (this.o.window ?? 64)) return;
        if (it.payload === null) {
          const item = laneItem(this.ref, 'position', 'track', trackMessage(this.ref, this.made++));
          it.id = item.id;
          it.payload = item.payload;
        }
        const payload = withEnvelope({ lane, seq: it.seq, id: it.id, topic: it.topic, payload: it.payload, createdMs: it.madeMs }, this.epoch, this.floor(lane));
        it.sentAt = Date.now();
        if (it.kind === 'alarm') this.alarmSent.set(it.id, it.sentAt);
        this.inflight++;
        const generation = this.generation;
        c.publish(it.topic, payload, { qos: 1 }, () => {
          if (generation !== this.generation) return;
          this.inflight--;
          if (this.o.raw) this.settleOne(lane, it.seq);
          this.pump();
        });
      }
    }
  }

  private settle(lane: SimLane, upTo: number): void {
    let any = false;
    for (const seq of this.lanes[lane].keys()) {
      if (seq > upTo) break; // in seq order
      this.settleOne(lane, seq);
      any = true;
    }
    if (any) this.resendRounds[lane] = 0;
  }

  private settleOne(lane: SimLane, seq: number): void {
    const it = this.lanes[lane].get(seq);
    if (!it) return;
    this.lanes[lane].delete(seq);
    const now = Date.now();
    if (lane === 'alarm') {
      const sent = this.alarmSent.get(it.id);
      this.alarmSent.delete(it.id);
      if (sent !== undefined) this.alarmLatencies.push({ id: it.id, ms: now - sent, fromConnectMs: now - this.connectedAt, sentAt: sent, connectedAt: this.connectedAt });
    } else {
      this.trackDone++;
      this.lastTrackDoneAt = now;
    }
  }
}

export function makeBuses(first: number, count: number, o: SimOptions): SimBus[] {
  const problems: string[] = [];
  const key = readPublicKey('publicKeyFile', o.publicKeyFile, problems);
  if (!key) throw new Error(problems.join('; '));
  const keys = new Map([[o.keyId, key]]);
  return Array.from({ length: count }, (_, i) => new SimBus({ fleet: 'city', vehicle: `bus-${first + i}` }, o, keys));
}

/** Connect these buses, at most `parallel` CONNECTs under way at a time (or all at once: a reconnect storm). */
export async function connectAll(buses: SimBus[], parallel = buses.length): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(parallel, buses.length) }, async () => {
      while (next < buses.length) await buses[next++]!.connect();
    }),
  );
}

// The fleet child: commands from scripts/bench/fleet.ts over IPC.
type Command =
  | { cmd: 'init'; first: number; count: number; options: SimOptions }
  | { cmd: 'connect'; parallel: number }
  | { cmd: 'steady'; seconds: number }
  | { cmd: 'offline' }
  | { cmd: 'queue'; batches: number; alarmEvery: number }
  | { cmd: 'online' }
  | { cmd: 'drained' }
  | { cmd: 'exit' };

if (process.send && process.argv.includes('--fleet-child')) {
  let buses: SimBus[] = [];
  const resend = setInterval(() => {
    const now = Date.now();
    for (const b of buses) b.resendDue(now);
  }, 1000);
  const reply = (m: object) => process.send!(m);
  process.on('message', (m: Command) => {
    void (async () => {
      switch (m.cmd) {
        case 'init':
          buses = makeBuses(m.first, m.count, m.options);
          return reply({ ok: 'init' });
        case 'connect':
          await connectAll(buses, m.parallel);
          return reply({ ok: 'connect' });
        case 'steady': {
          // Each bus sends a track batch every 30 s, staggered over the 30 s.
          const timers = buses.map((b, i) => setTimeout(() => {
            b.queueTrack(1);
            timers.push(setInterval(() => b.queueTrack(1), 30_000));
          }, (i * 30_000) / buses.length));
          await new Promise((r) => setTimeout(r, m.seconds * 1000));
          for (const t of timers) clearInterval(t);
          return reply({ ok: 'steady', trackDone: buses.reduce((n, b) => n + b.trackDone, 0) });
        }
        case 'offline':
          await Promise.all(buses.map((b) => b.disconnect()));
          for (const b of buses) b.trackDone = 0;
          return reply({ ok: 'offline' });
        case 'queue': {
          let alarms = 0;
          buses.forEach((b, i) => {
            b.queueTrack(m.batches);
            if (i % m.alarmEvery === 0) {
              b.press();
              alarms++;
            }
          });
          return reply({ ok: 'queue', alarms, track: buses.length * m.batches });
        }
        case 'online': {
          const t0 = Date.now();
          for (const b of buses) b.alarmLatencies.length = 0;
          await connectAll(buses);
          return reply({ ok: 'online', startedAt: t0, connectedAt: Date.now() });
        }
        case 'drained': {
          const pending = buses.reduce((n, b) => n + b.pending, 0);
          const alarms = buses.flatMap((b) => b.alarmLatencies.map((a) => ({ id: a.id, connectedAt: a.connectedAt, receiptMs: a.fromConnectMs })));
          const trackDone = buses.reduce((n, b) => n + b.trackDone, 0);
          const lastTrackDoneAt = Math.max(0, ...buses.map((b) => b.lastTrackDoneAt));
          return reply({ ok: 'drained', pending, alarms, trackDone, lastTrackDoneAt });
        }
        case 'exit':
          clearInterval(resend);
          await Promise.all(buses.map((b) => b.disconnect()));
          reply({ ok: 'exit' });
          return process.exit(0);
      }
    })().catch((err: Error) => reply({ error: err.stack ?? err.message }));
  });
}
