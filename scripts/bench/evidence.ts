// evidence: press → cabin snapshot at dispatch, and press → alarm clip at
// dispatch, on real parts: Mosquitto with the shipped config, the agent and
// dispatch as processes, the sim panel pressed over its socket, NMEA from the
// route simulator on a socat pair, the simulated VC0706 (in this process) on
// its own socat pair sending at the pace of a real UART, and one video camera
// recorded by gst-launch-1.0 from a live videotestsrc with the shipped
// segment, encoder and clip defaults (2 s segments, x264enc at its 2048
// kbit/s, pre-roll 20 s, post-roll 10 s). The test picture is scrolling
// SMPTE bars at 640x480, 15 fps: detail and motion on every frame, so the
// encoder spends its bitrate as on a real cabin scene (the still `ball`
// pattern compresses to ~90 kbit/s and would leave the link out of the
// clip's time). BENCH_VIDEO_SOURCE replaces the source.
//
// The bus reaches the broker through scripts/lib/tcp-proxy.ts with a 4G-like
// uplink of 2 Mbit/s (BENCH_LINK_KBPS overrides it, in kbit/s; the downlink
// is not limited). Dispatch talks to the broker directly, as in a control
// room.
//
// Times count from the confirmed hold (the agent's `alarm.confirmed` line,
// its stepMonoMs) to dispatch's `file.stored` line of that kind, on
// CLOCK_MONOTONIC shared by all processes (common/log.ts). Floors come from
// the same run:
//   snapshot_floor_s = JPEG bytes as the camera sent them (no EXIF) × 10 / 115200
//   clip_floor_s     = postRollS + clip bytes (dispatch's size) / link rate
// where the link rate is measured after the alarms: raw mqtt.js QoS 1
// publishes of about a clip's bytes, through the same proxy and broker to a
// subscriber, bytes over seconds. BENCH_ALARMS alarms (default 3), each
// acknowledged before the next; the figures are medians (nearest rank).
// Target: each ≤ 1.5 × its floor.

import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import mqtt from 'mqtt';
import pino from 'pino';
import { acknowledge } from '../../dispatch/acknowledge.ts';
import { DispatchStore } from '../../dispatch/store.ts';
import type { SimCommand } from '../../hal/camera/sim.ts';
import { simPress } from '../../hal/panel/sim-client.ts';
import { monoMs } from '../../common/log.ts';
import type { LogLine } from '../lib/logged-process.ts';
import { type Mosquitto, USERS, certLogin } from '../lib/mosquitto.ts';
import { Testbed } from '../lib/testbed.ts';
import { percentile, round } from './stats.ts';

const N = Number(process.env.BENCH_ALARMS ?? 3);
const LINK_KBPS = Number(process.env.BENCH_LINK_KBPS ?? 2000);
const CAMERA_JPEGS = fileURLToPath(new URL('../../test/fixtures/camera/', import.meta.url));
/** The serial camera's transfer rate, as configured below. */
const TRANSFER_BAUD = 115200;
/** The shipped clip defaults (firmware/evidence.ts ClipsConfigSchema): the agent config leaves them out. */
const PRE_ROLL_S = 20;
const POST_ROLL_S = 10;
/** The file upload's default segment size: the link probe publishes the same. */
const PROBE_PAYLOAD = 64 * 1024;
const HOLD_MS = 700; // above the default holdMs of 500
const VIDEO_SOURCE = process.env.BENCH_VIDEO_SOURCE ?? 'videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! video/x-raw,width=640,height=480,framerate=15/1';

interface AlarmFigures {
  id: string;
  snapshotS: number;
  jpegBytes: number;
  clipS: number;
  clipBytes: number;
  profile: string[];
}

