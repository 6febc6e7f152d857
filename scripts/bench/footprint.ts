// footprint: the agent process with sim hardware, a 1 Hz GPS receiver on a
// socat pair and an alarm a minute (acknowledged by dispatch, so each minute
// raises a new one), for BENCH_SECONDS after a warm-up. Sampled once a second
// from /proc: peak RSS, average CPU (utime+stime over wall time), and disk
// writes (write_bytes of /proc/PID/io, which counts what reached the block
// layer: SQLite's WAL, checkpoints) extrapolated per hour.
//
// Every BENCH_SERIES_S (10 s) it also prints a row of the agent's memory to
// stderr: RSS (and the peak since the last row) split into anonymous memory
// (V8's heap, malloc) and file-backed pages (mostly the node binary's code
// and read-only data: ~42 of the agent's ~62 MB, shared with every other node
// process but counted in each one's RSS). With BENCH_HEAP=1 the row adds the
// JS heap as the agent sees it: process.memoryUsage() and the used size of
// V8's spaces, from a probe preloaded into the agent (NODE_OPTIONS=--require,
// so only for this run; it adds a module and a timer to the agent: leave it
// off when the RSS figure itself matters). BENCH_HEAP_SNAPSHOTS=DIR writes a
// V8 heap snapshot there right after the warm-up and another at the end, to
// compare (DevTools' Memory tab, Comparison view). Writing a snapshot leaves
// ~70 MB of malloc'd memory behind in the agent (RSS 77 -> 152 MB): the RSS
// of such a run means nothing, its heap figures still do.
//
// What grows, from the snapshots of a 30 min run: +1.1 MB of JS heap, of
// which 0.6 MB is code V8 compiles lazily as code paths are first taken
// (bytecode, feedback, inline caches; the growth slows), 0.34 MB is 8 KiB
// Buffer-pool slabs pinned by mqtt-packet's cache of encoded packet lengths
// (one per new message size: see bin/busguard.js), 0.1 MB is the evidence
// track of the last 15 min (at most 900 points). Nothing else.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { acknowledge } from '../../dispatch/acknowledge.ts';
import { DispatchStore } from '../../dispatch/store.ts';
import { simPress } from '../../hal/panel/sim-client.ts';
import { Testbed } from '../lib/testbed.ts';
import { until } from '../lib/until.ts';
import { percentile, round } from './stats.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 300);
const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 20);
const SERIES_S = Number(process.env.BENCH_SERIES_S ?? 10);
const HEAP = process.env.BENCH_HEAP === '1';
const SNAPSHOTS = process.env.BENCH_HEAP_SNAPSHOTS ?? '';
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

interface Sample {
  atMs: number;
  rssKb: number;
  anonKb: number;
  fileKb: number;
  cpuTicks: number;
  writeBytes: number;
}

function sample(pid: number): Sample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  const rssKb = kb('VmRSS');
  // Fields after the parenthesised command: state is 3rd, utime 14th, stime 15th (1-based over the whole line).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuTicks = Number(rest[11]) + Number(rest[12]);
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const writeBytes = Number(/^write_bytes:\s+(\d+)/m.exec(io)?.[1] ?? 0);
  return { atMs: performance.now(), rssKb, anonKb: kb('RssAnon'), fileKb: kb('RssFile') + kb('RssShmem'), cpuTicks, writeBytes };
}

/** The agent's own node process: `busguard` may be a wrapper, so check the command line. */
function agentPid(pid: number): number {
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (cmd.includes('busguard') && cmd.includes('agent')) return pid;
  throw new Error(`process ${pid} is not the agent: ${cmd.replace(/\0/g, ' ')}`);
}

