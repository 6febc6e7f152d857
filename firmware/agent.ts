// The on-bus agent: panel → press pattern → alarm committed to the outbox →
// LED "stored" → uplink → receipt → LED "delivered" → dispatcher's ack → LED
// "acknowledged". Positions go out at the routine rate, and faster while an
// emergency is open.

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { openPanel } from '../hal/panel/drivers.ts';
import { LED_CYCLE_MS } from '../hal/panel/led-patterns.ts';
import type { ButtonInput, LedState, Panel, PressOutcome } from '../hal/panel/types.ts';
import { NmeaReader } from '../hal/gps/reader.ts';
import { type Db, migrate, openDatabase } from '../common/sqlite.ts';
import { type Eviction, OUTBOX_SCHEMA, Outbox, OutboxFullError } from '../gateway/outbox.ts';
import type { Lane } from '../protocol/lanes.ts';
import { Uplink } from '../gateway/uplink.ts';
import type { AckMessage, AlarmKind, AlarmMessage, DiagMessage, PositionMessage, RepeatMessage, TrackPoint } from '../protocol/messages.ts';
import type { GpsFix } from '../hal/gps/types.ts';
import { encode } from '../protocol/messages.ts';
import { type VehicleRef, uplinkTopic } from '../protocol/topics.ts';
import { createLogger, monoMs } from '../common/log.ts';
import { AlarmJournal, JOURNAL_REPEATS_SCHEMA, JOURNAL_SCHEMA, type JournalEntry } from './alarm-journal.ts';
import type { AgentConfig } from './config.ts';
import { GpsClock } from './clock.ts';
import { describeFix, toFix } from './position.ts';
import { TrackThinner } from './track.ts';
import { PressPattern } from './press-pattern.ts';
import { CLIP_JOBS_SCHEMA, Evidence, FILE_UPLOAD_SCHEMA } from './evidence.ts';
import { FOOTAGE_SCHEMA, FootageHandler } from './footage.ts';

export const AGENT_VERSION = 'busguard-agent/0.1.0';

export type JourneyStep = 'confirmed' | 'stored' | 'delivered' | 'acknowledged';

export interface JourneyEvent {
  alarmId: string;
  kind: AlarmKind;
  step: JourneyStep;
  /** CLOCK_MONOTONIC ms, comparable across processes (protocol/log.ts). */
  monoMs: number;
  alarm?: AlarmMessage;
  ack?: AckMessage;
  /** For 'stored': when the publish was handed to the socket (the alarm-latency bench's breakdown). */
  publishedMonoMs?: number;
}

export interface AgentEvents {
  journey: [JourneyEvent];
  led: [LedState];
  /** A press while an alarm of that kind is open: no second alarm. */
  duplicatePress: [kind: AlarmKind, openAlarmId: string];
}

export class Agent extends EventEmitter<AgentEvents> {
  readonly log: Logger;
  private readonly ref: VehicleRef;
  private readonly db: Db;
  private readonly outbox: Outbox;
  private readonly journal: AlarmJournal;
  private readonly uplink: Uplink;
  private readonly pattern: PressPattern;
  private gps: NmeaReader | null = null;
  private panel: Panel | null = null;
  private positionTimer: NodeJS.Timeout | null = null;
  private ledTimer: NodeJS.Timeout | null = null;
  /** Until when the LED shows the 'registered' flurry (Date.now() ms). */
  private flashUntil = 0;
  private positionFast = false;
  private readonly clock: GpsClock;
  /** Thinned points waiting for the next batch (position.intervalS, or the alarm rate). */
  private pendingPoints: { mono: number; fix: TrackPoint['fix'] }[] = [];
  /**
   * Alarms the disk could not hold (ENOSPC, I/O error): sent from memory and
   * re-sent until dispatch receipts them, shown as "fault" on the LED until
   * then. They survive as long as this process does.
   */
  private readonly volatileAlarms = new Map<string, { kind: AlarmKind; state: 'sending' | 'delivered' | 'acknowledged'; at: number }>();
  private recordingEviction = false;
  /** The latest eviction record per lane and reason, amended while still unpublished. */
  private readonly evictionRecords = new Map<string, DiagMessage & { count: number; bytes: number; ranges: [number, number][] }>();
  private expireTimer: NodeJS.Timeout | null = null;
  private readonly thinner: TrackThinner;
  readonly evidence: Evidence;
  private readonly footage: FootageHandler;

