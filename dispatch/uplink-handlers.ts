// What dispatch does with each kind of uplink message, one handler per kind
// of protocol/kinds.ts UPLINK (the type makes a forgotten kind a compile
// error). By the time a handler runs, the receiver has decoded the payload
// whole with the kind's schema, checked that it names the vehicle of its
// topic and that it came in one of the kind's lanes. Lane messages are taken
// exactly once (store.accept) and receipted after their effect is committed.

import type { Logger } from 'pino';
import { monoMs } from '../common/log.ts';
import type { UplinkWire } from '../protocol/kinds.ts';
import { type AlarmMessage, AlarmMessageSchema, type Envelope, type RepeatMessage } from '../protocol/messages.ts';
import { alarmSigningText } from '../protocol/signed-evidence.ts';
import type { UplinkKind, VehicleRef } from '../protocol/topics.ts';
import type { SignatureBook } from './signatures.ts';
import type { DispatchStore, StoredAlarm } from './store.ts';

/** What the handlers need of the receiver. */
export interface UplinkContext {
  store: DispatchStore;
  /** Alarm records' signatures, checked and kept (dispatch/signatures.ts). */
  signatures: SignatureBook;
  log: Logger;
  /** Refuse the message in hand, with the reason (logged, counted). */
  reject(reason: string): void;
  /** Tell the bus this lane message is committed (batched per vehicle within a tick). */
  receipt(ref: VehicleRef, env: Envelope, upTo: number, id: string): void;
  /** When the message in hand came off the socket (the latency bench's breakdown). */
  arrivedMonoMs(): number;
  alarmReceived(alarm: AlarmMessage, atMonoMs: number): void;
  repeatReceived(repeat: RepeatMessage): void;
  acksSeen(alarmIds: string[]): void;
  /** Publish an acknowledgement (already recorded) to its bus. */
  sendAck(alarm: StoredAlarm): void;
  /** The bus came online: send it what it is owed (acks, footage requests). */
  busOnline(ref: VehicleRef): void;
}

export type UplinkHandlers = { [K in UplinkKind]: (msg: UplinkWire<K>, ref: VehicleRef) => void };