export async function run(): Promise<Record<string, unknown>> {
  if (!(N >= 1) || !(LINK_KBPS > 0)) throw new Error(`evidence bench: BENCH_ALARMS (${N}) must be ≥ 1 and BENCH_LINK_KBPS (${LINK_KBPS}) > 0`);
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const bed = await new Testbed({
    name: 'bench-evidence',
    profile: 'shipped',
    // debug: the upload's segment lines and the ring's segment lines, for the profile.
    logLevel: 'debug',
    gps: { rateHz: 1 },
    link: { rateBytesPerS: (LINK_KBPS * 1000) / 8 },
    // No `peer`: the sim would run stty for every command to check the line
    // speed, which is the sim's cost, not the camera's. Paced: it sends at the
    // rate of a real UART at whatever rate SET_PORT put it on.
    camera: { dir: CAMERA_JPEGS, pace: true, peer: undefined },
    cameraConfig: { imageSize: '640x480', baudRate: 38400, transferBaudRate: TRANSFER_BAUD },
    // Segments, keyframes, bitrate and the clip's pre/post roll: the shipped defaults.
    agent: { video: [{ name: 'aisle', source: VIDEO_SOURCE }] },
  }).start();
  const { agent, dispatch, socket, proxy } = bed;
  const camera = bed.camera!;
  const store = new DispatchStore(bed.dispatchDb);
  const dispatchConfig = bed.dispatchConfig();
  const quiet = pino({ level: 'silent' });
  try {
    say(`evidence: ${N} alarms; bus → broker through a ${LINK_KBPS} kbit/s uplink (proxy :${proxy!.port} → Mosquitto ${bed.broker.url}); VC0706 sim paced, 640x480 at ${TRANSFER_BAUD} baud; video "${VIDEO_SOURCE}" pre ${PRE_ROLL_S} s / post ${POST_ROLL_S} s`);
    await dispatch.waitForEvent('mqtt.connected');
    await agent.waitForEvent('mqtt.connected', () => true, 20_000);
    await agent.waitForEvent('camera.ready', () => true, 20_000);
    await agent.waitForEvent('gps.first-fix', () => true, 20_000);

    const figures: AlarmFigures[] = [];
    for (let i = 0; i < N; i++) {
      await waitForPreRoll(agent.lines, (l) => agent.waitForEvent('video.segment', l, 30_000, agent.mark()), say);
      const from = agent.mark();
      const dFrom = dispatch.mark();
      await simPress(socket, { holdMs: HOLD_MS });
      const confirmed = await agent.waitForEvent('alarm.confirmed', () => true, 10_000, from);
      const id = confirmed.alarmId as string;
      const snapStored = await dispatch.waitForEvent('file.stored', (l) => l.alarmId === id && l.kind === 'snapshot', 60_000, dFrom);
      const taken = await agent.waitForEvent('snapshot.taken', (l) => l.alarmId === id, 1_000, from);
      const jpegBytes = camera.lastFrame?.length ?? 0;
      if (!jpegBytes) throw new Error(`alarm ${id}: the camera sim served no frame, yet the agent logged ${JSON.stringify(taken)}`);
      const clipStored = await dispatch.waitForEvent('file.stored', (l) => l.alarmId === id && l.kind === 'clip', 180_000, dFrom);
      const t0 = confirmed.stepMonoMs as number;
      const f: AlarmFigures = {
        id,
        snapshotS: ((snapStored.monoMs as number) - t0) / 1000,
        jpegBytes,
        clipS: ((clipStored.monoMs as number) - t0) / 1000,
        clipBytes: clipStored.size as number,
        profile: [
          ...profile(agent.lines.slice(from), dispatch.lines.slice(dFrom), id, t0, jpegBytes),
          // performance.now() and monoMs() are both CLOCK_MONOTONIC: one offset converts.
          cameraProfile(camera.commands, t0 - (monoMs() - performance.now()), camera.baudRate),
        ],
      };
      figures.push(f);
      say(`  alarm ${i + 1}/${N} ${id.slice(0, 8)}: snapshot ${round(f.snapshotS)} s (${jpegBytes} B JPEG), clip ${round(f.clipS)} s (${clipStored.size} B)`);
      for (const line of f.profile) say(`    ${line}`);
      // The clip's delivery confirmed on the bus too, so the next alarm starts on an idle upload.
      await agent.waitForEvent('evidence.delivered', (l) => l.alarmId === id && l.kind === 'clip', 30_000, from);
      acknowledge(store, dispatchConfig, id, 'bench');
      await agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === id, 10_000, from);
    }

    const probeBytes = Math.max(1 << 20, Math.ceil(Math.max(...figures.map((f) => f.clipBytes)) / PROBE_PAYLOAD) * PROBE_PAYLOAD);
    say(`link: ${probeBytes} bytes as ${probeBytes / PROBE_PAYLOAD} mqtt.js QoS 1 publishes of ${PROBE_PAYLOAD} B through the proxy to a subscriber`);
    const linkBytesPerS = await measureLink(bed, probeBytes);
    say(`link: ${round((linkBytesPerS * 8) / 1000)} kbit/s measured (${LINK_KBPS} kbit/s set)`);

    const snapFloors = figures.map((f) => (f.jpegBytes * 10) / TRANSFER_BAUD);
    const clipFloors = figures.map((f) => POST_ROLL_S + f.clipBytes / linkBytesPerS);
    for (const [k, f] of figures.entries()) {
      say(
        `  alarm ${k + 1}: snapshot ${round(f.snapshotS)} s / floor ${round(snapFloors[k]!)} s = ${round(f.snapshotS / snapFloors[k]!)}×; ` +
          `clip ${round(f.clipS)} s / floor ${round(clipFloors[k]!)} s = ${round(f.clipS / clipFloors[k]!)}×`,
      );
    }
    const result = {
      bench: 'evidence',
      snapshot_s: round(percentile(figures.map((f) => f.snapshotS), 50)),
      snapshot_floor_s: round(percentile(snapFloors, 50)),
      clip_s: round(percentile(figures.map((f) => f.clipS), 50)),
      clip_floor_s: round(percentile(clipFloors, 50)),
    };
    const snapOk = result.snapshot_s <= 1.5 * result.snapshot_floor_s;
    const clipOk = result.clip_s <= 1.5 * result.clip_floor_s;
    say(`medians (nearest rank) of ${N} alarms`);
    say(
      `target: snapshot_s ≤ 1.5 × snapshot_floor_s (${round(1.5 * result.snapshot_floor_s)}): ${snapOk ? 'met' : 'NOT met'}; ` +
        `clip_s ≤ 1.5 × clip_floor_s (${round(1.5 * result.clip_floor_s)}): ${clipOk ? 'met' : 'NOT met'}`,
    );
    return result;
  } finally {
    store.close();
    await bed.stop();
  }
}

