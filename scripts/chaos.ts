// `npm run chaos`: fault injection on loopback, a bounded number of cycles.
// A bus (agent process, sim panel, GPS simulator on a socat pair at 5 Hz with
// a track point per fix) talks through a TCP proxy (the 4G link) to a real
// Mosquitto with the shipped ACL, and a dispatch process stores what arrives.
// Each cycle does one of: press (emergency or incident), SIGKILL the agent at
// a random moment (also right after a press: mid-commit, mid-send), restart
// Mosquitto, cut the link for a while, SIGKILL and restart dispatch, fill the
// agent's disk (a small tmpfs; needs root) and press while it is full.
// Dispatch acknowledges alarms as they arrive, so the bus can raise new ones.
// At the end it lets the bus drain and counts, per lane, what the bus created
// against what dispatch holds, and checks every SQLite file it killed a
// writer of with PRAGMA integrity_check.

import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { acknowledge } from '../dispatch/acknowledge.ts';
import { DispatchStore } from '../dispatch/store.ts';
import { simDouble, simPress } from '../hal/panel/sim-client.ts';
import { type LoggedProcess, busguard } from './lib/logged-process.ts';
import { CAMERA_FIXTURES, Testbed } from './lib/testbed.ts';

export interface ChaosOptions {
  cycles: number;
  seed: number;
  /** Progress lines; the summary is returned. */
  say?: (line: string) => void;
}

export interface ChaosSummary {
  chaos: 'summary';
  cycles: number;
  alarms_created: number;
  alarms_at_dispatch: number;
  lost: number;
  duplicates: number;
  evidence_lost: number;
  /** Snapshots the bus queued for upload (durably), and those dispatch holds verified (same SHA-256). */
  evidence_created: number;
  evidence_at_dispatch: number;
  integrity_failures: number;
  incidents_created: number;
  incidents_at_dispatch: number;
  track_messages_created: number;
  track_messages_at_dispatch: number;
  track_messages_evicted: number;
  track_unaccounted: number;
  /** Which track seqs are neither at dispatch nor recorded as evicted (first 50). */
  track_missing: string[];
  /** Recorded as evicted, yet at dispatch: published before the quota dropped the bus's copy. */
  track_evicted_but_delivered: number;
  disk_full_cycles: number;
  seed: number;
  actions: Record<string, number>;
}

const ACTIONS = ['press', 'incident', 'kill-agent', 'kill-after-press', 'restart-broker', 'cut-link', 'long-cut', 'kill-dispatch', 'disk-full'] as const;
type Action = (typeof ACTIONS)[number];

