// The driver's alarms, from the confirmed press to the acknowledgement:
// raise (durable first: journal row and outbox row in one fsync'd
// transaction, then published, then shown), a press again while one is open
// sent as a repeat of it, alarms the disk could not hold sent from memory,
// dispatch's receipts (delivered) and acknowledgements (acknowledged). Each
// step is a journey event (`alarm.confirmed`, `alarm.stored`, …) and a change
// the LED follows (led-policy.ts).

import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { monoMs } from '../common/log.ts';
import type { ButtonInput, PressOutcome } from '../hal/panel/types.ts';
import { laneItem } from '../gateway/lane-item.ts';
import type { Outbox } from '../gateway/outbox.ts';
import type { Uplink } from '../gateway/uplink.ts';
import type { AckMessage, AlarmKind, AlarmMessage, Fix, RepeatMessage } from '../protocol/messages.ts';
import { alarmSigningText } from '../protocol/signed-evidence.ts';
import type { VehicleRef } from '../protocol/topics.ts';
import type { AlarmJournal, JournalEntry } from './alarm-journal.ts';
import type { GpsClock } from './clock.ts';
import type { LedInputs, OpenState } from './led-policy.ts';

export type JourneyStep = 'confirmed' | 'stored' | 'delivered' | 'acknowledged';

export interface JourneyEvent {
  alarmId: string;
  kind: AlarmKind;
  step: JourneyStep;
  /** CLOCK_MONOTONIC ms, comparable across processes (common/log.ts). */
  monoMs: number;
  alarm?: AlarmMessage;
  ack?: AckMessage;
  /** For 'stored': when the publish was handed to the socket (the alarm-latency bench's breakdown). */
  publishedMonoMs?: number;
}

export interface AlarmsEvents {
  journey: [JourneyEvent];
  /** A press while an alarm of that kind is open: sent as a repeat, no second alarm. */
  duplicatePress: [kind: AlarmKind, openAlarmId: string];
  /** Something the LED shows changed; `flash`: show the 'registered' flurry first. */
  changed: [flash: boolean];
}

export interface AlarmsOptions {
  ref: VehicleRef;
  route: string | null;
  journal: AlarmJournal;
  outbox: Outbox;
  uplink: Uplink;
  clock: GpsClock;
  /** The latest fix with its age (null: none yet). */
  fix: () => Fix | null;
  /** Which input raises an incident (the second input, or a double press of the panic button). */
  incidentInput: ButtonInput;
  /** Tell whoever pressed what the press did (the sim panel's reply). */
  report: (outcome: PressOutcome) => void;
  /** The alarm is stored and on its way: gather its evidence (press at this monotonic time). */
  evidence: (alarm: AlarmMessage, pressMono: number) => void;
  /** How long the LED shows an acknowledgement (alarm.acknowledgedShowS). */
  acknowledgedShowMs: number;
  log: Logger;
}

type VolatileAlarm = { kind: AlarmKind; state: 'sending' | 'delivered' | 'acknowledged'; at: number };

export class Alarms extends EventEmitter<AlarmsEvents> {
  /**
   * Alarms the disk could not hold (ENOSPC, I/O error): sent from memory and
   * re-sent until dispatch receipts them, shown as "fault" on the LED until
   * then. They survive as long as this process does.
   */
  private readonly volatile = new Map<string, VolatileAlarm>();

  constructor(private readonly o: AlarmsOptions) {
    super();
  }

