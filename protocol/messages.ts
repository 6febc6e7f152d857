// Message schemas shared by the bus and dispatch. Every payload is JSON with
// `v: 1`; anything that does not parse is rejected whole with a reason, never
// half-applied. A later version adds fields (receivers ignore unknown ones);
// a breaking change gets a new topic version (busguard/v2/...).

import { z } from 'zod';
import { ID_PATTERN } from './topics.ts';
import { LANES } from './lanes.ts';
import { EvidenceSignatureSchema } from './signed-evidence.ts';
import { HealthSchema } from './health.ts';

const isoTime = z.iso.datetime({ offset: true });
const uuid = z.uuid();
const id = z.string().regex(ID_PATTERN, 'letters, digits, "_" or "-", 1 to 64 characters');

export const FixSchema = z.object({
  /** Receiver says the fix is good (RMC 'A', GGA quality > 0). */
  valid: z.boolean(),
  lat: z.number().min(-90).max(90),
  lon: z.number().min(-180).max(180),
  altM: z.number().nullable(),
  speedMps: z.number().min(0).nullable(),
  trackDeg: z.number().min(0).lt(360).nullable(),
  /** UTC time of the fix as the receiver gave it; null when the receiver gave no date. */
  time: isoTime.nullable(),
  /** Seconds between the fix and the moment this message was made. */
  ageS: z.number().min(0),
  /** The fix is older than the agent's staleness limit. */
  stale: z.boolean(),
  sats: z.number().int().min(0).nullable(),
  hdop: z.number().min(0).nullable(),
});
export type Fix = z.infer<typeof FixSchema>;

/**
 * Where a record's UTC time comes from: 'gps' = the head unit's clock
 * corrected by its measured offset to GPS time (firmware/clock.ts);
 * 'system' = the head unit's clock alone, before the first timed fix.
 */
export const TIME_SOURCES = ['gps', 'system'] as const;
export type TimeSource = (typeof TIME_SOURCES)[number];

export const ALARM_KINDS = ['emergency', 'incident'] as const;
export type AlarmKind = (typeof ALARM_KINDS)[number];

/** An emergency alarm (topic up/alarm) or a non-emergency incident (topic up/incident). */
export const AlarmMessageSchema = z.object({
  v: z.literal(1),
  id: uuid,
  kind: z.enum(ALARM_KINDS),
  fleet: id,
  vehicle: id,
  /** The line the bus is running, from the agent's config. */
  route: z.string().max(64).nullable(),
  /** When the press pattern was confirmed (UTC; see timeSource). */
  raisedAt: isoTime,
  timeSource: z.enum(TIME_SOURCES),
  /** How long the button was held (emergency) or 0 for a double press. */
  heldMs: z.number().int().min(0),
  /** The latest fix; null when the agent has never had one (the alarm is raised anyway). */
  fix: FixSchema.nullable(),
  /** The unit's signature of this record (protocol/signed-evidence.ts); absent on a unit without a certificate. */
  signature: EvidenceSignatureSchema.optional(),
});
export type AlarmMessage = z.infer<typeof AlarmMessageSchema>;

/**
 * Bus → dispatch (up/repeat, lane alarm for an emergency, incident for an
 * incident): the driver pressed again while this alarm was open. A second
 * hold may be an escalation (the attacker is still there), so it is not
 * dropped: it travels like the alarm itself (stored with fsync, drained
 * first, receipted), and dispatch shows it on the alarm. `count` is the
 * number of presses of this alarm so far, the first one included.
 */
export const RepeatMessageSchema = z.object({
  v: z.literal(1),
  /** This press (each repeat is a message of its own). */
  id: uuid,
  /** The open alarm it repeats. */
  alarmId: uuid,
  kind: z.enum(ALARM_KINDS),
  fleet: id,
  vehicle: id,
  at: isoTime,
  timeSource: z.enum(TIME_SOURCES),
  heldMs: z.number().int().min(0),
  count: z.number().int().min(2).max(1_000_000),
  fix: FixSchema.nullable(),
});
export type RepeatMessage = z.infer<typeof RepeatMessageSchema>;

/** One point of the bus's track: a thinned fix, stamped when it arrived. */
export const TrackPointSchema = z.object({
  at: isoTime,
  timeSource: z.enum(TIME_SOURCES),
  fix: FixSchema,
});
export type TrackPoint = z.infer<typeof TrackPointSchema>;

export const TRACK_BATCH_MAX = 500;

/**
 * Several track points in one message (topic up/position), oldest first;
 * `alarmId` set while an emergency is open (sent at the alarm rate then).
 */
