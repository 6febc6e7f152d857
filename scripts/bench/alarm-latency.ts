// alarm-latency: N alarms through the real agent and dispatch processes and a
// real Mosquitto on loopback. Times are counted from the moment the hold is
// confirmed (the agent's `alarm.confirmed` line), on CLOCK_MONOTONIC shared
// by all processes (common/log.ts):
//   stored   – committed and fsync'd on the bus (LED "stored")
//   dispatch – committed at dispatch
//   receipt  – dispatch's receipt back on the bus (LED "delivered")
// The bus reaches the broker over mutual TLS with its certificate (and signs
// each alarm record), dispatch on loopback, as in a fleet (scripts/lib/testbed.ts).
// The floor is measured in the same run, on the same broker and disk, bare:
// one fsync'd SQLite commit, one mqtt.js QoS 1 publish of a signed alarm's
// size over the same mutual-TLS listener to a subscriber on loopback, one
// fsync'd commit on the subscriber's side.

import { join } from 'node:path';
import Database from 'better-sqlite3';
import mqtt from 'mqtt';
import pino from 'pino';
import { acknowledge } from '../../dispatch/acknowledge.ts';
import { DispatchStore } from '../../dispatch/store.ts';
import { simPress } from '../../hal/panel/sim-client.ts';
import { monoMs } from '../../common/log.ts';
import { type Mosquitto, USERS, certLogin } from '../lib/mosquitto.ts';
import { Testbed } from '../lib/testbed.ts';
import { percentile, round } from './stats.ts';

const N = Number(process.env.BENCH_ALARMS ?? 200);
const FLOOR_N = Number(process.env.BENCH_FLOOR ?? 500);

export async function run(): Promise<Record<string, unknown>> {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const bed = await new Testbed({
    name: 'bench-latency',
    profile: 'shipped',
    gps: { rateHz: 1 },
    agent: { alarm: { holdMs: 100 } },
  }).start();
  const { agent, dispatch, socket, dir } = bed;
  try {
    await dispatch.waitForEvent('mqtt.connected');
    await agent.waitForEvent('mqtt.connected');

    const dispatchConfig = bed.dispatchConfig();
    const store = new DispatchStore(dispatchConfig.storage.path);
    const quiet = pino({ level: 'silent' });
    const stored: number[] = [];
    const atDispatch: number[] = [];
    const receipt: number[] = [];
    // Where the time between the bus's commit and dispatch's goes.
    const busToPublish: number[] = [];
    const wire: number[] = [];
    const dispatchWork: number[] = [];
    const slowest: { total: number; confirmToCommit: number; commitToPublish: number; wire: number; work: number }[] = [];
    say(`alarm-latency: ${N} alarms through agent (mutual TLS, signed records) + dispatch + Mosquitto ${bed.broker.url}`);
    for (let i = 0; i < N; i++) {
      const from = agent.lines.length;
      await simPress(socket, { holdMs: 150 });
      const confirmed = await agent.waitFor((l) => l.event === 'alarm.confirmed' && agent.lines.indexOf(l) >= from);
      const id = confirmed.alarmId as string;
      const s = await agent.waitForEvent('alarm.stored', (l) => l.alarmId === id);
      const d = await dispatch.waitForEvent('emergency.received', (l) => l.alarmId === id);
      const r = await agent.waitForEvent('alarm.delivered', (l) => l.alarmId === id);
      const t0 = confirmed.stepMonoMs as number;
      stored.push((s.stepMonoMs as number) - t0);
      atDispatch.push((d.stepMonoMs as number) - t0);
      receipt.push((r.stepMonoMs as number) - t0);
      if (typeof s.publishedMonoMs === 'number' && typeof d.arrivedMonoMs === 'number') {
        busToPublish.push(s.publishedMonoMs - (s.stepMonoMs as number));
        wire.push(d.arrivedMonoMs - s.publishedMonoMs);
        dispatchWork.push((d.stepMonoMs as number) - d.arrivedMonoMs);
        slowest.push({
          total: (d.stepMonoMs as number) - t0,
          confirmToCommit: (s.stepMonoMs as number) - t0,
          commitToPublish: s.publishedMonoMs - (s.stepMonoMs as number),
          wire: d.arrivedMonoMs - s.publishedMonoMs,
          work: (d.stepMonoMs as number) - d.arrivedMonoMs,
        });
      }
      acknowledge(store, dispatchConfig, id, 'bench');
      await agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === id);
      if ((i + 1) % 50 === 0) say(`  ${i + 1}/${N}`);
    }
    store.close();
    // Where the slowest alarms spent their time (stderr: a diagnosis, not a figure).
    for (const x of slowest.sort((a, b) => b.total - a.total).slice(0, 5)) {
      say(`  slow: ${round(x.total)} ms = confirm→commit ${round(x.confirmToCommit)} + commit→publish ${round(x.commitToPublish)} + wire ${round(x.wire)} + dispatch ${round(x.work)}`);
    }

    say(`floor: ${FLOOR_N} × (fsync'd commit → QoS 1 publish → subscriber's fsync'd commit), bare`);
    const floor = await measureFloor(dir, bed, FLOOR_N);
    const result = {
      bench: 'alarm-latency',
      alarms: N,
      stored_p99_ms: round(percentile(stored, 99)),
      dispatch_p50_ms: round(percentile(atDispatch, 50)),
      dispatch_p99_ms: round(percentile(atDispatch, 99)),
      receipt_p99_ms: round(percentile(receipt, 99)),
      floor_p99_ms: round(percentile(floor, 99)),
      // Breakdown of commit → dispatch's commit: the bus's commit to its publish, the broker and the wire, dispatch's own work.
      bus_publish_p99_ms: busToPublish.length ? round(percentile(busToPublish, 99)) : null,
      wire_p50_ms: wire.length ? round(percentile(wire, 50)) : null,
      wire_p99_ms: wire.length ? round(percentile(wire, 99)) : null,
      dispatch_work_p50_ms: dispatchWork.length ? round(percentile(dispatchWork, 50)) : null,
      dispatch_work_p99_ms: dispatchWork.length ? round(percentile(dispatchWork, 99)) : null,
    };
    say(`target: dispatch_p99_ms ≤ 20 and ≤ 3 × floor_p99_ms (${round(3 * result.floor_p99_ms)}): ${result.dispatch_p99_ms <= 20 && result.dispatch_p99_ms <= 3 * result.floor_p99_ms ? 'met' : 'NOT met'}`);
    return result;
  } finally {
    await bed.stop();
  }
}

