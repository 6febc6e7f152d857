// The on-bus agent: wiring only. The alarm's way out reads
//   panel → press-pattern → alarms → outbox → uplink
// each once (alarms.ts raises, stores and sends; the LED follows
// led-policy.ts); GPS fixes feed the clock, the evidence's track and the
// track reporter; evidence, footage and diagnostics hang off the same
// database and uplink.

import { createPrivateKey } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createLogger } from '../common/log.ts';
import { type Db, migrate, openDatabase } from '../common/sqlite.ts';
import { laneItem } from '../gateway/lane-item.ts';
import { OUTBOX_SCHEMA, Outbox } from '../gateway/outbox.ts';
import { Uplink } from '../gateway/uplink.ts';
import { NmeaReader } from '../hal/gps/reader.ts';
import { openPanel } from '../hal/panel/drivers.ts';
import { LED_CYCLE_MS } from '../hal/panel/led-patterns.ts';
import type { LedState, Panel, PressOutcome } from '../hal/panel/types.ts';
import type { AlarmKind } from '../protocol/messages.ts';
import type { VehicleRef } from '../protocol/topics.ts';
import { EvidenceSigner } from '../protocol/signed-evidence.ts';
import { AlarmJournal, JOURNAL_REPEATS_SCHEMA, JOURNAL_SCHEMA } from './alarm-journal.ts';
import { Alarms, type JourneyEvent } from './alarms.ts';
import { GpsClock } from './clock.ts';
import { CommandTrust } from '../gateway/command-trust.ts';
import { type AgentConfig, trustedKeys } from './config.ts';
import { Diagnostics } from './diagnostics.ts';
import { CLIP_JOBS_SCHEMA, Evidence, FILE_UPLOAD_SCHEMA } from './evidence.ts';
import { FOOTAGE_SCHEMA, FootageHandler } from './footage.ts';
import { ledFor } from './led-policy.ts';
import { describeFix } from './position.ts';
import { PressPattern } from './press-pattern.ts';
import { TrackReporter } from './track-reporter.ts';
import { HealthMonitor } from './health.ts';

export type { JourneyEvent, JourneyStep } from './alarms.ts';

export const AGENT_VERSION = 'busguard-agent/0.1.0';

export interface AgentEvents {
  journey: [JourneyEvent];
  led: [LedState];
  /** A press while an alarm of that kind is open: sent as a repeat, no second alarm. */
  duplicatePress: [kind: AlarmKind, openAlarmId: string];
}