  private constructor(
    private readonly config: AgentConfig,
    log?: Logger,
  ) {
    super();
    this.ref = { fleet: config.vehicle.fleet, vehicle: config.vehicle.id };
    this.log = log ?? createLogger('agent', config.log.level, { fleet: this.ref.fleet, vehicle: this.ref.vehicle });
    this.db = openDatabase(join(config.storage.dir, 'outbox.db'), { pageSize: 1024 });
    migrate(this.db, [OUTBOX_SCHEMA + JOURNAL_SCHEMA, FILE_UPLOAD_SCHEMA, FOOTAGE_SCHEMA, CLIP_JOBS_SCHEMA, JOURNAL_REPEATS_SCHEMA]);
    this.clock = new GpsClock(this.log);
    this.thinner = new TrackThinner(config.position);
    this.outbox = new Outbox(this.db, config.outbox, (e) => this.onEvicted(e));
    this.journal = new AlarmJournal(this.db);
    this.uplink = new Uplink({
      ref: this.ref,
      mqtt: config.mqtt,
      outbox: this.outbox,
      resendMs: config.alarm.resendS * 1000,
      agent: AGENT_VERSION,
      log: this.log,
      openAlarms: () => this.journal.open().map((a) => a.id),
    });
    this.pattern = new PressPattern(config.alarm);
    this.evidence = new Evidence({
      ref: this.ref,
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
      diag: (d) => this.appendDiag(d),
    });
    this.footage = new FootageHandler({
      ref: this.ref,
      db: this.db,
      recorders: this.evidence.recorders,
      mediaDir: this.evidence.dir,
      log: this.log,
      now: () => this.clock.now(),
      fix: () => describeFix(this.gps, config.position.staleAfterS),
      enqueue: async (f, bytes) => (await this.evidence.enqueue(f, bytes))?.id ?? null,
      track: () => this.evidence.trackPoints(),
      // The answer and the "handled" record in one transaction: a crash between them would answer twice.
      answer: (a, commit) => {
        const item = { id: a.id, lane: 'clip' as Lane, topic: uplinkTopic(this.ref, 'footage'), payload: encode(a) };
        this.outbox.write('clip', () => {
          this.outbox.append(item);
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
      this.gps = new NmeaReader({ path: config.gps.port, baudRate: config.gps.baudRate, autoBaud: config.gps.autoBaud, log });
      this.gps.once('fix', (f) => log.info({ event: 'gps.first-fix', valid: f.valid, lat: f.lat, lon: f.lon }, 'first GPS fix'));
      this.gps.on('fix', (f) => this.onFix(f));
      // An unplugged or silent receiver is a warning a technician must see; recovery is news, not a fault.
      this.gps.on('status', (st) => log[st.level]({ event: `gps.${st.state}`, detail: st.detail }, st.detail));
      this.gps.start();
    } else {
      log.warn({ event: 'gps.none' }, 'no GPS configured: alarms will say they have no fix');
    }
    const panel = await openPanel(config.panel, log);
    this.panel = panel;
    panel.onButton((e) => this.pattern.handle(e));
    this.pattern.on('emergency', (heldMs, atMs) => this.raise('emergency', heldMs, atMs));
    this.pattern.on('incident', (heldMs, atMs) => this.raise('incident', heldMs, atMs));
    this.pattern.on('short', (input, heldMs) => {
      log.info({ event: 'press.ignored', input, heldMs, holdMs: config.alarm.holdMs }, 'press too short to raise an alarm');
      const double = config.alarm.incidentPattern === 'double' ? `; a second short press within ${config.alarm.doublePressWindowMs} ms raises an incident` : '';
      this.report({ input, result: 'ignored', detail: `no alarm: held ${Math.round(heldMs)} ms, shorter than alarm.holdMs (${config.alarm.holdMs} ms)${double}` });
    });
    this.pattern.on('ignored', (input, reason) => {
      log.info({ event: 'press.ignored', input, reason }, 'press of an input this bus does not use');
      this.report({ input, result: 'ignored', detail: `no alarm: ${reason}` });
    });
    this.uplink.on('confirmed', (ids) => this.onConfirmed(ids));
    this.outbox.expire();
    this.expireTimer = setInterval(() => {
      try {
        this.outbox.expire();
      } catch (err) {
        this.log.error({ event: 'outbox.expire-failed', err: (err as Error).message }, 'could not expire old messages');
      }
    }, 10 * 60_000);
    this.expireTimer.unref();
    this.uplink.on('ack', (ack) => this.onAck(ack));
    this.uplink.on('footage', (req) => this.footage.handle(req));
    this.uplink.start();
    this.evidence.start();
    const open = this.journal.open();
    log.info(
      { event: 'agent.started', panel: panel.driver, gps: config.gps?.port ?? null, pending: this.outbox.size(), openAlarms: open.map((a) => a.id) },
      'agent started',
    );
    this.refreshLed();
    this.schedulePosition();
  }

  /**
   * Press pattern confirmed: make the alarm durable, then send it, then tell
   * the driver. A press while an alarm of that kind is open is sent as a
   * repeat of it instead (see repeat()).
   */
  raise(kind: AlarmKind, heldMs: number, confirmedAtMs = performance.now()): string | null {
    const confirmedMono = monoMs() - (performance.now() - confirmedAtMs);
    const input = kind === 'incident' && this.config.alarm.incidentPattern === 'second-input' ? 'incident' : 'panic';
    const open = this.journal.open(kind)[0];
    if (open) return this.repeat(open, kind, heldMs, confirmedAtMs, input);
    const stamp = this.clock.stampAt(confirmedAtMs);
    const alarm: AlarmMessage = {
      v: 1,
      id: randomUUID(),
      kind,
      fleet: this.ref.fleet,
      vehicle: this.ref.vehicle,
      route: this.config.vehicle.route,
      raisedAt: stamp.iso,
      timeSource: stamp.timeSource,
      heldMs: Math.round(heldMs),
      fix: describeFix(this.gps, this.config.position.staleAfterS),
    };
    this.journey({ alarmId: alarm.id, kind, step: 'confirmed', monoMs: confirmedMono, alarm });
    const lane = kind === 'emergency' ? 'alarm' : 'incident';
    const item = { id: alarm.id, lane, topic: uplinkTopic(this.ref, lane), payload: encode(alarm) } as const;
    try {
      this.outbox.write(lane, () => {
        this.journal.insert({ id: alarm.id, kind, raisedAt: alarm.raisedAt });
        this.outbox.append(item);
      });
    } catch (err) {
      // The disk is full or failing: the alarm still goes out, from memory.
      this.log.fatal(
        { event: 'alarm.store-failed', alarmId: alarm.id, kind, err: (err as Error).message },
        'could not store the alarm on disk: sending it from memory until dispatch confirms it',
      );
      this.volatileAlarms.set(alarm.id, { kind, state: 'sending', at: Date.now() });
      this.uplink.sendVolatile(item);
      this.refreshLed(this.hiddenBy(kind));
      this.report({ input, result: 'raised', kind, alarmId: alarm.id, detail: `${kind} ${alarm.id} raised, NOT stored (${(err as Error).message}): sent from memory; LED fault until dispatch has it` });
      if (kind === 'emergency') this.schedulePosition();
      this.evidence.onAlarm(alarm, confirmedAtMs); // on a full disk the snapshot fails and says why; the alarm has gone already
      return alarm.id;
    }
    // Publish first: the LED, the log line and the evidence can wait a moment; the alarm's way to dispatch cannot.
    const storedMono = monoMs();
    this.uplink.kick();
    this.journey({ alarmId: alarm.id, kind, step: 'stored', monoMs: storedMono, alarm, publishedMonoMs: monoMs() });
    this.refreshLed(this.hiddenBy(kind));
    this.report({ input, result: 'raised', kind, alarmId: alarm.id, detail: `${kind} ${alarm.id} raised and stored` });
    if (kind === 'emergency') this.schedulePosition();
    this.evidence.onAlarm(alarm, confirmedAtMs);
    return alarm.id;
  }

  /**
   * The driver pressed again while `open` is open: not a second alarm, but a
   * repeat of this one, which dispatch hears (it may be an escalation). It
   * travels like the alarm (its lane, fsync'd, receipted); the LED shows the
   * repeat's own journey (stored, then delivered) after a 'registered' flurry.
   */
  private repeat(open: JournalEntry, kind: AlarmKind, heldMs: number, confirmedAtMs: number, input: ButtonInput): string {
    const stamp = this.clock.stampAt(confirmedAtMs);
    const lane = kind === 'emergency' ? 'alarm' : 'incident';
    const msg: RepeatMessage = {
      v: 1,
      id: randomUUID(),
      alarmId: open.id,
      kind,
      fleet: this.ref.fleet,
      vehicle: this.ref.vehicle,
      at: stamp.iso,
      timeSource: stamp.timeSource,
      heldMs: Math.round(heldMs),
      count: open.presses + 1,
      fix: describeFix(this.gps, this.config.position.staleAfterS),
    };
    const topic = uplinkTopic(this.ref, 'repeat');
    try {
      this.outbox.write(lane, () => {
        msg.count = this.journal.repeat(open.id, msg.id);
        this.outbox.append({ id: msg.id, lane, topic, payload: encode(msg) });
      });
    } catch (err) {
      this.log.error({ event: 'alarm.repeat-store-failed', alarmId: open.id, kind, err: (err as Error).message }, 'could not store the repeated press: sending it from memory');
      this.uplink.sendVolatile({ id: msg.id, lane, topic, payload: encode(msg) });
    }
    this.uplink.kick();
    this.emit('duplicatePress', kind, open.id);
    this.log.info({ event: 'alarm.repeated', kind, alarmId: open.id, repeatId: msg.id, count: msg.count, heldMs: msg.heldMs }, `button pressed again while the ${kind} is open: sent as press ${msg.count} of it`);
    this.refreshLed(true);
    this.report({ input, result: 'repeat', kind, alarmId: open.id, detail: `${kind} ${open.id} is still open: this press was sent to dispatch as press ${msg.count} of it` });
    return open.id;
  }

  /** Whether the LED will not show a new alarm of this kind (an emergency, or a fresh acknowledgement, takes precedence over an incident). */
  private hiddenBy(kind: AlarmKind): boolean {
    if (kind === 'emergency') return false;
    return this.journal.open('emergency').length > 0 || this.openVolatile('emergency') !== undefined || this.freshAck()?.kind === 'emergency';
  }

  private report(outcome: PressOutcome): void {
    try {
      this.panel?.report?.(outcome);
    } catch (err) {
      this.log.warn({ event: 'panel.report-failed', err: (err as Error).message });
    }
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
    if (this.positionTimer) clearTimeout(this.positionTimer);
    if (this.ledTimer) clearTimeout(this.ledTimer);
    if (this.expireTimer) clearInterval(this.expireTimer);
    // Points still in memory go to the outbox: a clean stop (the engine switched off with a shutdown) keeps them.
    if (this.db.open) this.sendTrack();
    await this.evidence.stop().catch(() => {});
    await this.uplink.stop().catch(() => {});
    await this.panel?.close().catch(() => {});
    await this.gps?.close().catch(() => {});
    if (this.db.open) this.db.close();
    this.log.info({ event: 'agent.stopped' }, 'agent stopped');
  }

  private onConfirmed(ids: string[]): void {
    for (const id of ids) {
      const v = this.volatileAlarms.get(id);
      if (v?.state === 'sending') {
        v.state = 'delivered';
        this.journey({ alarmId: id, kind: v.kind, step: 'delivered', monoMs: monoMs() });
        this.refreshLed();
      }
    }
    const delivered = this.journal.markDelivered(ids, new Date().toISOString());
    for (const id of delivered) {
      const entry = this.journal.get(id)!;
      this.journey({ alarmId: id, kind: entry.kind, step: 'delivered', monoMs: monoMs() });
    }
    if (delivered.length) this.refreshLed();
  }

  private onAck(ack: AckMessage): void {
    const v = this.volatileAlarms.get(ack.alarmId);
    if (v) {
      if (v.state !== 'acknowledged') {
        v.state = 'acknowledged';
        v.at = Date.now();
        this.uplink.confirmVolatile([ack.alarmId]);
        this.journey({ alarmId: ack.alarmId, kind: v.kind, step: 'acknowledged', monoMs: monoMs(), ack });
        this.refreshLed();
        this.schedulePosition();
      }
      this.uplink.sendBusReceipt([ack.alarmId]);
      return;
    }
    const entry = this.journal.get(ack.alarmId);
    if (!entry) {
      this.log.warn({ event: 'ack.unknown', alarmId: ack.alarmId }, 'acknowledgement for an alarm this bus never raised');
      return;
    }
    if (this.journal.markAcknowledged(ack.alarmId, ack.by, new Date().toISOString())) {
      // An ack implies dispatch holds the alarm, even if its receipt was lost.
      this.outbox.confirmIds([ack.alarmId]);
      this.journey({ alarmId: ack.alarmId, kind: entry.kind, step: 'acknowledged', monoMs: monoMs(), ack });
      this.refreshLed();
      this.schedulePosition();
    }
    this.uplink.sendBusReceipt([ack.alarmId]);
  }

  private journey(e: JourneyEvent): void {
    this.log.info(
      {
        event: `alarm.${e.step}`,
        alarmId: e.alarmId,
        kind: e.kind,
        stepMonoMs: e.monoMs,
        ...(e.step === 'stored' ? { fix: e.alarm?.fix ?? null, publishedMonoMs: e.publishedMonoMs } : {}),
        ...(e.ack ? { by: e.ack.by } : {}),
      },
      `alarm ${e.step}`,
    );
    this.emit('journey', e);
  }

  /**
   * What the LED shows, first match wins: the 'registered' flurry for one
   * cycle after a press it would not otherwise show (a repeat, an incident
   * behind an emergency); the open emergency (the state of its latest press);
   * a fresh acknowledgement of an emergency; the open incident; a fresh
   * acknowledgement of an incident; nothing. Each has its own pattern
   * (hal/panel/led-patterns.ts, docs/DRIVER.md).
   */
  private refreshLed(flash = false): void {
    if (!this.panel) return;
    if (this.ledTimer) clearTimeout(this.ledTimer);
    this.ledTimer = null;
    const now = Date.now();
    if (flash) this.flashUntil = now + LED_CYCLE_MS;
    const emergency = this.journal.open('emergency')[0] ?? this.openVolatile('emergency');
    const incident = this.journal.open('incident')[0] ?? this.openVolatile('incident');
    const ackLeft = (kind: AlarmKind): number => {
      const a = this.journal.lastAcknowledged(kind);
      return a?.acknowledgedAt ? Date.parse(a.acknowledgedAt) + this.config.alarm.acknowledgedShowS * 1000 - now : 0;
    };
    const emergencyAckMs = ackLeft('emergency');
    const incidentAckMs = ackLeft('incident');
    const show = (a: { state: string }, kind: AlarmKind): LedState => {
      if (a.state === 'sending') return 'fault';
      const s = a.state === 'stored' ? 'stored' : 'delivered';
      return kind === 'emergency' ? s : s === 'stored' ? 'incident-stored' : 'incident-delivered';
    };
    let state: LedState = 'idle';
    let changesInMs: number | null = null;
    if (now < this.flashUntil) {
      state = 'registered';
      changesInMs = this.flashUntil - now;
    } else if (emergency) state = show(emergency, 'emergency');
    else if (emergencyAckMs > 0) {
      state = 'acknowledged';
      changesInMs = emergencyAckMs;
    } else if (incident) state = show(incident, 'incident');
    else if (incidentAckMs > 0) {
      state = 'incident-acknowledged';
      changesInMs = incidentAckMs;
    }
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

  /** The acknowledgement the LED may still be showing. */
  private freshAck(): JournalEntry | null {
    const a = this.journal.lastAcknowledged();
    return a?.acknowledgedAt && Date.parse(a.acknowledgedAt) + this.config.alarm.acknowledgedShowS * 1000 > Date.now() ? a : null;
  }

  /** Every fix from the receiver: learn the clock offset, keep it as a track point if the thinning rules say so. */
  private onFix(f: GpsFix): void {
    this.clock.observe(f);
    if (f.valid) this.evidence.noteFix(f.lat, f.lon, f.altM, f.receivedAtMs);
    const emergencyOpen = this.positionFast;
    // Without routine reporting, points are kept only while an emergency is open.
    if (!emergencyOpen && this.config.position.intervalS <= 0) return;
    const heartbeatS = emergencyOpen ? this.config.position.alarmIntervalS : this.config.position.maxGapS;
    const reason = this.thinner.offer(f, heartbeatS);
    if (!reason) return;
    // Stamped when the batch is made: a point kept before GPS time was known gets it too.
    this.pendingPoints.push({ mono: f.receivedAtMs, fix: toFix(f, this.config.position.staleAfterS) });
    // A link down for days must not grow memory without bound: batches go to the outbox, whose quota governs.
    if (this.pendingPoints.length >= this.config.position.batchMax * 10) this.sendTrack();
  }

  /** An alarm of this kind held only in memory and not yet acknowledged. */
  private openVolatile(kind: AlarmKind): { id: string; state: string } | undefined {
    for (const [id, v] of this.volatileAlarms) if (v.kind === kind && v.state !== 'acknowledged') return { id, state: v.state };
    return undefined;
  }

  private openEmergencyId(): string | null {
    return this.journal.open('emergency')[0]?.id ?? this.openVolatile('emergency')?.id ?? null;
  }

  /**
   * What a quota or expiry sweep dropped: logged, and recorded in the diag
   * lane for dispatch. Drops of one lane during one outage go into one
   * record, amended while it has not been published, so the record of what
   * the track lost never grows into a flood that crowds out the track.
   */
  private onEvicted(e: Eviction): void {
    this.log.warn({ event: 'outbox.evicted', ...e }, `outbox dropped ${e.count} ${e.lane} message(s) (${e.reason})`);
    // Dropped diagnostics are logged only: recording them would add a diag record
    // for each diag record dropped, and at the quota that never ends.
    if (e.lane === 'diag' || this.recordingEviction) return;
    this.recordingEviction = true;
    try {
      const key = `${e.lane}/${e.reason}`;
      const open = this.evictionRecords.get(key);
      if (open && !this.uplink.wasPublished(open.id) && open.ranges.length < 1000) {
        const last = open.ranges.at(-1);
        if (last && last[1] + 1 === e.seqFrom) last[1] = e.seqTo;
        else open.ranges.push([e.seqFrom, e.seqTo]);
        open.count += e.count;
        open.bytes += e.bytes;
        if (this.outbox.replace(open.id, encode(open))) return;
      }
      const msg = this.diagMessage({ event: 'evicted', affectedLane: e.lane, count: e.count, bytes: e.bytes, ranges: [[e.seqFrom, e.seqTo]], reason: e.reason });
      this.appendDiagMessage(msg);
      this.evictionRecords.set(key, msg as DiagMessage & { count: number; bytes: number; ranges: [number, number][] });
    } catch (err) {
      this.log.error({ event: 'diag.store-failed', err: (err as Error).message }, 'could not record the eviction');
    } finally {
      this.recordingEviction = false;
    }
  }

  private diagMessage(d: Omit<DiagMessage, 'v' | 'id' | 'fleet' | 'vehicle' | 'at'>): DiagMessage {
    return { v: 1, id: randomUUID(), fleet: this.ref.fleet, vehicle: this.ref.vehicle, at: this.clock.now().iso, ...d };
  }

  /** Append a diagnostics record (inside the caller's transaction when there is one). */
  private appendDiag(d: Omit<DiagMessage, 'v' | 'id' | 'fleet' | 'vehicle' | 'at'>): void {
    this.appendDiagMessage(this.diagMessage(d));
  }

  private appendDiagMessage(msg: DiagMessage): void {
    const item = { id: msg.id, lane: 'diag' as Lane, topic: uplinkTopic(this.ref, 'diag'), payload: encode(msg) };
    if (this.db.inTransaction) this.outbox.append(item);
    else this.outbox.write('diag', () => this.outbox.append(item));
  }

  private schedulePosition(): void {
    const fast = this.openEmergencyId() !== null;
    if (this.positionTimer && fast === this.positionFast) return;
    if (this.positionTimer) clearTimeout(this.positionTimer);
    this.positionTimer = null;
    this.positionFast = fast;
    const intervalS = fast ? this.config.position.alarmIntervalS : this.config.position.intervalS;
    if (intervalS <= 0) return;
    this.positionTimer = setTimeout(() => {
      this.positionTimer = null;
      this.sendTrack();
      this.schedulePosition();
    }, intervalS * 1000);
    this.positionTimer.unref();
  }

  /**
   * Move the waiting track points into outbox messages (batchMax points
   * each). While an emergency is open and the thinner kept nothing new (the
   * receiver went quiet), the last fix is sent again with its age, so
   * dispatch keeps hearing where the bus last was.
   */
  private sendTrack(): void {
    const alarmId = this.openEmergencyId();
    if (alarmId && this.pendingPoints.length === 0) {
      const fix = describeFix(this.gps, this.config.position.staleAfterS);
      if (fix) {
        this.pendingPoints.push({ mono: performance.now(), fix });
      }
    }
    if (this.pendingPoints.length === 0) return;
    // Positions while an emergency is open are its follow-ups: their own lane, drained before the routine track.
    const lane: Lane = alarmId ? 'followup' : 'track';
    const points: TrackPoint[] = this.pendingPoints.map((p) => {
      const stamp = this.clock.stampAt(p.mono);
      return { at: stamp.iso, timeSource: stamp.timeSource, fix: p.fix };
    });
    this.pendingPoints = [];
    const batches: PositionMessage[] = [];
    for (let i = 0; i < points.length; i += this.config.position.batchMax) {
      batches.push({ v: 1, id: randomUUID(), fleet: this.ref.fleet, vehicle: this.ref.vehicle, alarmId, points: points.slice(i, i + this.config.position.batchMax) });
    }
    try {
      this.outbox.write(lane, () => {
        for (const msg of batches) this.outbox.append({ id: msg.id, lane, topic: uplinkTopic(this.ref, 'position'), payload: encode(msg) });
      });
    } catch (err) {
      const full = err instanceof OutboxFullError;
      this.log.error({ event: 'position.store-failed', lane, points: points.length, err: (err as Error).message }, 'could not store a track batch');
      try {
        this.appendDiag({ event: 'dropped', affectedLane: lane, count: batches.length, reason: `${points.length} track points not stored: ${full ? 'outbox full' : (err as Error).message}` });
      } catch {
        // the disk refuses even that: the log line above is all there is
      }
      return;
    }
    this.log.debug({ event: 'position.stored', lane, alarmId, points: points.length, batches: batches.length }, 'track batch stored');
    this.uplink.kick();
  }
}