export async function run(): Promise<Record<string, unknown>> {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  // The shipped defaults, as a bus would run: only paths, credentials and devices set.
  const bed = await new Testbed({ name: 'bench-footprint', profile: 'shipped', gps: { rateHz: 1 } }).start({ processes: false });
  const { dir, socket } = bed;
  const dispatch = await bed.startDispatch();
  const heapLog = join(dir, 'heap.jsonl');
  const agentEnv: Record<string, string> = {};
  if (HEAP || SNAPSHOTS) {
    writeFileSync(join(dir, 'heap-probe.cjs'), HEAP_PROBE);
    const opts = [`--require=${join(dir, 'heap-probe.cjs')}`];
    if (SNAPSHOTS) {
      mkdirSync(SNAPSHOTS, { recursive: true });
      opts.push('--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${SNAPSHOTS}`);
    }
    Object.assign(agentEnv, { NODE_OPTIONS: [process.env.NODE_OPTIONS ?? '', ...opts].join(' ').trim(), BENCH_HEAP_LOG: heapLog, BENCH_HEAP_MS: String(SERIES_S * 1000) });
  }
  const agent = await bed.startAgent(agentEnv);
  const store = new DispatchStore(bed.dispatchDb);
  const dispatchConfig = bed.dispatchConfig();
  const quiet = pino({ level: 'silent' });
  let pressTimer: NodeJS.Timeout | null = null;
  try {
    await dispatch.waitForEvent('mqtt.connected');
    await agent.waitForEvent('mqtt.connected');
    const pid = agentPid(agent.pid);
    let alarms = 0;
    const pressAndAck = async () => {
      const from = dispatch.mark();
      await simPress(socket, { holdMs: 700 });
      const got = await dispatch.waitForEvent('emergency.received', () => true, 10_000, from);
      // Acknowledged a few seconds later, as a dispatcher would; positions go at the alarm rate meanwhile.
      await new Promise((r) => setTimeout(r, 5_000));
      acknowledge(store, dispatchConfig, got.alarmId as string, 'bench');
      alarms++;
    };
    pressTimer = setInterval(() => void pressAndAck().catch((err) => say(`footprint: alarm failed: ${(err as Error).message}`)), 60_000);
    say(`footprint: agent pid ${pid}; warm-up ${WARMUP_S} s, then ${SECONDS} s with 1 Hz GPS and an alarm a minute`);
    await pressAndAck();
    await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
    if (SNAPSHOTS) await heapSnapshot(pid, SNAPSHOTS, 'early');
    const samples: Sample[] = [sample(pid)];
    const row = (s: number) => {
      const x = samples.at(-1)!;
      const mb = (kb: number) => (kb / 1024).toFixed(1).padStart(6);
      const peakKb = Math.max(...samples.slice(-SERIES_S).map((y) => y.rssKb));
      let line = `${String(s).padStart(5)} s  rss ${mb(x.rssKb)} (max ${mb(peakKb)})  anon ${mb(x.anonKb)}  file ${mb(x.fileKb)}`;
      const heap = HEAP && existsSync(heapLog) ? readFileSync(heapLog, 'utf8').trim().split('\n').at(-1) : undefined;
      if (heap) {
        const h = JSON.parse(heap) as Record<string, number>;
        const m = (b: number | undefined) => ((b ?? 0) / 1048576).toFixed(1).padStart(5);
        line += `  heapUsed ${m(h.heapUsed)}  heapTotal ${m(h.heapTotal)}  external ${m(h.external)}  arrayBuffers ${m(h.arrayBuffers)}`;
        line += `  old ${m(h.old_space)}  new ${m(h.new_space)}  code ${m(h.code_space)}  lo ${m(h.large_object_space)}  (${Math.round((Date.now() - (h.at ?? 0)) / 1000)} s old)`;
      }
      say(line);
    };
    say(`footprint: memory every ${SERIES_S} s (MB)${HEAP ? '' : '; BENCH_HEAP=1 adds the JS heap'}`);
    row(0);
    for (let s = 1; s <= SECONDS; s++) {
      await new Promise((r) => setTimeout(r, 1000));
      samples.push(sample(pid));
      if (s % SERIES_S === 0) row(s);
    }
    if (SNAPSHOTS) await heapSnapshot(pid, SNAPSHOTS, 'late');
    const first = samples[0]!;
    const last = samples.at(-1)!;
    const wallS = (last.atMs - first.atMs) / 1000;
    const cpuPct = (((last.cpuTicks - first.cpuTicks) / CLK_TCK) / wallS) * 100;
    const writeMbPerH = ((last.writeBytes - first.writeBytes) / 1e6) * (3600 / wallS);
    const rss = samples.map((x) => x.rssKb / 1024);
    // Growth: least-squares slope of the 1 Hz RSS samples, per hour.
    const ts = samples.map((x) => (x.atMs - first.atMs) / 3_600_000);
    const tMean = ts.reduce((a, b) => a + b, 0) / ts.length;
    const rMean = rss.reduce((a, b) => a + b, 0) / rss.length;
    const slope = ts.reduce((a, t, i) => a + (t - tMean) * (rss[i]! - rMean), 0) / ts.reduce((a, t) => a + (t - tMean) ** 2, 0);
    const result = {
      bench: 'footprint',
      rss_mb: round(Math.max(...rss), 1),
      rss_p50_mb: round(percentile(rss, 50), 1),
      cpu_pct: round(cpuPct, 2),
      disk_write_mb_per_h: round(writeMbPerH, 2),
    };
    say(
      `footprint: rss p50 ${result.rss_p50_mb} MB, min ${round(Math.min(...rss), 1)}, max ${result.rss_mb}, trend ${round(slope, 2)} MB/h; ${alarms} alarms, ${round(wallS)} s measured`,
    );
    say(
      `target: rss ≤ 80 MB (${result.rss_mb}), cpu ≤ 2% (${result.cpu_pct}), disk ≤ 10 MB/h (${result.disk_write_mb_per_h}): ${result.rss_mb <= 80 && result.cpu_pct <= 2 && result.disk_write_mb_per_h <= 10 ? 'met' : 'NOT met'}`,
    );
    return result;
  } finally {
    if (pressTimer) clearInterval(pressTimer);
    store.close();
    await agent.kill('SIGTERM');
    await bed.stop();
  }
}

/**
 * Preloaded into the agent with BENCH_HEAP=1: every BENCH_HEAP_MS it appends
 * process.memoryUsage() and the used size of each V8 heap space to
 * BENCH_HEAP_LOG. Only in the agent process (bin/busguard.js agent), and its
 * timer never keeps the agent alive.
 */
const HEAP_PROBE = `'use strict';
if (process.argv.includes('agent') && process.env.BENCH_HEAP_LOG) {
  const { openSync, writeSync } = require('node:fs');
  const v8 = require('node:v8');
  const fd = openSync(process.env.BENCH_HEAP_LOG, 'a');
  const probe = () => {
    const m = process.memoryUsage();
    for (const s of v8.getHeapSpaceStatistics()) m[s.space_name] = s.space_used_size;
    m.at = Date.now();
    writeSync(fd, JSON.stringify(m) + '\\n');
  };
  setInterval(probe, Number(process.env.BENCH_HEAP_MS) || 10000).unref();
  probe();
}
`;

/** SIGUSR2 makes the agent (started with --heapsnapshot-signal) write a snapshot; wait until it is complete. */
async function heapSnapshot(pid: number, dir: string, label: string): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  // V8 writes the snapshot from the main thread in one go: complete once it ends with the strings table's close.
  const complete = () => {
    const fresh = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    return fresh !== undefined && readFileSync(join(dir, fresh), 'utf8').trimEnd().endsWith(']}') ? join(dir, fresh) : null;
  };
  const file = await until(complete, 120_000, `a complete heap snapshot in ${dir}`, 500);
  process.stderr.write(`footprint: heap snapshot ${label}: ${file}\n`);
}
