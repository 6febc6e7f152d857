// `busguard demo`: one alarm end to end on one machine, with nothing set up
// beyond the README: an in-process MQTT broker (aedes, enforcing the same
// ACL as the shipped Mosquitto one), a simulated bus (sim panel; a GPS
// simulator writing NMEA along a route into a socat serial pair, read by the
// real NMEA reader; a simulated VC0706 cabin camera on another serial pair),
// and dispatch. Exits 0 only when the alarm was acknowledged end to end, the
// driver's LED shows it, and the cabin photo reached dispatch verified.

import { readFileSync } from 'node:fs';
import piexif from 'piexifjs';
import pino from 'pino';
import { Agent, type JourneyEvent } from '../firmware/agent.ts';
import { AgentConfigSchema, loadAgentConfig } from '../firmware/config.ts';
import { acknowledge } from '../dispatch/acknowledge.ts';
import { Receiver } from '../dispatch/receiver.ts';
import type { StoredFile } from '../dispatch/files.ts';
import { simLed, simPress } from '../hal/panel/sim-client.ts';
import { monoMs } from '../common/log.ts';
import { Testbed } from './lib/testbed.ts';
import { until } from './lib/until.ts';
import type { Fix } from '../protocol/messages.ts';

const USERS: Record<string, string> = { dispatch: 'demo-dispatch', 'city/bus-17': 'demo-bus-17' };

interface Cleanup {
  (): Promise<void> | void;
}

