// footprint: the agent process with sim hardware, a 1 Hz GPS receiver on a
// socat pair and an alarm a minute (acknowledged by dispatch, so each minute
// raises a new one), for BENCH_SECONDS after a warm-up. Sampled once a second
// from /proc: peak RSS, average CPU (utime+stime over wall time), and disk
// writes (write_bytes of /proc/PID/io, which counts what reached the block
// layer: SQLite's WAL, checkpoints) extrapolated per hour.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { acknowledge } from '../../dispatch/acknowledge.ts';
import { DispatchConfigSchema } from '../../dispatch/config.ts';
import { DispatchStore } from '../../dispatch/store.ts';
import { SimGpsReceiver } from '../../hal/gps/route-sim.ts';
import { simPress } from '../../hal/panel/sim-client.ts';
import { openPtyPair } from '../../hal/serial/pty-pair.ts';
import { parseConfig } from '../../common/config-file.ts';
import { Mosquitto, USERS } from '../lib/mosquitto.ts';
import { busguard } from '../lib/logged-process.ts';
import { percentile, round } from './stats.ts';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 300);
const WARMUP_S = Number(process.env.BENCH_WARMUP ?? 20);
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

interface Sample {
  atMs: number;
  rssKb: number;
  cpuTicks: number;
  writeBytes: number;
}

function sample(pid: number): Sample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
  // Fields after the parenthesised command: state is 3rd, utime 14th, stime 15th (1-based over the whole line).
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuTicks = Number(rest[11]) + Number(rest[12]);
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const writeBytes = Number(/^write_bytes:\s+(\d+)/m.exec(io)?.[1] ?? 0);
  return { atMs: performance.now(), rssKb, cpuTicks, writeBytes };
}

/** The agent's own node process: `busguard` may be a wrapper, so check the command line. */
function agentPid(pid: number): number {
  const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  if (cmd.includes('busguard') && cmd.includes('agent')) return pid;
  throw new Error(`process ${pid} is not the agent: ${cmd.replace(/\0/g, ' ')}`);
}

export async function run(): Promise<Record<string, unknown>> {
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const dir = mkdtempSync(join(tmpdir(), 'bench-footprint-'));
  const broker = await Mosquitto.start(dir);
  const pty = await openPtyPair(dir);
  const gps = new SimGpsReceiver({ path: pty.a, baudRate: 9600, rateHz: 1 });
  await gps.start();
  const socket = join(dir, 'panel.sock');
  const dispatchRaw = { mqtt: { url: broker.url, password: USERS.dispatch }, storage: { path: join(dir, 'dispatch.db') } };
  writeFileSync(join(dir, 'dispatch.json'), JSON.stringify(dispatchRaw));
  // The shipped defaults, as a bus would run: only paths and credentials set.
  writeFileSync(
    join(dir, 'agent.json'),
    JSON.stringify({
      vehicle: { fleet: 'city', id: 'bus-1', route: '603' },
      mqtt: { url: broker.url, password: USERS['city/bus-1'] },
      storage: { dir: join(dir, 'bus') },
      panel: { driver: 'sim', socket },
      gps: { port: pty.b, baudRate: 9600 },
    }),
  );
  const dispatch = busguard(['dispatch', '--config', join(dir, 'dispatch.json')]);
  const agent = busguard(['agent', '--config', join(dir, 'agent.json')]);
  const store = new DispatchStore(dispatchRaw.storage.path);
  const dispatchConfig = parseConfig('footprint dispatch', dispatchRaw, DispatchConfigSchema);
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
      await acknowledge(store, dispatchConfig, got.alarmId as string, 'bench', quiet);
      alarms++;
    };
    pressTimer = setInterval(() => void pressAndAck().catch((err) => say(`footprint: alarm failed: ${(err as Error).message}`)), 60_000);
    say(`footprint: agent pid ${pid}; warm-up ${WARMUP_S} s, then ${SECONDS} s with 1 Hz GPS and an alarm a minute`);
    await pressAndAck();
    await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
    const samples: Sample[] = [sample(pid)];
    for (let s = 1; s <= SECONDS; s++) {
      await new Promise((r) => setTimeout(r, 1000));
      samples.push(sample(pid));
      if (s % 60 === 0) say(`  ${s}/${SECONDS} s`);
    }
    const first = samples[0]!;
    const last = samples.at(-1)!;
    const wallS = (last.atMs - first.atMs) / 1000;
    const cpuPct = (((last.cpuTicks - first.cpuTicks) / CLK_TCK) / wallS) * 100;
    const writeMbPerH = ((last.writeBytes - first.writeBytes) / 1e6) * (3600 / wallS);
    const rss = samples.map((x) => x.rssKb / 1024);
    const result = {
      bench: 'footprint',
      rss_mb: round(Math.max(...rss), 1),
      cpu_pct: round(cpuPct, 2),
      disk_write_mb_per_h: round(writeMbPerH, 2),
    };
    say(`footprint: rss p50 ${round(percentile(rss, 50), 1)} MB, ${alarms} alarms, ${round(wallS)} s measured`);
    say(
      `target: rss ≤ 80 MB (${result.rss_mb}), cpu ≤ 2% (${result.cpu_pct}), disk ≤ 10 MB/h (${result.disk_write_mb_per_h}): ${result.rss_mb <= 80 && result.cpu_pct <= 2 && result.disk_write_mb_per_h <= 10 ? 'met' : 'NOT met'}`,
    );
    return result;
  } finally {
    if (pressTimer) clearInterval(pressTimer);
    store.close();
    await agent.kill('SIGTERM');
    await dispatch.kill('SIGTERM');
    await gps.stop();
    await pty.stop();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