/**
 * Wait until the ring holds the whole pre-roll: closed segments (of the
 * current run) reaching back at least preRoll + 2 s from the newest one's
 * end. A press comes after that end, so its pre-roll is all on disk.
 */
async function waitForPreRoll(lines: LogLine[], nextSegment: (pred: (l: LogLine) => boolean) => Promise<LogLine>, say: (s: string) => void): Promise<void> {
  let told = false;
  for (;;) {
    const runStart = lastIndex(lines, (l) => l.event === 'video.run.start');
    const segs = lines.slice(Math.max(0, runStart)).filter((l) => l.event === 'video.segment' && l.state !== 'open' && typeof l.endMs === 'number');
    if (segs.length) {
      const covered = (segs.at(-1)!.endMs as number) - (segs[0]!.startMs as number);
      if (covered >= (PRE_ROLL_S + 2) * 1000) return;
      if (!told) say(`  waiting for ${PRE_ROLL_S} s of pre-roll in the ring (${round(covered / 1000, 1)} s so far)`);
      told = true;
    }
    await nextSegment(() => true);
  }
}

/** Index of the last line matching, or -1 (the project's lib predates Array.prototype.findLast). */
function lastIndex(lines: LogLine[], pred: (l: LogLine) => boolean): number {
  for (let i = lines.length - 1; i >= 0; i--) if (pred(lines[i]!)) return i;
  return -1;
}

/** Where the time went, from the agent's and dispatch's lines of one alarm, in ms after the confirmation. */
function profile(agentLines: LogLine[], dispatchLines: LogLine[], id: string, t0: number, jpegBytes: number): string[] {
  const at = (l: LogLine | undefined) => (l ? `${Math.round((l.monoMs as number) - t0)}` : '?');
  const find = (lines: LogLine[], event: string, pred: (l: LogLine) => boolean = () => true) => lines.find((l) => l.event === event && pred(l));
  const findLast = (lines: LogLine[], event: string, pred: (l: LogLine) => boolean = () => true) => lines[lastIndex(lines, (l) => l.event === event && pred(l))];
  const out: string[] = [];
  const stored = find(agentLines, 'alarm.stored', (l) => l.alarmId === id);
  const cam = find(agentLines, 'camera.snapshot');
  const taken = find(agentLines, 'snapshot.taken', (l) => l.alarmId === id);
  const files = (kind: string) => {
    const queued = find(agentLines, 'file.queued', (l) => l.alarmId === id && l.kind === kind);
    const fileId = queued?.fileId;
    const mine = (l: LogLine) => l.fileId === fileId;
    return {
      queued,
      init: find(agentLines, 'file.init-sent', mine),
      receipt: find(agentLines, 'file.receipt', mine),
      firstSeg: find(agentLines, 'file.segment-sent', mine),
      lastSeg: findLast(agentLines, 'file.segment-sent', mine),
      fin: find(agentLines, 'file.fin-sent', mine),
      dInit: find(dispatchLines, 'file.init', mine),
      dStored: find(dispatchLines, 'file.stored', mine),
    };
  };
  const s = files('snapshot');
  const camStart = taken ? (taken.monoMs as number) - (taken.ms as number) : null;
  out.push(
    `snapshot: stored@${stored ? Math.round((stored.stepMonoMs as number) - t0) : '?'} camera-start@${camStart === null ? '?' : Math.round(camStart - t0)} ` +
      `camera-done@${at(cam)} (${cam ? `${Math.round(cam.ms as number)} ms for ${cam.bytes} B in ${cam.chunks} chunks, ${cam.retries} retries, wire floor ${Math.round(cam.floorMs as number)} ms at ${cam.baudRate}` : '?'}) ` +
      `taken@${at(taken)} (${taken?.bytes ?? '?'} B with EXIF, +${taken ? (taken.bytes as number) - jpegBytes : '?'}) queued@${at(s.queued)} init@${at(s.init)} ` +
      `dispatch-init@${at(s.dInit)} receipt@${at(s.receipt)} seg@${at(s.firstSeg)} fin@${at(s.fin)} stored@${at(s.dStored)} ms`,
  );
  const pinned = find(agentLines, 'clip.pinned', (l) => l.alarmId === id);
  const cut = find(agentLines, 'clip.cut', (l) => l.alarmId === id);
  const cutIdx = cut ? agentLines.indexOf(cut) : agentLines.length;
  const lastSeg = findLast(agentLines.slice(0, cutIdx), 'video.segment', (l) => l.state !== 'open');
  const c = files('clip');
  const uploadMs = c.firstSeg && c.dStored ? (c.dStored.monoMs as number) - (c.firstSeg.monoMs as number) : null;
  const clipBytes = c.dStored?.size as number | undefined;
  out.push(
    `clip: pinned@${at(pinned)} post-roll-end@${POST_ROLL_S * 1000} segment-closed@${at(lastSeg)} cut@${at(cut)} (${cut ? `${cut.durationS} s, ${cut.bytes} B, gaps ${JSON.stringify(cut.gaps)}` : '?'}) ` +
      `queued@${at(c.queued)} init@${at(c.init)} seg@${at(c.firstSeg)} last-seg@${at(c.lastSeg)} fin@${at(c.fin)} stored@${at(c.dStored)} ms` +
      (uploadMs && clipBytes ? `; first segment → stored ${round(uploadMs / 1000)} s = ${round((clipBytes * 8) / uploadMs)} kbit/s` : ''),
  );
  return out;
}

