// One simulated bus and one dispatch receiver as real processes, against a
// real Mosquitto (shipped config and ACL), with NMEA streamed through a socat
// serial pair. Everything started here is stopped here, by PID.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { SimGpsReceiver, type SimOptions, type SimSample } from '../../hal/gps/route-sim.ts';
import { openPtyPair, type PtyPair } from '../helpers/pty.ts';
import { Mosquitto, USERS } from '../helpers/mosquitto.ts';
import { type LoggedProcess, busguard, busguardRun } from '../helpers/process.ts';
import type { StoredAlarm } from '../../dispatch/store.ts';

export class BusFixture {
  readonly dir = mkdtempSync(join(tmpdir(), 'busguard-it-'));
  broker!: Mosquitto;
  pty!: PtyPair;
  gps!: SimGpsReceiver;
  agent!: LoggedProcess;
  dispatch!: LoggedProcess;
  readonly samples: SimSample[] = [];
  private sampler: NodeJS.Timeout | null = null;
  agentConfigPath = '';
  dispatchConfigPath = '';
  readonly socket = join(this.dir, 'panel.sock');

  async start(agentOverrides: Record<string, unknown> = {}, opts: { gps?: Partial<SimOptions> } = {}): Promise<void> {
    this.broker = await Mosquitto.start(this.dir);
    this.pty = await openPtyPair(this.dir);
    this.gps = new SimGpsReceiver({ path: this.pty.a, baudRate: 9600, rateHz: 2, ...opts.gps });
    await this.gps.start();
    this.sampler = setInterval(() => {
      const s = this.gps.position();
      if (s && this.samples.at(-1)?.time.getTime() !== s.time.getTime()) this.samples.push(s);
    }, 20);
    this.agentConfigPath = join(this.dir, 'agent.json');
    writeFileSync(
      this.agentConfigPath,
      JSON.stringify({
        vehicle: { fleet: 'city', id: 'bus-1', route: '603' },
        mqtt: { url: this.broker.url, password: USERS['city/bus-1'], reconnectMinMs: 100, reconnectMaxMs: 1000, keepaliveS: 5 },
        storage: { dir: join(this.dir, 'bus') },
        panel: { driver: 'sim', socket: this.socket },
        gps: { port: this.pty.b, baudRate: 9600 },
        alarm: { resendS: 1, acknowledgedShowS: 3600 },
        position: { intervalS: 0, alarmIntervalS: 1 },
        log: { level: 'debug' },
        ...agentOverrides,
      }),
    );
    this.dispatchConfigPath = join(this.dir, 'dispatch.json');
    writeFileSync(
      this.dispatchConfigPath,
      JSON.stringify({
        mqtt: { url: this.broker.url, password: USERS.dispatch, reconnectMinMs: 100, reconnectMaxMs: 1000, keepaliveS: 5 },
        storage: { path: join(this.dir, 'dispatch.db') },
        ack: { resendS: 1 },
        log: { level: 'debug' },
      }),
    );
    this.dispatch = await this.startDispatch();
    this.agent = await this.startAgent();
  }

  async startAgent(env: Record<string, string> = {}): Promise<LoggedProcess> {
    const p = busguard(['agent', '--config', this.agentConfigPath], env);
    await p.waitForEvent('agent.started');
    this.agent = p;
    return p;
  }

  async startDispatch(): Promise<LoggedProcess> {
    const p = busguard(['dispatch', '--config', this.dispatchConfigPath]);
    await p.waitForEvent('mqtt.connected');
    this.dispatch = p;
    return p;
  }

  /** Read dispatch's SQLite as a dispatcher's tool would (a second connection). */
  dispatchAlarms(kind?: 'emergency' | 'incident'): StoredAlarm[] {
    const db = new Database(join(this.dir, 'dispatch.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT id, kind, fleet, vehicle, fix, ack_at AS ackAt, ack_seen_at AS ackSeenAt FROM alarms ORDER BY received_at').all() as (StoredAlarm & { fix: string | null })[];
      return rows
        .map((r) => ({ ...r, fix: r.fix ? JSON.parse(r.fix) : null }))
        .filter((r) => kind === undefined || r.kind === kind);
    } finally {
      db.close();
    }
  }

  /** Track points at dispatch (all, or those sent while alarmId was open), with the message each came in. */
  dispatchPositions(alarmId?: string): { id: string; messageId: string; at: string; timeSource: string; fix: { lat: number; lon: number } }[] {
    const db = new Database(join(this.dir, 'dispatch.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = (
        alarmId === undefined
          ? db.prepare('SELECT id, message_id AS messageId, at, time_source AS timeSource, fix FROM positions ORDER BY at').all()
          : db.prepare('SELECT id, message_id AS messageId, at, time_source AS timeSource, fix FROM positions WHERE alarm_id = ? ORDER BY at').all(alarmId)
      ) as { id: string; messageId: string; at: string; timeSource: string; fix: string }[];
      return rows.map((r) => ({ ...r, fix: JSON.parse(r.fix) as { lat: number; lon: number } }));
    } finally {
      db.close();
    }
  }

  async ack(id: string): Promise<string> {
    const r = await busguardRun(['dispatch', 'ack', id, '--config', this.dispatchConfigPath, '--by', 'officer-7']);
    if (r.code !== 0) throw new Error(`dispatch ack failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }

  async stop(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    // With their children (the recorder, a clip's ffmpeg): nothing of ours may write into the folder below.
    await this.agent?.killTree();
    await this.dispatch?.killTree();
    await this.gps?.stop();
    await this.pty?.stop();
    await this.broker?.stop();
    try {
      rmSync(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch (err) {
      throw new Error(`BusFixture teardown: cannot remove ${this.dir} (${(err as Error).message}); a process of this test may still be writing there`, { cause: err });
    }
  }
}

export { until } from '../helpers/until.ts';