export class Agent extends EventEmitter<AgentEvents> {
  readonly log: Logger;
  readonly evidence: Evidence;
  private readonly db: Db;
  private readonly outbox: Outbox;
  private readonly uplink: Uplink;
  private readonly clock: GpsClock;
  private readonly diagnostics: Diagnostics;
  private readonly alarms: Alarms;
  private readonly track: TrackReporter;
  private readonly pattern: PressPattern;
  private readonly footage: FootageHandler;
  private readonly health: HealthMonitor;
  private gps: NmeaReader | null = null;
  private panel: Panel | null = null;
  private ledTimer: NodeJS.Timeout | null = null;
  /** Until when the LED shows the 'registered' flurry (Date.now() ms). */
  private flashUntil = 0;
  private expireTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly config: AgentConfig,
    log?: Logger,
  ) {
    super();
    const ref: VehicleRef = { fleet: config.vehicle.fleet, vehicle: config.vehicle.id };
    this.log = log ?? createLogger('agent', config.log.level, { fleet: ref.fleet, vehicle: ref.vehicle });
    // Before anything is opened: a key that cannot be read is a config error.
    const keys = trustedKeys(config);
    this.db = openDatabase(join(config.storage.dir, 'outbox.db'), { pageSize: 1024 });
    migrate(this.db, [OUTBOX_SCHEMA + JOURNAL_SCHEMA, FILE_UPLOAD_SCHEMA, FOOTAGE_SCHEMA, CLIP_JOBS_SCHEMA, JOURNAL_REPEATS_SCHEMA]);
    this.clock = new GpsClock(this.log);
    this.outbox = new Outbox(this.db, config.outbox, (e) => this.diagnostics.onEvicted(e));
    const journal = new AlarmJournal(this.db);
    this.uplink = new Uplink({
      ref,
      mqtt: config.mqtt,
      outbox: this.outbox,
      resendMs: config.alarm.resendS * 1000,
      agent: AGENT_VERSION,
      log: this.log,
      openAlarms: () => this.alarms.openIds(),
      health: () => this.health.current(),
      // The unit's TLS identity signs its evidence too (protocol/signed-evidence.ts).
      signer: config.mqtt.keyFile !== undefined && config.mqtt.certFile !== undefined ? new EvidenceSigner(createPrivateKey(readFileSync(config.mqtt.keyFile)), readFileSync(config.mqtt.certFile, 'utf8')) : null,
      trust: new CommandTrust({
        self: ref,
        keys,
        clockSkewS: config.trust.clockSkewS,
        now: () => {
          const t = this.clock.now();
          return t.timeSource === 'gps' ? new Date(t.ms) : null;
        },
        log: this.log,
      }),
    });
    this.diagnostics = new Diagnostics({ ref, outbox: this.outbox, takenForSending: (id) => this.uplink.takenForSending(id), now: () => this.clock.now().iso, log: this.log });
    const fix = () => describeFix(this.gps, config.position.staleAfterS);
    this.evidence = new Evidence({
      ref,
      db: this.db,
      outbox: this.outbox,
      uplink: this.uplink,
      cameras: config.cameras,
      video: config.video,
      clips: config.clips,
      media: config.media,
      storageDir: config.storage.dir,
      files: config.files,
      log: this.log,
      clock: this.clock,
      diag: (d) => this.diagnostics.record(d),
    });
    this.alarms = new Alarms({
      ref,
      route: config.vehicle.route,
      journal,
      outbox: this.outbox,
      uplink: this.uplink,
      clock: this.clock,
      fix,
      incidentInput: config.alarm.incidentPattern === 'second-input' ? 'incident' : 'panic',
      report: (o) => this.report(o),
      evidence: (alarm, pressMono) => this.evidence.onAlarm(alarm, pressMono),
      acknowledgedShowMs: config.alarm.acknowledgedShowS * 1000,
      log: this.log,
    });
    this.track = new TrackReporter({
      ref,
      position: config.position,
      outbox: this.outbox,
      kick: () => this.uplink.kick(),
      clock: this.clock,
      fix,
      emergency: () => this.alarms.openEmergencyId(),
      diag: (d) => this.diagnostics.record(d),
      log: this.log,
    });
    this.pattern = new PressPattern(config.alarm);
    this.health = new HealthMonitor({
      config: config.health,
      storageDir: config.storage.dir,
      gps: () => this.gps,
      checkCameras: () => this.evidence.snapshots.check(),
      recorders: () => this.evidence.recorders.values(),
      outbox: this.outbox,
      mediaBytes: () => this.evidence.waitingBytes(),
      mediaQuotaBytes: config.media.maxBytes,
      clockOffsetMs: () => this.clock.offset(),
      fixStaleS: config.position.staleAfterS,
      now: () => this.clock.now().iso,
      publish: () => this.uplink.publishStatus(),
      log: this.log,
    });
    this.footage = new FootageHandler({
      ref,
      db: this.db,
      recorders: this.evidence.recorders,
      mediaDir: this.evidence.dir,
      log: this.log,
      now: () => this.clock.now(),
      fix,
      enqueue: async (f, bytes) => (await this.evidence.enqueue(f, bytes))?.id ?? null,
      track: () => this.evidence.trackPoints(),
      // The answer and the "handled" record in one transaction: a crash between them would answer twice.
      answer: (a, commit) => {
        this.outbox.write('clip', () => {
          this.outbox.append(laneItem(ref, 'footage', 'clip', a));
          commit();
        });
        this.uplink.kick();
      },
    });
  }

  static async start(config: AgentConfig, log?: Logger): Promise<Agent> {
    const agent = new Agent(config, log);
    try {
      await agent.open();
    } catch (err) {
      await agent.stop();
      throw err;
    }
    return agent;
  }

  private async open(): Promise<void> {
    const { config, log } = this;
    if (config.gps) {
      const gps = (this.gps = new NmeaReader({ path: config.gps.port, baudRate: config.gps.baudRate, autoBaud: config.gps.autoBaud, log }));
      gps.once('fix', (f) => log.info({ event: 'gps.first-fix', valid: f.valid, lat: f.lat, lon: f.lon }, 'first GPS fix'));
      gps.on('fix', (f) => {
        this.clock.observe(f);
        if (f.valid) this.evidence.noteFix(f.lat, f.lon, f.altM, f.receivedAtMs);
        this.track.offer(f);
      });
      // An unplugged or silent receiver is a warning a technician must see; recovery is news, not a fault.
      gps.on('status', (st) => {
        log[st.level]({ event: `gps.${st.state}`, detail: st.detail }, st.detail);
        this.health.poke();
      });
      gps.start();
    } else {
      log.warn({ event: 'gps.none' }, 'no GPS configured: alarms will say they have no fix');
    }
    const panel = (this.panel = await openPanel(config.panel, log));
    panel.onButton((e) => this.pattern.handle(e));
    this.pattern.on('emergency', (heldMs, atMs) => this.alarms.raise('emergency', heldMs, atMs));
    this.pattern.on('incident', (heldMs, atMs) => this.alarms.raise('incident', heldMs, atMs));
    this.pattern.on('short', (input, heldMs) => {
      log.info({ event: 'press.ignored', input, heldMs, holdMs: config.alarm.holdMs }, 'press too short to raise an alarm');
      const double = config.alarm.incidentPattern === 'double' ? `; a second short press within ${config.alarm.doublePressWindowMs} ms raises an incident` : '';
      this.report({ input, result: 'ignored', detail: `no alarm: held ${Math.round(heldMs)} ms, shorter than alarm.holdMs (${config.alarm.holdMs} ms)${double}` });
    });
    this.pattern.on('ignored', (input, reason) => {
      log.info({ event: 'press.ignored', input, reason }, 'press of an input this bus does not use');
      this.report({ input, result: 'ignored', detail: `no alarm: ${reason}` });
    });
    this.alarms.on('journey', (e) => this.emit('journey', e));
    this.alarms.on('duplicatePress', (kind, id) => this.emit('duplicatePress', kind, id));
    this.alarms.on('changed', (flash) => {
      this.refreshLed(flash);
      this.track.reschedule();
    });
    this.uplink.on('confirmed', (ids) => this.alarms.confirmed(ids));
    this.uplink.on('ack', (ack) => this.alarms.acknowledged(ack));
    this.uplink.on('footage', (req) => this.footage.handle(req));
    this.outbox.expire();
    this.expireTimer = setInterval(() => {
      try {
        this.outbox.expire();
      } catch (err) {
        log.error({ event: 'outbox.expire-failed', err: (err as Error).message }, 'could not expire old messages');
      }
    }, 10 * 60_000);
    this.expireTimer.unref();
    this.uplink.start();
    this.evidence.start();
    for (const rec of this.evidence.recorders.values()) rec.on('status', () => this.health.poke());
    this.health.start();
    log.info(
      { event: 'agent.started', panel: panel.driver, gps: config.gps?.port ?? null, pending: this.outbox.size(), openAlarms: this.alarms.openIds() },
      'agent started',
    );
    this.refreshLed();
    this.track.reschedule();
  }

  /** Press pattern confirmed (also for tests and benches): see Alarms.raise. */
  raise(kind: AlarmKind, heldMs: number, confirmedAtMs = performance.now()): string {
    return this.alarms.raise(kind, heldMs, confirmedAtMs);
  }

  /** The reader has assembled at least one fix. */
  hasFix(): boolean {
    return this.gps?.latest() != null;
  }

  get connected(): boolean {
    return this.uplink.connected;
  }

  ledState(): LedState {
    return this.panel?.ledState() ?? 'idle';
  }

  async stop(): Promise<void> {
    this.pattern.dispose();
    await this.health.stop();
    if (this.ledTimer) clearTimeout(this.ledTimer);
    if (this.expireTimer) clearInterval(this.expireTimer);
    // Points still in memory go to the outbox: a clean stop (the engine switched off with a shutdown) keeps them.
    if (this.db.open) this.track.stop();
    await this.evidence.stop().catch(() => {});
    await this.uplink.stop().catch(() => {});
    await this.panel?.close().catch(() => {});
    await this.gps?.close().catch(() => {});
    if (this.db.open) this.db.close();
    this.log.info({ event: 'agent.stopped' }, 'agent stopped');
  }

  /** Show on the LED what led-policy.ts says, and come back when that changes by itself. */
  private refreshLed(flash = false): void {
    if (!this.panel) return;
    if (this.ledTimer) clearTimeout(this.ledTimer);
    this.ledTimer = null;
    const now = Date.now();
    if (flash) this.flashUntil = now + LED_CYCLE_MS;
    const { state, changesInMs } = ledFor({ now, flashUntil: this.flashUntil, showAckMs: this.config.alarm.acknowledgedShowS * 1000, ...this.alarms.ledInputs() });
    if (changesInMs !== null) {
      this.ledTimer = setTimeout(() => this.refreshLed(), changesInMs + 10);
      this.ledTimer.unref();
    }
    if (this.panel.ledState() !== state) {
      this.panel.setLed(state);
      this.log.info({ event: 'led', state }, `LED ${state}`);
      this.emit('led', state);
    }
  }

  private report(outcome: PressOutcome): void {
    try {
      this.panel?.report?.(outcome);
    } catch (err) {
      this.log.warn({ event: 'panel.report-failed', err: (err as Error).message });
    }
  }
}