/**
 * The camera's side of the snapshot, from the commands the sim parsed (its
 * clock): each command's time to the next one (its reply on the wire and the
 * driver's turnaround) against the bytes both ways at the line's rate.
 */
function cameraProfile(commands: readonly SimCommand[], confirmedAt: number, baud: number): string {
  const cmds = commands.filter((c) => c.at >= confirmedAt);
  if (cmds.length === 0) return 'camera: no command seen';
  const wire = (bytes: number) => (bytes * 10 * 1000) / baud;
  const parts: string[] = [];
  let over = 0;
  for (let i = 0; i + 1 < cmds.length; i++) {
    const c = cmds[i]!;
    const took = cmds[i + 1]!.at - c.at;
    const replyBytes = c.cmd === 0x32 ? 10 + c.args.readUInt32BE(6) : c.cmd === 0x34 ? 9 : 5;
    const w = wire(4 + c.args.length + replyBytes);
    over += took - w;
    parts.push(`${c.name}${c.cmd === 0x32 ? ` ${c.args.readUInt32BE(6)} B` : ''} ${round(took, 1)} (wire ${round(w, 1)})`);
  }
  parts.push(`${cmds.at(-1)!.name}`);
  return `camera (ms, sim clock): first command @${Math.round(cmds[0]!.at - confirmedAt)}; ${parts.join(', ')}; beyond the wire ${Math.round(over)} ms`;
}

/** Bytes a second through the proxy: QoS 1 publishes of `bytes` in segment-sized payloads, first publish to last arrival. */
async function measureLink(bed: Testbed, bytes: number): Promise<number> {
  // A kind the dispatch receiver does not subscribe to, so it sees none of this; bus-2 over mutual TLS through the proxy, as the bus.
  const topic = 'busguard/v1/city/bus-2/up/floor';
  const sub = await mqtt.connectAsync(bed.broker.url, { protocolVersion: 5, username: 'monitor/test', password: USERS['monitor/test'], clientId: 'monitor/test' });
  const pub = await mqtt.connectAsync(`mqtts://127.0.0.1:${bed.proxy!.port}`, { protocolVersion: 5, ...certLogin(bed.pki!, 'city/bus-2') });
  try {
    await sub.subscribeAsync(topic, { qos: 1 });
    const n = Math.ceil(bytes / PROBE_PAYLOAD);
    const body = Buffer.alloc(PROBE_PAYLOAD, 'x');
    let got = 0;
    let gotBytes = 0;
    const done = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`link probe: ${got} of ${n} messages arrived in 300 s`)), 300_000);
      sub.on('message', (_t, payload) => {
        got++;
        gotBytes += payload.length;
        if (got === n) {
          clearTimeout(timer);
          resolve(monoMs());
        }
      });
    });
    const t0 = monoMs();
    for (let i = 0; i < n; i++) pub.publish(topic, body, { qos: 1 });
    const t1 = await done;
    return gotBytes / ((t1 - t0) / 1000);
  } finally {
    await pub.endAsync();
    await sub.endAsync();
  }
}
