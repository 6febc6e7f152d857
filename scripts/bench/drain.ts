// drain: a bus back from 24 hours offline. Its outbox holds what the agent
// would have written in that time (86,400 fixes at 1 Hz as track batches of
// position.batchMax points, 20 emergency alarms and 5 incidents), written
// with the agent's own Outbox and journal. The agent process then starts
// against a real Mosquitto on loopback with dispatch running; measured from
// its connect until dispatch holds every point, alarm and incident. In the
// same run, on the same broker, raw mqtt.js publishes the same number of QoS 1
// messages, pipelined, to a subscriber that counts them: the peer figure.

import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import { AlarmJournal, JOURNAL_SCHEMA } from '../../firmware/alarm-journal.ts';
import { OUTBOX_SCHEMA, Outbox, OutboxConfigSchema } from '../../gateway/outbox.ts';
import { laneItem } from '../../gateway/lane-item.ts';
import type { AlarmMessage, Fix, PositionMessage, TrackPoint } from '../../protocol/messages.ts';
import { monoMs } from '../../common/log.ts';
import { migrate, openDatabase } from '../../common/sqlite.ts';
import { USERS } from '../lib/mosquitto.ts';
import { Testbed } from '../lib/testbed.ts';
import { round } from './stats.ts';

const FIXES = Number(process.env.BENCH_FIXES ?? 86_400);
const ALARMS = 20;
const INCIDENTS = 5;
const BATCH = 60;
const ref = { fleet: 'city', vehicle: 'bus-1' };

function fixAt(i: number): Fix {
  // A bus going round a 5 km loop at 8 m/s.
  const a = (i / 625) * 2 * Math.PI;
  return { valid: true, lat: 34.26 + 0.007 * Math.sin(a), lon: 108.94 + 0.008 * Math.cos(a), altM: 400, speedMps: 8, trackDeg: (a * 180) / Math.PI % 360, time: new Date(Date.UTC(2026, 10, 22) + i * 1000).toISOString(), ageS: 0, stale: false, sats: 9, hdop: 0.9 };
}

/** What the agent's outbox holds after a day offline, written with the agent's own classes. */
function prefill(dir: string): void {
  const db = openDatabase(join(dir, 'bus', 'outbox.db'));
  migrate(db, [OUTBOX_SCHEMA + JOURNAL_SCHEMA]);
  const outbox = new Outbox(db, OutboxConfigSchema.parse({}));
  const journal = new AlarmJournal(db);
  const day0 = Date.UTC(2026, 10, 22);
  const alarmEvery = Math.floor(FIXES / (ALARMS + INCIDENTS));
  let points: TrackPoint[] = [];
  let alarmsMade = 0;
  for (let i = 0; i < FIXES; i++) {
    points.push({ at: new Date(day0 + i * 1000).toISOString(), timeSource: 'gps', fix: fixAt(i) });
    if (points.length === BATCH || i === FIXES - 1) {
      const msg: PositionMessage = { v: 1, id: randomUUID(), ...ref, alarmId: null, points };
      outbox.write('track', () => outbox.append(laneItem(ref, 'position', 'track', msg)));
      points = [];
    }
    if (i % alarmEvery === alarmEvery - 1 && alarmsMade < ALARMS + INCIDENTS) {
      const kind = alarmsMade < ALARMS ? 'emergency' : 'incident';
      const lane = kind === 'emergency' ? 'alarm' : 'incident';
      const alarm: AlarmMessage = { v: 1, id: randomUUID(), kind, ...ref, route: '603', raisedAt: new Date(day0 + i * 1000).toISOString(), timeSource: 'gps', heldMs: 700, fix: fixAt(i) };
      outbox.write(lane, () => {
        journal.insert({ id: alarm.id, kind, raisedAt: alarm.raisedAt });
        outbox.append(laneItem(ref, lane, lane, alarm));
      });
      alarmsMade++;
    }
  }
  db.close();
}

function countAtDispatch(path: string): { points: number; alarms: number } {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const points = (db.prepare('SELECT count(*) AS n FROM positions').get() as { n: number }).n;
    const alarms = (db.prepare('SELECT count(*) AS n FROM alarms').get() as { n: number }).n;
    return { points, alarms };
  } finally {
    db.close();
  }
}