  /**
   * Press pattern confirmed: make the alarm durable, then send it, then tell
   * the driver. A press while an alarm of that kind is open is sent as a
   * repeat of it instead. Returns the alarm's id.
   */
  raise(kind: AlarmKind, heldMs: number, confirmedAtMs = performance.now()): string {
    const { o } = this;
    const confirmedMono = monoMs() - (performance.now() - confirmedAtMs);
    const input = kind === 'incident' ? o.incidentInput : 'panic';
    const open = o.journal.open(kind)[0];
    if (open) return this.repeat(open, kind, heldMs, confirmedAtMs, input);
    const stamp = o.clock.stampAt(confirmedAtMs);
    const alarm: AlarmMessage = {
      v: 1,
      id: randomUUID(),
      kind,
      fleet: o.ref.fleet,
      vehicle: o.ref.vehicle,
      route: o.route,
      raisedAt: stamp.iso,
      timeSource: stamp.timeSource,
      heldMs: Math.round(heldMs),
      fix: o.fix(),
    };
    // Signed by the unit before it is stored: the record dispatch keeps is the one the unit made.
    const signer = o.uplink.signer;
    if (signer) alarm.signature = signer.sign(alarmSigningText(alarm));
    this.journey({ alarmId: alarm.id, kind, step: 'confirmed', monoMs: confirmedMono, alarm });
    const lane = kind === 'emergency' ? 'alarm' : 'incident';
    const item = laneItem(o.ref, lane, lane, alarm);
    try {
      o.outbox.write(lane, () => {
        o.journal.insert({ id: alarm.id, kind, raisedAt: alarm.raisedAt });
        o.outbox.append(item);
      });
    } catch (err) {
      // The disk is full or failing: the alarm still goes out, from memory.
      o.log.fatal(
        { event: 'alarm.store-failed', alarmId: alarm.id, kind, err: (err as Error).message },
        'could not store the alarm on disk: sending it from memory until dispatch confirms it',
      );
      this.volatile.set(alarm.id, { kind, state: 'sending', at: Date.now() });
      o.uplink.sendVolatile(item);
      this.emit('changed', this.hiddenBy(kind));
      o.report({ input, result: 'raised', kind, alarmId: alarm.id, detail: `${kind} ${alarm.id} raised, NOT stored (${(err as Error).message}): sent from memory; LED fault until dispatch has it` });
      o.evidence(alarm, confirmedAtMs); // on a full disk the snapshot fails and says why; the alarm has gone already
      return alarm.id;
    }
    // Publish first: the LED, the log line and the evidence can wait a moment; the alarm's way to dispatch cannot.
    const storedMono = monoMs();
    o.uplink.kick();
    this.journey({ alarmId: alarm.id, kind, step: 'stored', monoMs: storedMono, alarm, publishedMonoMs: monoMs() });
    this.emit('changed', this.hiddenBy(kind));
    o.report({ input, result: 'raised', kind, alarmId: alarm.id, detail: `${kind} ${alarm.id} raised and stored` });
    o.evidence(alarm, confirmedAtMs);
    return alarm.id;
  }

  /**
   * The driver pressed again while `open` is open: not a second alarm, but a
   * repeat of this one, which dispatch hears (it may be an escalation). It
   * travels like the alarm (its lane, fsync'd, receipted); the LED shows the
   * repeat's own journey (stored, then delivered) after a 'registered' flurry.
   */
  private repeat(open: JournalEntry, kind: AlarmKind, heldMs: number, confirmedAtMs: number, input: ButtonInput): string {
    const { o } = this;
    const stamp = o.clock.stampAt(confirmedAtMs);
    const lane = kind === 'emergency' ? 'alarm' : 'incident';
    const msg: RepeatMessage = {
      v: 1,
      id: randomUUID(),
      alarmId: open.id,
      kind,
      fleet: o.ref.fleet,
      vehicle: o.ref.vehicle,
      at: stamp.iso,
      timeSource: stamp.timeSource,
      heldMs: Math.round(heldMs),
      count: open.presses + 1,
      fix: o.fix(),
    };
    try {
      o.outbox.write(lane, () => {
        msg.count = o.journal.repeat(open.id, msg.id);
        o.outbox.append(laneItem(o.ref, 'repeat', lane, msg));
      });
    } catch (err) {
      o.log.error({ event: 'alarm.repeat-store-failed', alarmId: open.id, kind, err: (err as Error).message }, 'could not store the repeated press: sending it from memory');
      o.uplink.sendVolatile(laneItem(o.ref, 'repeat', lane, msg));
    }
    o.uplink.kick();
    this.emit('duplicatePress', kind, open.id);
    o.log.info({ event: 'alarm.repeated', kind, alarmId: open.id, repeatId: msg.id, count: msg.count, heldMs: msg.heldMs }, `button pressed again while the ${kind} is open: sent as press ${msg.count} of it`);
    this.emit('changed', true);
    o.report({ input, result: 'repeat', kind, alarmId: open.id, detail: `${kind} ${open.id} is still open: this press was sent to dispatch as press ${msg.count} of it` });
    return open.id;
  }