export async function runDemo(opts: { hold: number }): Promise<number> {
  const out = (s: string) => process.stdout.write(`${s}\n`);
  // A hold shorter than the agent's threshold raises nothing: say so now, not after waiting for an alarm that cannot come.
  const { holdMs } = AgentConfigSchema.shape.alarm.parse(undefined);
  if (opts.hold < holdMs) {
    process.stderr.write(`demo: --hold ${opts.hold} ms is shorter than alarm.holdMs (${holdMs} ms): a press that short raises nothing (a bump is not an alarm); hold at least ${holdMs} ms\n`);
    return 2;
  }
  const cleanups: Cleanup[] = [];
  const log = pino({ level: process.env.BUSGUARD_DEMO_LOG ?? 'warn' }, pino.destination(2));
  try {
    // The simulated bus every test and bench uses (scripts/lib/testbed.ts), with the broker in this process:
    // aedes, enforcing the same ACL as the shipped Mosquitto one. A GPS simulator writes NMEA along a route
    // into a socat serial pair, read by the real NMEA reader; a simulated VC0706 cabin camera serves real
    // JPEGs on a pair of its own.
    const bed = new Testbed({
      name: 'busguard-demo',
      broker: 'aedes',
      users: USERS,
      vehicle: 'bus-17',
      gps: { rateHz: 1 },
      camera: {},
      cameraConfig: { imageSize: '640x480' },
      agent: { alarm: { resendS: 2 }, position: {} },
      dispatch: { ack: { resendS: 2 } },
    });
    cleanups.push(() => bed.stop());
    await bed.start({ processes: false });
    const url = bed.broker.url;
    const agentConfig = loadAgentConfig(bed.agentConfigPath);
    const dispatchConfig = bed.dispatchConfig();

    // Dispatch and the bus, in this process.
    const receiver = new Receiver(dispatchConfig, log.child({ name: 'dispatch' }));
    receiver.start();
    cleanups.push(() => receiver.stop());
    const agent = await Agent.start(agentConfig, log.child({ name: 'agent' }));
    cleanups.push(() => agent.stop());

    out(`busguard demo: bus city/bus-17 (route 603), broker aedes on ${url}, GPS simulator on ${bed.pty.a} → ${bed.pty.b}`);
    const journey = new Map<string, number>();
    let alarmFix: Fix | null = null;
    const stepSeen = new Promise<void>((resolve) => {
      agent.on('journey', (e: JourneyEvent) => {
        journey.set(e.step, e.monoMs);
        if (e.alarm?.fix !== undefined) alarmFix = e.alarm.fix;
        if (e.step === 'acknowledged') resolve();
      });
    });
    const atDispatch = new Promise<string>((resolve) => receiver.on('alarm', (a, at) => {
      journey.set('dispatch', at);
      resolve(a.id);
    }));
    receiver.on('receiptSent', (_ids, at) => {
      if (!journey.has('receiptSent')) journey.set('receiptSent', at);
    });
    const photo = new Promise<StoredFile>((resolve) =>
      receiver.files.on('stored', (f) => {
        journey.set('photo', monoMs());
        resolve(f);
      }),
    );

    await until(() => agent.hasFix(), 8000, 'a GPS fix from the simulator');
    const connected = await until(() => agent.connected, 8000, 'the bus to connect to the broker');
    void connected;

    out(`driver holds the panic button for ${opts.hold} ms…`);
    const pressedAt = monoMs();
    await simPress(agentConfig.panel.driver === 'sim' ? agentConfig.panel.socket : '', { holdMs: opts.hold });
    const alarmId = await withTimeout(atDispatch, 10_000, 'the alarm at dispatch');
    await until(() => journey.has('delivered'), 10_000, 'the receipt on the bus');
    const snapshot = await withTimeout(photo, 15_000, 'the cabin photo at dispatch');
    const exifGps = readExifGps(snapshot.path!);

    const dispatcher = 'demo-dispatcher';
    const ackStore = receiver.store;
    const ackSentAt = monoMs();
    acknowledge(ackStore, dispatchConfig, alarmId, dispatcher);
    await withTimeout(stepSeen, 10_000, 'the acknowledgement on the bus');
    const led = await simLed(agentConfig.panel.driver === 'sim' ? agentConfig.panel.socket : '');

    const t0 = journey.get('confirmed')!;
    const rel = (m: number | undefined) => (m === undefined ? '   (missing)' : `${(m - t0).toFixed(1).padStart(9)} ms`);
    out('');
    out(`alarm ${alarmId}`);
    out(`  ${(pressedAt - t0).toFixed(1).padStart(9)} ms  pressed (button down)`);
    out(`  ${rel(t0)}  hold confirmed (${agentConfig.alarm.holdMs} ms): emergency raised`);
    out(`  ${rel(journey.get('stored'))}  stored on the bus (SQLite commit, fsync)        LED: stored`);
    out(`  ${rel(journey.get('dispatch'))}  at dispatch (committed to its SQLite)`);
    out(`  ${rel(journey.get('receiptSent'))}  receipt sent by dispatch`);
    out(`  ${rel(journey.get('delivered'))}  receipt on the bus                              LED: delivered`);
    const fixNow = alarmFix as Fix | null;
    const exifMatches = fixNow !== null && exifGps !== null && Math.abs(exifGps.lat - fixNow.lat) < 1e-7 && Math.abs(exifGps.lon - fixNow.lon) < 1e-7;
    out(`  ${rel(journey.get('photo'))}  cabin photo at dispatch, SHA-256 verified (${snapshot.size} bytes; EXIF GPS ${exifGps ? `${exifGps.lat.toFixed(6)}, ${exifGps.lon.toFixed(6)}` : 'none'}${exifMatches ? ' = the alarm\'s fix' : ''})`);
    out(`  ${rel(ackSentAt)}  acknowledged by ${dispatcher}`);
    out(`  ${rel(journey.get('acknowledged'))}  acknowledgement on the bus                      LED: ${led}`);
    const fix = alarmFix as Fix | null;
    out(
      fix
        ? `  fix: ${fix.lat.toFixed(6)}, ${fix.lon.toFixed(6)} ${fix.valid ? 'valid' : 'NOT valid'}, ${fix.ageS} s old, ${fix.speedMps?.toFixed(1) ?? '?'} m/s, track ${fix.trackDeg?.toFixed(0) ?? '?'}°, time ${fix.time ?? 'unknown'}`
        : '  fix: none (the alarm says so)',
    );
    const ref = { fleet: 'city', vehicle: 'bus-17' };
    const signed = receiver.signatures.get('alarm', ref, alarmId)?.verdict ?? 'not recorded';
    const photoSigned = receiver.signatures.get('file', ref, snapshot.fileId)?.verdict ?? 'not recorded';
    out(`  alarm record signed by the unit: ${signed}`);
    out(`  cabin photo signed by the unit: ${photoSigned}`);
    out(`  dispatch queue now: ${receiver.store.openQueue('emergency').length} open emergency alarm(s)`);
    if (!signed.startsWith('verified')) throw new Error(`the alarm record's signature: ${signed}`);
    if (led !== 'acknowledged') throw new Error(`LED shows "${led}", expected "acknowledged"`);
    if (snapshot.alarmId !== alarmId) throw new Error(`the photo at dispatch belongs to alarm ${snapshot.alarmId}, not ${alarmId}`);
    if (!exifMatches) throw new Error('the photo at dispatch does not carry the alarm\'s fix in its EXIF GPS tags');
    out('demo: OK, the alarm went end to end and was acknowledged');
    return 0;
  } catch (err) {
    process.stderr.write(`demo: FAILED: ${(err as Error).message}\n`);
    return 1;
  } finally {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => {});
  }
}

/** The EXIF GPS position of a JPEG, as signed degrees, or null. */
function readExifGps(file: string): { lat: number; lon: number } | null {
  const gps = piexif.load(readFileSync(file).toString('binary')).GPS as Record<number, unknown> | undefined;
  const dms = (v: unknown) => (v as [number, number][] | undefined)?.reduce((sum, [n, d], i) => sum + n / d / 60 ** i, 0);
  const lat = dms(gps?.[piexif.GPSIFD.GPSLatitude]);
  const lon = dms(gps?.[piexif.GPSIFD.GPSLongitude]);
  if (lat === undefined || lon === undefined) return null;
  return { lat: gps?.[piexif.GPSIFD.GPSLatitudeRef] === 'S' ? -lat : lat, lon: gps?.[piexif.GPSIFD.GPSLongitudeRef] === 'W' ? -lon : lon };
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: not there within ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}