export function uplinkHandlers(c: UplinkContext): UplinkHandlers {
  const alarm = (expected: 'emergency' | 'incident') => (m: UplinkWire<'alarm'>, ref: VehicleRef) => {
    if (m.kind !== expected) return c.reject(`kind "${m.kind}" on the ${expected === 'emergency' ? 'alarm' : 'incident'} topic`);
    // Alarms are keyed by (fleet, vehicle, id), the vehicle from the topic: an id another vehicle used
    // (a hostile or broken bus) is another alarm, stored beside it (dispatch/store-schema.ts).
    let fresh = false;
    const { upTo } = c.store.accept(ref, m, () => {
      fresh = c.store.addAlarm(m);
      // The record as the unit made it (the message's own fields, not the envelope's) and its signature, kept in the
      // alarm's own transaction: one fsync on the alarm's path. Checked once the receipt is on its way (below).
      if (fresh) {
        const record = Object.fromEntries(Object.keys(AlarmMessageSchema.shape).map((k) => [k, (m as Record<string, unknown>)[k]]));
        c.signatures.keep('alarm', ref, m.id, alarmSigningText(record), m.signature);
      }
    });
    const at = monoMs();
    if (fresh) {
      c.log.info(
        { event: `${m.kind}.received`, alarmId: m.id, fleet: ref.fleet, vehicle: ref.vehicle, route: m.route, fix: m.fix, seq: m.seq, stepMonoMs: at, arrivedMonoMs: c.arrivedMonoMs() },
        m.kind === 'emergency' ? 'EMERGENCY alarm received' : 'incident received',
      );
      c.alarmReceived(m, at);
    } else {
      c.log.info({ event: 'alarm.duplicate', alarmId: m.id, fleet: ref.fleet, vehicle: ref.vehicle, seq: m.seq }, 'duplicate alarm, receipted again');
      const stored = c.store.get(m.id, ref);
      if (stored?.ackAt && !stored.ackSeenAt) c.sendAck(stored);
    }
    c.receipt(ref, m, upTo, m.id);
    // After the receipt's flush (queued first): the verdict costs the alarm nothing.
    if (fresh) {
      setImmediate(() => {
        // The store closed in between (the receiver stopping): checked at the next start (SignatureBook.checkPending).
        if (!c.store.db.open) return;
        const verdict = c.signatures.check('alarm', ref, m.id, new Date(m.raisedAt));
        if (!verdict.startsWith('verified')) c.log.warn({ event: 'alarm.signature', alarmId: m.id, fleet: ref.fleet, vehicle: ref.vehicle, verdict }, `alarm record ${verdict}`);
      });
    }
  };

  return {
    alarm: alarm('emergency'),
    incident: alarm('incident'),

    repeat: (m, ref) => {
      const lane = m.kind === 'emergency' ? 'alarm' : 'incident';
      if (m.lane !== lane) return c.reject(`lane "${m.lane}" for a repeat of an ${m.kind}`);
      const result: { outcome: ReturnType<DispatchStore['addRepeat']> } = { outcome: 'duplicate' };
      // A refused repeat is still taken out of the lane (receipted), or the bus would send it for ever.
      const { upTo } = c.store.accept(ref, m, () => {
        result.outcome = c.store.addRepeat(m);
      });
      const outcome = result.outcome;
      if (typeof outcome === 'object') {
        c.reject(outcome.refused);
      } else if (outcome === 'new') {
        const stored = c.store.get(m.alarmId, ref);
        c.log.warn(
          { event: `${m.kind}.repeat`, alarmId: m.alarmId, count: m.count, heldMs: m.heldMs, fleet: ref.fleet, vehicle: ref.vehicle, fix: m.fix, acknowledged: stored?.ackAt != null },
          `${m.kind === 'emergency' ? 'EMERGENCY' : 'incident'} button pressed again (press ${m.count})${stored?.ackAt ? ' after the acknowledgement was sent' : ''}`,
        );
        c.repeatReceived(m);
      }
      c.receipt(ref, m, upTo, m.id);
    },

    position: (m, ref) => {
      let added = 0;
      const { fresh, upTo } = c.store.accept(ref, m, () => {
        added = c.store.addPosition(m);
      });
      c.log.debug(
        { event: 'position.received', id: m.id, lane: m.lane, seq: m.seq, alarmId: m.alarmId, points: m.points.length, added, fresh, fleet: ref.fleet, vehicle: ref.vehicle },
        'track points',
      );
      c.receipt(ref, m, upTo, m.id);
    },

    diag: (m, ref) => {
      const { fresh, upTo } = c.store.accept(ref, m, () => {
        c.store.addDiag(m);
      });
      if (fresh) {
        c.log.warn(
          { event: 'bus.diag', fleet: ref.fleet, vehicle: ref.vehicle, diag: m.event, lane: m.affectedLane, count: m.count, reason: m.reason },
          `bus ${ref.fleet}/${ref.vehicle}: ${m.event} ${m.reason}`,
        );
      }
      c.receipt(ref, m, upTo, m.id);
    },

    footage: (m, ref) => {
      const result: { outcome: ReturnType<DispatchStore['footage']['answer']> } = { outcome: 'duplicate' };
      // A refused answer is still taken out of the lane (receipted), or the bus would send it for ever.
      const { upTo } = c.store.accept(ref, m, () => {
        result.outcome = c.store.footage.answer(ref, m);
      });
      const outcome = result.outcome;
      if (typeof outcome === 'object') c.reject(outcome.refused);
      else if (outcome === 'new') {
        c.log.info(
          { event: 'footage.answered', requestId: m.requestId, camera: m.camera, status: m.status, reason: m.reason, fileId: m.fileId, fleet: ref.fleet, vehicle: ref.vehicle },
          `bus ${ref.fleet}/${ref.vehicle}: footage ${m.status}: ${m.reason}`,
        );
      }
      c.receipt(ref, m, upTo, m.id);
    },

    receipt: (m, ref) => {
      // Only this vehicle's alarms: a bus cannot mark another bus's acknowledgement as seen.
      c.store.markAckSeen(m.acks, ref);
      c.log.info({ event: 'ack.seen', alarmIds: m.acks, fleet: ref.fleet, vehicle: ref.vehicle }, 'bus confirmed acknowledgement');
      c.acksSeen(m.acks);
    },

    status: (m, ref) => {
      c.store.vehicles.setStatus(ref, m);
      const faults = m.health?.faults;
      c.log[faults?.length ? 'warn' : 'info'](
        { event: 'vehicle.status', fleet: ref.fleet, vehicle: ref.vehicle, state: m.state, ...(faults ? { faults } : {}) },
        `vehicle ${m.state}${faults?.length ? ` with faults: ${faults.join(', ')}` : ''}`,
      );
      if (m.state !== 'online') return;
      // The bus lists the alarms its journal holds open: any dispatch acknowledged lost its ack on the bus
      // (a write lost to a power cut, a journal restored from a backup), so it is sent again.
      const reopened = m.openAlarms?.length ? c.store.reopenAcks(ref, m.openAlarms) : [];
      if (reopened.length) {
        c.log.warn(
          { event: 'ack.lost-on-bus', fleet: ref.fleet, vehicle: ref.vehicle, alarmIds: reopened },
          `bus ${ref.fleet}/${ref.vehicle} lists as open ${reopened.length} alarm(s) dispatch acknowledged: sending the acknowledgement again`,
        );
      }
      c.busOnline(ref);
    },
  };
}