  /** Dispatch holds these outbox messages (ids of alarms, repeats and others). */
  confirmed(ids: string[]): void {
    let changed = false;
    for (const id of ids) {
      const v = this.volatile.get(id);
      if (v?.state === 'sending') {
        v.state = 'delivered';
        this.journey({ alarmId: id, kind: v.kind, step: 'delivered', monoMs: monoMs() });
        changed = true;
      }
    }
    const delivered = this.o.journal.markDelivered(ids, new Date().toISOString());
    for (const id of delivered) {
      const entry = this.o.journal.get(id)!;
      this.journey({ alarmId: id, kind: entry.kind, step: 'delivered', monoMs: monoMs() });
    }
    if (changed || delivered.length) this.emit('changed', false);
  }

  /** A dispatcher acknowledged: recorded with fsync before the bus tells dispatch it has it. */
  acknowledged(ack: AckMessage): void {
    const { o } = this;
    const v = this.volatile.get(ack.alarmId);
    if (v) {
      if (v.state !== 'acknowledged') {
        v.state = 'acknowledged';
        v.at = Date.now();
        this.journey({ alarmId: ack.alarmId, kind: v.kind, step: 'acknowledged', monoMs: monoMs(), ack });
        this.emit('changed', false);
      }
      o.uplink.sendBusReceipt([ack.alarmId]);
      return;
    }
    const entry = o.journal.get(ack.alarmId);
    if (!entry) {
      o.log.warn({ event: 'ack.unknown', alarmId: ack.alarmId }, 'acknowledgement for an alarm this bus never raised');
      return;
    }
    if (o.journal.markAcknowledged(ack.alarmId, ack.by, new Date().toISOString())) {
      // The alarm stays in the outbox until its receipt: only a receipt confirms delivery.
      this.journey({ alarmId: ack.alarmId, kind: entry.kind, step: 'acknowledged', monoMs: monoMs(), ack });
      this.emit('changed', false);
    }
    o.uplink.sendBusReceipt([ack.alarmId]);
  }

  /** The open emergency's id (in the journal or only in memory), or null. */
  openEmergencyId(): string | null {
    return this.o.journal.open('emergency')[0]?.id ?? this.openVolatile('emergency')?.id ?? null;
  }

  /** Ids of the alarms the journal holds open (listed to dispatch when the bus comes online). */
  openIds(): string[] {
    return this.o.journal.open().map((a) => a.id);
  }

  /** What the LED policy needs to know of the alarms. */
  ledInputs(): Pick<LedInputs, 'emergency' | 'incident' | 'emergencyAckedAt' | 'incidentAckedAt'> {
    const open = (kind: AlarmKind): OpenState | null => {
      const a = this.o.journal.open(kind)[0] ?? this.openVolatile(kind);
      if (!a) return null;
      return a.state === 'sending' ? 'sending' : a.state === 'stored' ? 'stored' : 'delivered';
    };
    const acked = (kind: AlarmKind): number | null => {
      const at = this.o.journal.lastAcknowledged(kind)?.acknowledgedAt;
      return at ? Date.parse(at) : null;
    };
    return { emergency: open('emergency'), incident: open('incident'), emergencyAckedAt: acked('emergency'), incidentAckedAt: acked('incident') };
  }

  /** Whether the LED will not show a new alarm of this kind (an emergency, or its fresh acknowledgement, takes precedence over an incident). */
  private hiddenBy(kind: AlarmKind): boolean {
    if (kind === 'emergency') return false;
    const last = this.o.journal.lastAcknowledged();
    const freshEmergencyAck = last?.kind === 'emergency' && last.acknowledgedAt !== null && Date.parse(last.acknowledgedAt) + this.o.acknowledgedShowMs > Date.now();
    return this.openEmergencyId() !== null || freshEmergencyAck;
  }

  private openVolatile(kind: AlarmKind): { id: string; state: string } | undefined {
    for (const [id, v] of this.volatile) if (v.kind === kind && v.state !== 'acknowledged') return { id, state: v.state };
    return undefined;
  }

  private journey(e: JourneyEvent): void {
    this.o.log.info(
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
}