async function measureFloor(dir: string, bed: Testbed, n: number): Promise<number[]> {
  const pki = bed.pki!;
  const tlsUrl = (bed.broker as Mosquitto).tlsUrl;
  const open = (name: string) => {
    const db = new Database(join(dir, name));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.exec('CREATE TABLE m (id INTEGER PRIMARY KEY, body BLOB NOT NULL)');
    return db;
  };
  const pubDb = open('floor-pub.db');
  const subDb = open('floor-sub.db');
  const pubInsert = pubDb.prepare('INSERT INTO m (id, body) VALUES (?, ?)');
  const subInsert = subDb.prepare('INSERT INTO m (id, body) VALUES (?, ?)');
  // A kind the dispatch receiver does not subscribe to, so it sees none of this.
  const topic = 'busguard/v1/city/bus-2/up/floor';
  // A read-only tap on loopback (the receiver's own identity is taken), and bus-2 with its certificate.
  const sub = await mqtt.connectAsync(bed.broker.url, { protocolVersion: 5, username: 'monitor/test', password: USERS['monitor/test'], clientId: 'monitor/test' });
  const pub = await mqtt.connectAsync(tlsUrl, { protocolVersion: 5, ...certLogin(pki, 'city/bus-2') });
  // The same socket setting as busguard's own sessions (common/mqtt-session.ts): the floor is the best bare path.
  for (const c of [sub, pub]) (c.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  await sub.subscribeAsync(topic, { qos: 1 });
  const body = Buffer.alloc(1400, 'x'); // about a signed alarm's size (its certificate travels with it)
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const done = new Promise<number>((resolve) =>
      sub.once('message', (_t, payload) => {
        subInsert.run(i, payload);
        resolve(monoMs());
      }),
    );
    const t0 = monoMs();
    pubInsert.run(i, body);
    pub.publish(topic, body, { qos: 1 });
    samples.push((await done) - t0);
  }
  await pub.endAsync();
  await sub.endAsync();
  pubDb.close();
  subDb.close();
  return samples;
}