/** mulberry32: a seeded run can be replayed exactly. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function integrity(path: string): boolean {
  const db = new Database(path, { fileMustExist: true });
  try {
    return db.pragma('integrity_check', { simple: true }) === 'ok';
  } finally {
    db.close();
  }
}

export async function runChaos(opts: ChaosOptions): Promise<ChaosSummary> {
  const say = opts.say ?? (() => {});
  const random = rng(opts.seed);
  const bed = new Testbed({
    name: 'busguard-chaos',
    gps: { baudRate: 115200, rateHz: 5 },
    link: {},
    // A cabin camera: every alarm and incident makes a snapshot, evidence that must survive the faults too.
    camera: { dir: undefined, images: [readFileSync(join(CAMERA_FIXTURES, 'testsrc-160x120.jpg'))], bootMs: 50 },
    cameraConfig: { imageSize: '160x120' },
    agentMqtt: { connectTimeoutMs: 2000 },
    agent: {
      files: { resendS: 2 },
      alarm: { resendS: 2, acknowledgedShowS: 1 },
      position: { intervalS: 1, alarmIntervalS: 1, minIntervalS: 0, minDistanceM: 0, maxGapS: 1, batchMax: 1 },
      // Small enough that the track meets the quota during a long cut.
      outbox: { maxBytes: 16 * 1024, window: 16 },
    },
    dispatch: { log: { level: 'info' } },
  });
  const { dir } = bed;
  const busDir = join(dir, 'bus');
  mkdirSync(busDir);
  // The agent's disk: a 4 MiB tmpfs when we may mount one, so "disk full" is a real ENOSPC.
  let tmpfs = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', busDir], { stdio: 'ignore' });
    tmpfs = true;
  } catch {
    say('chaos: cannot mount a tmpfs (not root?): the disk-full fault is skipped');
  }
  const ballast = join(busDir, 'ballast');
  const actions: Record<string, number> = {};
  const agents: LoggedProcess[] = [];
  const dispatches: LoggedProcess[] = [];
  let integrityFailures = 0;
  let diskFullCycles = 0;

  await bed.start({ processes: false });
  const { broker, socket, gps } = bed;
  const proxy = bed.proxy!;
  const dispatchPath = bed.dispatchDb;
  const dispatchConfig = bed.dispatchConfig();
  const quiet = pino({ level: 'silent' });

  const startAgent = async () => {
    const a = busguard(['agent', '--config', bed.agentConfigPath]);
    agents.push(a);
    await a.waitForEvent('agent.started', () => true, 20_000);
    return a;
  };
  const startDispatch = async () => {
    const d = busguard(['dispatch', '--config', bed.dispatchConfigPath]);
    dispatches.push(d);
    await d.waitForEvent('dispatch.started', () => true, 20_000);
    return d;
  };
  const killAgent = async (a: LoggedProcess) => {
    await a.kill('SIGKILL');
    if (!integrity(join(busDir, 'outbox.db'))) {
      integrityFailures++;
      say('chaos: agent outbox.db FAILED integrity_check');
    }
  };

  let agent: LoggedProcess | null = null;
  let dispatch: LoggedProcess | null = null;
  const held: { store: DispatchStore | null } = { store: null };
  const closeStore = () => {
    held.store?.close();
    held.store = null;
  };
  /** Acknowledge whatever arrived, as a dispatcher would, so the bus can raise the next alarm. */
  const ackArrived = async () => {
    const store = (held.store ??= new DispatchStore(dispatchPath));
    for (const kind of ['emergency', 'incident'] as const) {
      for (const a of store.openQueue(kind)) acknowledge(store, dispatchConfig, a.id, 'chaos');
    }
  };
  const press = async (kind: 'emergency' | 'incident') => {
    try {
      if (kind === 'emergency') await simPress(socket, { holdMs: 600 }, { replyMarginMs: 3000 });
      else await simDouble(socket, {}, { replyMarginMs: 3000 });
    } catch (err) {
      // Expected when the agent is killed mid-press; otherwise worth reading.
      say(`chaos: press not completed (${(err as Error).message})`);
    }
  };

  try {
    dispatch = await startDispatch();
    agent = await startAgent();
    await sleep(1500);
    // Every fault once (in a seeded order) before random ones, so even a short run covers them all.
    const firstRound = [...ACTIONS].sort(() => random() - 0.5);
    for (let cycle = 0; cycle < opts.cycles; cycle++) {
      let action: Action = firstRound[cycle] ?? ACTIONS[Math.floor(random() * ACTIONS.length)]!;
      if (action === 'disk-full' && !tmpfs) action = 'press';
      actions[action] = (actions[action] ?? 0) + 1;
      say(`chaos: cycle ${cycle + 1}/${opts.cycles}: ${action}`);
      switch (action) {
        case 'press':
          await press('emergency');
          break;
        case 'incident':
          await press('incident');
          break;
        case 'kill-agent':
          await sleep(random() * 1000);
          await killAgent(agent);
          agent = await startAgent();
          break;
        case 'kill-after-press': {
          // SIGKILL somewhere between the hold being confirmed and the alarm reaching dispatch.
          const from = agent.mark();
          void press('emergency');
          await agent.waitForEvent('alarm.confirmed', () => true, 5000, from).catch(() => null);
          await sleep(random() * 5);
          await killAgent(agent);
          agent = await startAgent();
          break;
        }
        case 'restart-broker':
          await broker.stop();
          await sleep(200 + random() * 1500);
          await press('emergency');
          await broker.start();
          break;
        case 'cut-link':
          proxy.cut();
          await sleep(300);
          await press(random() < 0.5 ? 'emergency' : 'incident');
          await sleep(random() * 2000);
          proxy.restore();
          break;
        case 'long-cut':
          // Long enough for the track to meet the outbox quota: the oldest gives way, and says so.
          proxy.cut();
          await sleep(6000 + random() * 2000);
          await press('emergency');
          proxy.restore();
          break;
        case 'kill-dispatch':
          closeStore();
          await dispatch.kill('SIGKILL');
          if (!integrity(dispatchPath)) {
            integrityFailures++;
            say('chaos: dispatch.db FAILED integrity_check');
          }
          await press('emergency');
          await sleep(random() * 1000);
          dispatch = await startDispatch();
          break;
        case 'disk-full': {
          diskFullCycles++;
          // Fill what is left of the tmpfs, press while it is full, then free it.
          try {
            execFileSync('dd', ['if=/dev/zero', `of=${ballast}`, 'bs=64k'], { stdio: 'ignore' });
          } catch {
            // dd ends with ENOSPC: that is the point
          }
          await press('emergency');
          await sleep(1500);
          rmSync(ballast, { force: true });
          break;
        }
      }
      await sleep(300 + random() * 700);
      await ackArrived();
    }

    // Let the bus drain: everything it holds reaches dispatch and is receipted.
    // The receiver goes quiet first, or the track would keep growing under the count.
    say('chaos: faults over; GPS off; draining');
    await gps.stop();
    await sleep(2500); // the last points go into a batch (position.intervalS is 1 s)
    const deadline = Date.now() + 60_000;
    for (;;) {
      await ackArrived();
      const pending = pendingOnBus(join(busDir, 'outbox.db'));
      const volatileOpen = volatileUndelivered(agents);
      if (pending === 0 && volatileOpen === 0) break;
      if (Date.now() > deadline) {
        say(`chaos: still ${pending} message(s) on the bus and ${volatileOpen} unstored alarm(s) after 60 s`);
        break;
      }
      await sleep(250);
    }
    closeStore();
    await agent.kill('SIGTERM');
    agent = null;
    await dispatch.kill('SIGTERM');
    dispatch = null;
    if (!integrity(join(busDir, 'outbox.db'))) integrityFailures++;
    if (!integrity(dispatchPath)) integrityFailures++;

    if (process.env.BUSGUARD_CHAOS_KEEP) {
      // For a post-mortem: both databases as the run left them.
      mkdirSync(process.env.BUSGUARD_CHAOS_KEEP, { recursive: true });
      copyFileSync(join(busDir, 'outbox.db'), join(process.env.BUSGUARD_CHAOS_KEEP, 'outbox.db'));
      copyFileSync(dispatchPath, join(process.env.BUSGUARD_CHAOS_KEEP, 'dispatch.db'));
    }
    if (process.env.BUSGUARD_CHAOS_LOGS) {
      writeFileSync(process.env.BUSGUARD_CHAOS_LOGS, [...agents, ...dispatches].map((p, i) => `### process ${i}\n${p.lines.map((l) => JSON.stringify(l)).join('\n')}`).join('\n'));
    }
    return count(opts.cycles, opts.seed, agents, dispatches, join(busDir, 'outbox.db'), dispatchPath, integrityFailures, diskFullCycles, actions);
  } finally {
    closeStore();
    for (const p of [...agents, ...dispatches]) await p.killTree();
    if (tmpfs) {
      try {
        execFileSync('umount', [busDir], { stdio: 'ignore' });
      } catch {
        say(`chaos: could not unmount ${busDir}`);
      }
    }
    await bed.stop();
  }
}