/** Bare mqtt.js on loopback: bus-2 with its password to a read-only tap (the receiver's identity is its own). busguard's bus goes over mutual TLS, so the peer has the easier path. */
async function rawMqtt(bed: Testbed, n: number, payloadBytes: number): Promise<number> {
  // A kind no receiver subscribes to: the peer is the broker and a subscriber alone.
  const topic = 'busguard/v1/city/bus-2/up/floor';
  const sub = await mqtt.connectAsync(bed.broker.url, { protocolVersion: 5, username: 'monitor/test', password: USERS['monitor/test'], clientId: 'monitor/test', clean: true });
  const pub = await mqtt.connectAsync(bed.broker.url, { protocolVersion: 5, username: 'city/bus-2', password: USERS['city/bus-2'], clientId: 'city/bus-2', clean: true });
  await sub.subscribeAsync(topic, { qos: 1 });
  const body = Buffer.alloc(payloadBytes, 'x');
  let got = 0;
  const all = new Promise<void>((resolve) =>
    sub.on('message', () => {
      if (++got === n) resolve();
    }),
  );
  const t0 = performance.now();
  // At most WINDOW ahead of the subscriber: the broker drops what passes its queue for a client
  // (max_queued_messages 10000), and a peer that loses messages measures nothing.
  const WINDOW = 2000;
  for (let i = 0; i < n; i++) {
    if (i - got >= WINDOW) await new Promise<void>((resolve) => {
      const wait = () => (i - got < WINDOW / 2 ? resolve() : setImmediate(wait));
      wait();
    });
    pub.publish(topic, body, { qos: 1 });
  }
  await all;
  const seconds = (performance.now() - t0) / 1000;
  await pub.endAsync();
  await sub.endAsync();
  return seconds;
}

export async function run(): Promise<Record<string, unknown>> {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const bed = await new Testbed({ name: 'bench-drain', profile: 'shipped', gps: false, agent: { position: { intervalS: 0 }, alarm: { resendS: 30 } } }).start({ processes: false });
  const { dir } = bed;
  say(`drain: writing a day offline (${FIXES} fixes in batches of ${BATCH}, ${ALARMS} alarms, ${INCIDENTS} incidents) with the agent's outbox`);
  prefill(dir);
  const items = FIXES + ALARMS + INCIDENTS;
  try {
    const dispatch = await bed.startDispatch();
    const agent = await bed.startAgent();
    const connected = await agent.waitForEvent('mqtt.connected', () => true, 30_000);
    const t0 = connected.monoMs as number;
    say('drain: agent connected, draining');
    for (;;) {
      const c = countAtDispatch(bed.dispatchDb);
      if (c.points >= FIXES && c.alarms >= ALARMS + INCIDENTS) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const done = monoMs();
    const received = dispatch.events('emergency.received').concat(dispatch.events('incident.received'));
    const alarmsDeliveredS = Math.max(...received.map((l) => (l.stepMonoMs as number) - t0)) / 1000;
    const seconds = (done - t0) / 1000;
    say(`drain: busguard ${seconds.toFixed(2)} s; last alarm at dispatch ${alarmsDeliveredS.toFixed(3)} s after connect`);
    await agent.kill('SIGTERM');

    say(`drain: raw mqtt.js, ${items} QoS 1 messages pipelined to a subscriber on the same broker`);
    const rawSeconds = await rawMqtt(bed, items, 200);
    const busguardPerS = items / seconds;
    const rawPerS = items / rawSeconds;
    const result = {
      bench: 'drain',
      items,
      seconds: round(seconds),
      busguard_per_s: Math.round(busguardPerS),
      raw_mqtt_per_s: Math.round(rawPerS),
      ratio: round(busguardPerS / rawPerS),
      alarms_delivered_s: round(alarmsDeliveredS, 3),
    };
    say(`target: ratio ≥ 0.5 (${result.ratio}) and every alarm within 1 s (${result.alarms_delivered_s} s): ${result.ratio >= 0.5 && result.alarms_delivered_s <= 1 ? 'met' : 'NOT met'}`);
    return result;
  } finally {
    await bed.stop();
  }
}
