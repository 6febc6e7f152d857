// `npm run bench -- fleet [--buses N] [--receivers R] [--store sqlite] [--steady S]`:
// a whole fleet against one real Mosquitto and real `busguard dispatch`
// receivers, each bus its own MQTT session (scripts/bench/fleet-sim.ts).
//
// Phases, in one run:
//  1. the peer: a raw mqtt.js subscriber in the receivers' shared group takes
//     a reconnect storm (every bus back with 120 track batches, one in 20 with
//     an alarm) and counts: raw_sub_msgs_per_s, from the storm's start to its
//     last track message;
//  2. idle: the fleet connected and quiet, 20 probe buses press alarms one
//     after another: idle_alarm_p99_ms (publish → the bus holds dispatch's
//     receipt, i.e. committed and receipted);
//  3. steady: every bus sends its track batch every 30 s, the probes press on;
//  4. the storm again, now against the receivers: storm_alarms_max_s (each
//     storm alarm: its bus's CONNACK → its receipt), storm_drain_s (the
//     storm's start → the last track batch receipted), ingest_msgs_per_s,
//     and the probes pressing throughout the drain.
// alarm_p99_ms is over the probes' alarms of phase 3 (the fleet's everyday
// load); drain_alarm_p99_ms over those pressed during the storm's drain,
// reported beside it. storm_alarms_max_s is taken from dispatch's own log
// (the time of each emergency.received line; one machine, one clock).
// The receivers' CPU seconds per 1,000 messages come from /proc over phase 4.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { generateKeyFiles } from '../../common/keys.ts';
import { UPLINK } from '../../protocol/kinds.ts';
import { UPLINK_KINDS, dispatchUplinkFilter, sharedFilter } from '../../protocol/topics.ts';
import { type LoggedProcess, busguard } from '../lib/logged-process.ts';
import { Mosquitto } from '../lib/mosquitto.ts';
import { type SimBus, type SimOptions, connectAll, makeBuses } from './fleet-sim.ts';
import { percentile, round } from './stats.ts';

const PROBES = 20;
const STORM_BATCHES = 120;
const STORM_ALARM_EVERY = 20;
const KEY_ID = 'bench-dispatch';