/** Messages and evidence files still waiting on the bus, read beside the running agent. */
function pendingOnBus(path: string): number {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    const messages = (db.prepare('SELECT count(*) AS n FROM outbox').get() as { n: number }).n;
    const files = (db.prepare("SELECT count(*) AS n FROM file_uploads WHERE state = 'pending'").get() as { n: number }).n;
    return messages + files;
  } finally {
    db.close();
  }
}

/** Alarms the disk could not hold that no receipt has reached yet (in the running agent). */
function volatileUndelivered(agents: LoggedProcess[]): number {
  const last = agents.at(-1);
  if (!last) return 0;
  const failed = new Set(last.events('alarm.store-failed').map((l) => l.alarmId as string));
  for (const l of last.events('alarm.delivered')) failed.delete(l.alarmId as string);
  for (const l of last.events('alarm.acknowledged')) failed.delete(l.alarmId as string);
  return failed.size;
}

function count(
  cycles: number,
  seed: number,
  agents: LoggedProcess[],
  dispatches: LoggedProcess[],
  busDb: string,
  dispatchDb: string,
  integrityFailures: number,
  diskFullCycles: number,
  actions: Record<string, number>,
): ChaosSummary {
  // Created on the bus: every alarm the agent stored (LED "stored") or, on a full disk, sent from memory.
  const created = new Map<string, 'emergency' | 'incident'>();
  for (const a of agents) {
    for (const l of [...a.events('alarm.stored'), ...a.events('alarm.store-failed')]) created.set(l.alarmId as string, l.kind as 'emergency' | 'incident');
  }
  // Taken at dispatch: each fresh application is logged once; two for one id would be a duplicate.
  const received = new Map<string, number>();
  for (const d of dispatches) {
    for (const l of [...d.events('emergency.received'), ...d.events('incident.received')]) received.set(l.alarmId as string, (received.get(l.alarmId as string) ?? 0) + 1);
  }
  const db = new Database(dispatchDb, { readonly: true, fileMustExist: true });
  const bus = new Database(busDb, { readonly: true, fileMustExist: true });
  try {
    const held = new Map((db.prepare('SELECT id, kind FROM alarms').all() as { id: string; kind: string }[]).map((r) => [r.id, r.kind]));
    const lostIds = [...created.keys()].filter((id) => !held.has(id));
    const duplicates = [...received.values()].reduce((n, c) => n + Math.max(0, c - 1), 0);
    const trackCreated = (bus.prepare("SELECT coalesce(sum(next_seq - 1), 0) AS n FROM outbox_lanes WHERE lane IN ('track', 'followup')").get() as { n: number }).n;
    const trackAtDispatch = (db.prepare('SELECT count(DISTINCT message_id) AS n FROM positions').get() as { n: number }).n;
    // Every track seq is at dispatch or inside an eviction record of its lane;
    // anything else is unaccounted. A seq can be both: published before the
    // quota dropped the bus's copy, then evicted before its receipt came back.
    const missing: string[] = [];
    let evicted = 0;
    let evictedButDelivered = 0;
    for (const { lane, next_seq } of bus.prepare("SELECT lane, next_seq FROM outbox_lanes WHERE lane IN ('track', 'followup')").all() as { lane: string; next_seq: number }[]) {
      const evictedRanges = (db.prepare("SELECT ranges FROM diags WHERE event = 'evicted' AND lane = ? AND ranges IS NOT NULL").all(lane) as { ranges: string }[]).flatMap((r) => JSON.parse(r.ranges) as [number, number][]);
      const have = new Set((db.prepare('SELECT DISTINCT seq FROM positions WHERE lane = ?').all(lane) as { seq: number }[]).map((r) => r.seq));
      for (let seq = 1; seq < next_seq; seq++) {
        const wasEvicted = evictedRanges.some(([a, b]) => seq >= a && seq <= b);
        if (have.has(seq)) {
          if (wasEvicted) evictedButDelivered++;
        } else if (wasEvicted) evicted++;
        else missing.push(`${lane}#${seq}`);
      }
    }
    // Evidence: every file the bus queued (a durable row) must be at dispatch, complete, with the same SHA-256.
    const queued = bus.prepare('SELECT id, sha256 FROM file_uploads').all() as { id: string; sha256: string }[];
    const stored = new Map((db.prepare("SELECT file_id, sha256 FROM evidence_files WHERE state = 'complete'").all() as { file_id: string; sha256: string }[]).map((r) => [r.file_id, r.sha256]));
    const evidenceHeld = queued.filter((q) => stored.get(q.id) === q.sha256).length;
    const kinds = [...created.values()];
    const heldKinds = [...created.keys()].map((id) => held.get(id)).filter(Boolean);
    return {
      chaos: 'summary',
      cycles,
      alarms_created: kinds.filter((k) => k === 'emergency').length,
      alarms_at_dispatch: heldKinds.filter((k) => k === 'emergency').length,
      lost: lostIds.length,
      duplicates,
      evidence_lost: queued.length - evidenceHeld,
      evidence_created: queued.length,
      evidence_at_dispatch: evidenceHeld,
      integrity_failures: integrityFailures,
      incidents_created: kinds.filter((k) => k === 'incident').length,
      incidents_at_dispatch: heldKinds.filter((k) => k === 'incident').length,
      track_messages_created: trackCreated,
      track_messages_at_dispatch: trackAtDispatch,
      track_messages_evicted: evicted,
      track_evicted_but_delivered: evictedButDelivered,
      track_unaccounted: missing.length,
      track_missing: missing.slice(0, 50),
      disk_full_cycles: diskFullCycles,
      seed,
      actions,
    };
  } finally {
    db.close();
    bus.close();
  }
}

// `npm run chaos [-- --cycles N --seed S]`
if (import.meta.url === `file://${process.argv[1]}` || process.env.BUSGUARD_CHAOS_MAIN === '1') {
  const arg = (name: string, dflt: number) => {
    const i = process.argv.indexOf(name);
    return i >= 0 ? Number(process.argv[i + 1]) : dflt;
  };
  const summary = await runChaos({ cycles: arg('--cycles', 40), seed: arg('--seed', Date.now() % 100_000), say: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  process.exit(summary.lost || summary.duplicates || summary.evidence_lost || summary.integrity_failures || summary.track_unaccounted || summary.track_missing.length ? 1 : 0);
}