export const PositionMessageSchema = z.object({
  v: z.literal(1),
  id: uuid,
  fleet: id,
  vehicle: id,
  alarmId: uuid.nullable(),
  points: z.array(TrackPointSchema).min(1).max(TRACK_BATCH_MAX),
});
export type PositionMessage = z.infer<typeof PositionMessageSchema>;

/**
 * Every uplink message of an outbox lane carries where it stands in its lane:
 * `seq` numbers the lane's messages 1, 2, 3... within `epoch` (one per outbox
 * database, so a re-installed bus does not collide with its old numbers), and
 * everything below `floor` is settled (confirmed, or evicted by quota and
 * reported in the diag lane): dispatch need not wait for it.
 */
export const EnvelopeSchema = z.object({
  lane: z.enum(LANES),
  epoch: z.string().regex(/^[0-9a-f]{16}$/, '16 hex digits'),
  /** 0 for a message the bus could not store (disk full): it is receipted by id instead. */
  seq: z.number().int().min(0),
  floor: z.number().int().min(1),
});
export type Envelope = z.infer<typeof EnvelopeSchema>;


/**
 * Dispatch → bus (down/receipt): per lane, every message up to this seq of
 * this epoch is committed at dispatch. Only this, never the broker's PUBACK,
 * lets the bus drop messages from its outbox.
 */
export const ReceiptMessageSchema = z.object({
  v: z.literal(1),
  epoch: EnvelopeSchema.shape.epoch,
  lanes: z.partialRecord(z.enum(LANES), z.number().int().min(0)),
  /** Messages sent with seq 0 (not in the outbox), receipted by id. */
  ids: z.array(uuid).max(1000).optional(),
});
export type ReceiptMessage = z.infer<typeof ReceiptMessageSchema>;

/** A diagnostics record (lane diag, topic up/diag): what the bus dropped and why, and other faults. */
export const DiagMessageSchema = z.object({
  v: z.literal(1),
  id: uuid,
  fleet: id,
  vehicle: id,
  at: isoTime,
  event: z.string().min(1).max(64),
  /** For events "evicted" and "dropped": which lane lost what. */
  affectedLane: z.enum(LANES).optional(),
  count: z.number().int().min(0).optional(),
  bytes: z.number().int().min(0).optional(),
  /** The lane seqs dropped, as [from, to] ranges (one record collects a whole outage's drops). */
  ranges: z.array(z.tuple([z.number().int().min(1), z.number().int().min(1)])).max(1000).optional(),
  reason: z.string().max(500),
});
export type DiagMessage = z.infer<typeof DiagMessageSchema>;

/** Dispatch → bus (down/ack): a dispatcher has acknowledged the alarm. */
export const AckMessageSchema = z.object({
  v: z.literal(1),
  alarmId: uuid,
  by: z.string().min(1).max(64),
  at: isoTime,
});
export type AckMessage = z.infer<typeof AckMessageSchema>;

/** Bus → dispatch (up/receipt): the bus has applied these acks (by alarm id). */
export const BusReceiptMessageSchema = z.object({
  v: z.literal(1),
  acks: z.array(uuid).min(1).max(1000),
});
export type BusReceiptMessage = z.infer<typeof BusReceiptMessageSchema>;

/** Retained (up/status); the last will publishes state "offline". */
export const StatusMessageSchema = z.object({
  v: z.literal(1),
  state: z.enum(['online', 'offline']),
  /** For "online": when it came online. For the will: when the session began. */
  at: isoTime,
  agent: z.string().max(64),
  /**
   * With "online": the alarms and incidents the bus's journal holds open (not
   * acknowledged). Dispatch re-sends the acknowledgement of any it has
   * acknowledged: the bus and dispatch then agree again even when one write
   * on the bus was lost (a power cut, a restored backup), and no lost ack can
   * leave the button refusing new alarms. Absent from buses before it was added.
   */
  openAlarms: z.array(uuid).max(100).optional(),
  /** With "online": the unit's health (protocol/health.ts), sent again whenever a fault comes or goes. */
  health: HealthSchema.optional(),
});
export type StatusMessage = z.infer<typeof StatusMessageSchema>;

/** The longest window a footage request may ask for (a dispatcher asks again for more). */
export const FOOTAGE_MAX_WINDOW_S = 600;
/** How far after now a window may end: the bus waits that long at most for it to be recorded. */
export const FOOTAGE_MAX_AHEAD_S = 120;

/**
 * Dispatch → bus (down/footage): send the video of [from, to] from the ring
 * of one camera (or of each, camera null). Re-sent by dispatch until the bus
 * answers; the bus handles each id once.
 *
 * The schema checks the shape only; footageWindowProblem() checks the window.
 * They are apart so that a well-formed request with a bad window (a newer
 * dispatch allowing longer windows, a clock far off) is answered 'failed'
 * with the reason instead of being dropped: dropped, it would be re-sent
 * every time the bus comes online, and never answered.
 */