const say = (s: string) => process.stderr.write(`fleet: ${s}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The fleet's buses in a child process of their own (its event loop is not the probes'). */
class FleetChild {
  private readonly child = spawn(process.execPath, ['--import', 'tsx', join(import.meta.dirname, 'fleet-sim.ts'), '--fleet-child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  private waiting: ((m: Record<string, unknown>) => void) | null = null;

  constructor() {
    this.child.on('message', (m: Record<string, unknown>) => {
      const w = this.waiting;
      this.waiting = null;
      w?.(m);
    });
  }

  ask(cmd: object): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.waiting = (m) => (m.error ? reject(new Error(`fleet child: ${String(m.error)}`)) : resolve(m));
      this.child.send(cmd);
    });
  }

  async exit(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    await this.ask({ cmd: 'exit' }).catch(() => this.child.kill('SIGKILL'));
    await gone;
  }
}

/** CPU seconds (user + system) a process has used, from /proc. */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Probe buses press one alarm every `everyMs` until `until()` says stop; resolves with each alarm's publish → receipt ms. */
async function pressAlarms(probes: SimBus[], everyMs: number, until: () => boolean, atMost = Infinity): Promise<number[]> {
  const from = probes.map((p) => p.alarmLatencies.length);
  let pressed = 0;
  while (!until() && pressed < atMost) {
    probes[pressed % probes.length]!.press();
    pressed++;
    await sleep(everyMs);
  }
  // Their receipts (each within seconds, or it is lost and shows as missing).
  const deadline = Date.now() + 30_000;
  const got = () => probes.reduce((n, p, i) => n + p.alarmLatencies.length - from[i]!, 0);
  while (got() < pressed && Date.now() < deadline) await sleep(50);
  if (got() < pressed) throw new Error(`${pressed - got()} of ${pressed} probe alarms got no receipt within 30 s`);
  return probes.flatMap((p, i) => p.alarmLatencies.slice(from[i]).map((a) => a.ms));
}

/** Wait until the fleet has nothing unreceipted; returns its last report. */
interface StormAlarm {
  id: string;
  connectedAt: number;
  receiptMs: number;
}

async function drained(fleet: FleetChild, timeoutS: number): Promise<{ alarms: StormAlarm[]; trackDone: number; lastTrackDoneAt: number }> {
  const deadline = Date.now() + timeoutS * 1000;
  for (;;) {
    const r = (await fleet.ask({ cmd: 'drained' })) as { pending: number; alarms: StormAlarm[]; trackDone: number; lastTrackDoneAt: number };
    if (r.pending === 0) return r;
    if (Date.now() > deadline) throw new Error(`the storm did not drain within ${timeoutS} s: ${r.pending} messages unreceipted`);
    say(`  draining: ${r.pending} unreceipted, ${r.trackDone} track batches receipted`);
    await sleep(2_000);
  }
}

export async function run(): Promise<Record<string, unknown>> {
  const { values } = parseArgs({
    args: process.argv.slice(3),
    options: { buses: { type: 'string', default: '2000' }, receivers: { type: 'string', default: '1' }, store: { type: 'string', default: 'sqlite' }, steady: { type: 'string', default: '60' } },
  });
  const buses = Number(values.buses);
  const receivers = Number(values.receivers);
  const steadyS = Number(values.steady);
  if (!Number.isInteger(buses) || buses < PROBES + 1) throw new Error(`--buses: a whole number above ${PROBES}`);
  if (values.store !== 'sqlite') throw new Error(`--store ${values.store}: only "sqlite" exists yet (the PostgreSQL store is issue 13's next step)`);
  if (receivers !== 1) throw new Error('--receivers: one receiver on SQLite; several need the shared PostgreSQL store, not built yet');

  const dir = mkdtempSync(join(tmpdir(), 'busguard-fleet-'));
  const keys = generateKeyFiles(dir, KEY_ID);
  const password = randomBytes(18).toString('base64');
  const passwords: Record<string, string> = { 'dispatch/raw': password };
  for (let i = 1; i <= buses; i++) passwords[`city/bus-${i}`] = password;
  say(`${buses} buses: writing the broker's identities (PBKDF2 per login) and starting Mosquitto`);
  const broker = await Mosquitto.start(dir, { passwords });
  const sim: SimOptions = { url: broker.url, password, keyId: KEY_ID, publicKeyFile: keys.publicKeyFile, resendS: 5, window: 64 };
  const fleetCount = buses - PROBES;
  let fleet = new FleetChild();
  const started: LoggedProcess[] = [];
  try {
    // 1. The peer: a raw subscriber takes the storm.
    say(`peer: a raw mqtt.js subscriber takes a reconnect storm of ${fleetCount} buses × ${STORM_BATCHES} track batches`);
    const raw = mqtt.connect(broker.url, { protocolVersion: 5, clientId: 'dispatch/raw', username: 'dispatch/raw', password, clean: true });
    // Distinct messages, by id (a message the broker delivers twice counts once, as a receiver stores it once).
    const rawIds = new Set<string>();
    let rawLast = 0;
    raw.on('message', (topic, payload) => {
      if (!topic.endsWith('/up/position')) return;
      const at = payload.indexOf('"id":"');
      rawIds.add(payload.toString('latin1', at + 6, at + 42));
      rawLast = Date.now();
    });
    await new Promise((r) => raw.once('connect', r));
    await raw.subscribeAsync(Object.fromEntries(UPLINK_KINDS.filter((k) => UPLINK[k].subscribe === 'shared').map((k) => [sharedFilter('dispatch', dispatchUplinkFilter(k)), { qos: 1 as const }])));
    await fleet.ask({ cmd: 'init', first: PROBES + 1, count: fleetCount, options: { ...sim, raw: true } });
    await fleet.ask({ cmd: 'connect', parallel: 200 });
    await fleet.ask({ cmd: 'offline' });
    const rawQueued = (await fleet.ask({ cmd: 'queue', batches: STORM_BATCHES, alarmEvery: STORM_ALARM_EVERY })) as { track: number };
    const rawStart = ((await fleet.ask({ cmd: 'online' })) as { startedAt: number }).startedAt;
    // The peer has no receipts: what the broker drops for it (its queue full) is never sent again. It is done
    // when all has come, or nothing more for 5 s; its rate counts what came.
    while (rawIds.size < rawQueued.track && Date.now() - Math.max(rawLast, rawStart) < 5_000) await sleep(200);
    if (rawIds.size < rawQueued.track) say(`peer: ${rawQueued.track - rawIds.size} of ${rawQueued.track} track messages never came (dropped by the broker: its queue for the subscriber was full)`);
    const rawRate = rawIds.size / ((rawLast - rawStart) / 1000);
    say(`peer: ${rawIds.size} track messages in ${round((rawLast - rawStart) / 1000)} s: ${Math.round(rawRate)}/s`);
    await raw.endAsync();
    await fleet.exit();

    // 2. The receivers, then the fleet and the probes on them.
    const dispatchConfig = join(dir, 'dispatch.json');
    writeFileSync(
      dispatchConfig,
      JSON.stringify({
        mqtt: { url: broker.url, username: 'dispatch', password: (await import('../lib/mosquitto.ts')).USERS.dispatch },
        storage: { path: join(dir, 'dispatch.db') },
        signing: { keyId: KEY_ID, privateKeyFile: keys.privateKeyFile },
        log: { level: 'info' },
      }),
    );
    // FLEET_RX_PROFILE=DIR: the receiver writes a CPU profile there when it stops (node --cpu-prof).
    const profile = process.env.FLEET_RX_PROFILE;
    const rx = busguard(['dispatch', '--config', dispatchConfig], {}, profile ? ['--cpu-prof', `--cpu-prof-dir=${profile}`] : []);
    started.push(rx);
    await rx.waitForEvent('mqtt.alarms-connected', () => true, 30_000);
    await rx.waitForEvent('mqtt.connected', () => true, 30_000);
    fleet = new FleetChild();
    say(`connecting ${fleetCount} buses and ${PROBES} probe buses to the receiver`);
    await fleet.ask({ cmd: 'init', first: PROBES + 1, count: fleetCount, options: sim });
    await fleet.ask({ cmd: 'connect', parallel: 200 });
    const probes = makeBuses(1, PROBES, sim);
    await connectAll(probes);
    const resend = setInterval(() => probes.forEach((p) => p.resendDue()), 1000);
    await sleep(3_000); // the retained statuses of the fleet reach the receiver first

    say('idle: 200 probe alarms, one every 50 ms');
    const idle = await pressAlarms(probes, 50, () => false, 200);
    say(`idle: p50 ${percentile(idle, 50)} ms, p99 ${percentile(idle, 99)} ms`);

    say(`steady: ${steadyS} s of track every 30 s from every bus, a probe alarm every 100 ms`);
    const steadyDone = fleet.ask({ cmd: 'steady', seconds: steadyS });
    let steadyOver = false;
    void steadyDone.then(() => (steadyOver = true));
    const steady = await pressAlarms(probes, 100, () => steadyOver);
    await steadyDone;
    say(`steady: p50 ${percentile(steady, 50)} ms, p99 ${percentile(steady, 99)} ms`);

    say(`storm: every bus offline, ${STORM_BATCHES} batches queued (one bus in ${STORM_ALARM_EVERY} with an alarm), all back at once`);
    await fleet.ask({ cmd: 'offline' });
    const queued = (await fleet.ask({ cmd: 'queue', batches: STORM_BATCHES, alarmEvery: STORM_ALARM_EVERY })) as { alarms: number; track: number };
    await sleep(2_000);
    const cpu0 = cpuSeconds(rx.pid);
    const online = fleet.ask({ cmd: 'online' }) as Promise<{ startedAt: number }>;
    let stormOver = false;
    const during = pressAlarms(probes, 100, () => stormOver);
    const stormStart = (await online).startedAt;
    const end = await drained(fleet, 1_800);
    stormOver = true;
    const drain = await during;
    const cpuS = cpuSeconds(rx.pid) - cpu0;
    clearInterval(resend);
    const drainS = (end.lastTrackDoneAt - stormStart) / 1000;
    const dropped = broker.stderr.split('\n').filter((l) => /dropped/i.test(l));
    if (dropped.length) say(`broker: ${dropped.length} "messages dropped" warnings (max_queued_messages): ${dropped[0]}`);
    say(`storm: ${end.trackDone} track batches and ${end.alarms.length} alarms in ${round(drainS)} s; probes p99 ${percentile(drain, 99)} ms`);
    if (end.alarms.length !== queued.alarms) throw new Error(`storm: ${queued.alarms} alarms queued, ${end.alarms.length} receipted`);
    await Promise.all(probes.map((p) => p.disconnect()));

    // Dispatch's own word for when each alarm was committed: its log line's time (one clock: one machine).
    const committed = new Map(rx.events('emergency.received').map((l) => [l.alarmId as string, typeof l.time === 'number' ? l.time : Date.parse(String(l.time))]));
    const drainIds = new Set(probes.flatMap((p) => p.alarmLatencies.filter((a) => a.sentAt >= stormStart)));
    const toCommit = [...drainIds].flatMap((a) => (committed.has(a.id) ? [committed.get(a.id)! - a.sentAt] : []));
    say(`storm: probes publish → committed p50 ${percentile(toCommit, 50)} ms, p99 ${percentile(toCommit, 99)} ms`);
    // Each storm alarm: its bus's CONNACK → committed at dispatch (the target), and → its receipt at the bus.
    const stormCommit = end.alarms.map((a) => (committed.get(a.id) ?? Number.NaN) - a.connectedAt);
    if (stormCommit.some((v) => !Number.isFinite(v))) throw new Error('storm: an alarm receipted with no emergency.received line at dispatch');
    const stormReceipt = end.alarms.map((a) => a.receiptMs);
    const ingest = end.trackDone / drainS;
    return {
      bench: 'fleet',
      buses,
      receivers,
      store: values.store,
      alarm_p99_ms: percentile(steady, 99),
      idle_alarm_p99_ms: percentile(idle, 99),
      ingest_msgs_per_s: Math.round(ingest),
      raw_sub_msgs_per_s: Math.round(rawRate),
      storm_alarms_max_s: round(Math.max(...stormCommit) / 1000),
      storm_alarms_receipt_max_s: round(Math.max(...stormReceipt) / 1000),
      storm_drain_s: round(drainS),
      steady_alarm_p99_ms: percentile(steady, 99),
      drain_alarm_p99_ms: percentile(drain, 99),
      drain_alarm_to_commit_p99_ms: percentile(toCommit, 99),
      alarms_timed: { idle: idle.length, steady: steady.length, drain: drain.length, storm: end.alarms.length },
      storm_track_messages: end.trackDone,
      receiver_cpu_s_per_1000_msgs: round(cpuS / ((end.trackDone + end.alarms.length) / 1000), 3),
      ingest_vs_raw: round(ingest / rawRate),
      targets: 'alarm_p99_ms <= 50 and <= 3 x idle_alarm_p99_ms; storm_alarms_max_s <= 2; ingest >= 0.5 x raw',
      met: {
        alarm_p99: percentile(steady, 99) <= 50 && percentile(steady, 99) <= 3 * percentile(idle, 99),
        storm_alarms: Math.max(...stormCommit) / 1000 <= 2,
        ingest: ingest >= 0.5 * rawRate,
      },
    };
  } finally {
    await fleet.exit().catch(() => {});
    for (const p of started) await p.kill('SIGTERM');
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