export const FootageRequestSchema = z.object({
  v: z.literal(1),
  id: uuid,
  from: isoTime,
  to: isoTime,
  camera: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'camera: letters, digits, "_" or "-", 1 to 32 characters').nullable(),
  by: z.string().min(1).max(64),
  at: isoTime,
});
export type FootageRequest = z.infer<typeof FootageRequestSchema>;

/**
 * Why a footage window cannot be served as asked, in one sentence, or null
 * when it can: from before to, at most maxWindowS long, ending at most
 * maxAheadS after nowMs (the clock of whoever checks: dispatch before sending,
 * the bus on receipt).
 */
export function footageWindowProblem(
  w: { from: string; to: string },
  o: { nowMs: number; maxWindowS?: number; maxAheadS?: number },
): string | null {
  const fromMs = Date.parse(w.from);
  const toMs = Date.parse(w.to);
  const maxWindowS = o.maxWindowS ?? FOOTAGE_MAX_WINDOW_S;
  const maxAheadS = o.maxAheadS ?? FOOTAGE_MAX_AHEAD_S;
  if (!Number.isFinite(fromMs) || !Number.isFinite(toMs)) return `the window ${w.from} to ${w.to} is not two times`;
  if (fromMs >= toMs) return `from (${w.from}) must be before to (${w.to})`;
  if (toMs - fromMs > maxWindowS * 1000) return `the window is ${((toMs - fromMs) / 1000).toFixed(0)} s; it may be at most ${maxWindowS} s (ask again for the rest)`;
  if (toMs - o.nowMs > maxAheadS * 1000) {
    return `the window ends at ${w.to}, ${((toMs - o.nowMs) / 1000).toFixed(0)} s after now (${new Date(o.nowMs).toISOString()}); it may end at most ${maxAheadS} s ahead: ask again once it has been recorded`;
  }
  return null;
}

export const FOOTAGE_STATUSES = ['accepted', 'partial', 'unavailable', 'failed'] as const;

/**
 * Bus → dispatch (up/footage, lane clip): the answer to a footage request,
 * one per camera. accepted/partial: a clip is on its way as file `fileId`
 * (partial: the reason says which parts are missing and why); unavailable:
 * the window is no longer (or not) in the ring; failed: the bus could not
 * cut it.
 */
export const FootageAnswerSchema = z.object({
  v: z.literal(1),
  id: uuid,
  fleet: id,
  vehicle: id,
  requestId: uuid,
  camera: z.string().max(32).nullable(),
  status: z.enum(FOOTAGE_STATUSES),
  reason: z.string().max(1000),
  /** What the camera's ring holds now, when known. */
  ring: z.object({ from: isoTime, to: isoTime }).nullable(),
  fileId: id.nullable(),
  at: isoTime,
  /**
   * Every camera this request covers on the bus (each answers on its own),
   * so that dispatch knows when it has every answer. Absent from buses
   * before it was added.
   */
  cameras: z.array(z.string().max(32)).max(16).optional(),
});
export type FootageAnswer = z.infer<typeof FootageAnswerSchema>;

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

/** Parse a payload into a typed message, or say exactly why not. */
export function decode<T>(schema: z.ZodType<T>, payload: Buffer | string): Decoded<T> {
  const text = typeof payload === 'string' ? payload : payload.toString('utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `not JSON (${(err as Error).message}): ${preview(text)}` };
  }
  const parsed = schema.safeParse(json);
  if (parsed.success) return { ok: true, value: parsed.data };
  return { ok: false, error: formatIssues(parsed.error.issues) };
}

export function encode(message: object): Buffer {
  return Buffer.from(JSON.stringify(message));
}

export function formatIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}

function preview(text: string): string {
  const oneLine = text.replace(/[^\x20-\x7e]/g, '?');
  return oneLine.length > 80 ? `${oneLine.slice(0, 80)}…` : oneLine;
}

// Lane messages as they travel: the stored message with the envelope in front (gateway/uplink.ts withEnvelope).
export const AlarmWireSchema = AlarmMessageSchema.extend(EnvelopeSchema.shape);
export const RepeatWireSchema = RepeatMessageSchema.extend(EnvelopeSchema.shape);
export const PositionWireSchema = PositionMessageSchema.extend(EnvelopeSchema.shape);
export const DiagWireSchema = DiagMessageSchema.extend(EnvelopeSchema.shape);
export const FootageAnswerWireSchema = FootageAnswerSchema.extend(EnvelopeSchema.shape);
