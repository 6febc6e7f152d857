// Evidence files (snapshots, clips) over MQTT, in the framing of EMQX's MQTT
// file transfer, so a fleet on EMQX can take them without our receiver:
//
//   {base}/{fileId}/init                       JSON: name, size, checksum, user_data
//   {base}/{fileId}/{offset}/{sha256 of it}     the raw bytes at that offset
//   {base}/{fileId}/fin/{size}/{sha256}         empty
//
// {base} is "$file" for EMQX (its broker takes the commands itself and answers
// in the PUBACK reason code), or, by default, the vehicle's own subtree
// "busguard/v1/{fleet}/{vehicle}/up/file": the one Mosquitto ACL pattern that
// confines a bus to its own topics then confines it to its own files, and
// dispatch learns which bus sent a file from the topic, not from anything the
// payload claims. Dispatch confirms on busguard/v1/{fleet}/{vehicle}/down/file
// with a FileReceipt: which byte ranges it holds on disk, and at fin whether
// the SHA-256 matched. Only that receipt, never a PUBACK, counts as held
// (Mosquitto drops queued QoS 1 messages it has PUBACKed: FIELD-NOTES).

import { z } from 'zod';
import { FixSchema, TIME_SOURCES } from './messages.ts';
import { EvidenceSignatureSchema } from './signed-evidence.ts';
import { ID_PATTERN, ROOT, VERSION, type VehicleRef, downlinkTopic, vehicleBase } from './topics.ts';

/** Where the file topics live: under the vehicle's uplink (Mosquitto + our dispatch) or EMQX's "$file". */
export const FILE_PREFIXES = ['vehicle', '$file'] as const;
export type FilePrefix = (typeof FILE_PREFIXES)[number];

export const EVIDENCE_KINDS = ['snapshot', 'clip'] as const;
export type EvidenceKind = (typeof EVIDENCE_KINDS)[number];

/** EMQX's default max_packet_size (whole packet). */
export const EMQX_DEFAULT_MAX_PACKET_BYTES = 1024 * 1024;
/** message_size_limit in protocol/mosquitto/mosquitto.conf (Mosquitto counts the payload only). */
export const SHIPPED_MOSQUITTO_LIMIT_BYTES = 262_144;
/**
 * What a segment PUBLISH carries besides its payload, at most: fixed header
 * (5), topic length (2), the longest topic our ids allow (~300: 64-character
 * fleet, vehicle and file ids, a 16-digit offset, a 64-digit checksum), packet
 * id (2), properties (a few). Rounded up: EMQX counts the whole packet against
 * its limit, Mosquitto only the payload, and the segment must fit both.
 */
export const SEGMENT_OVERHEAD_BYTES = 512;
/** EMQX refuses longer file names (emqx_ft_schema MAX_FILENAME_BYTELEN). */
export const MAX_NAME_BYTES = 240;

export const FileIdSchema = z.string().regex(ID_PATTERN, 'letters, digits, "_" or "-", 1 to 64 characters');
const Sha256Schema = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, 'a SHA-256 as 64 hex digits')
  .transform((s) => s.toLowerCase());
const FileNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/, 'a plain file name: letters, digits, ".", "_", "-", not starting with "."')
  .refine((s) => Buffer.byteLength(s) <= MAX_NAME_BYTES, `at most ${MAX_NAME_BYTES} bytes`);

/** Why this file exists: what init carries in `user_data` (EMQX stores it with the file). */
export const EvidenceMetaSchema = z.object({
  v: z.literal(1),
  kind: z.enum(EVIDENCE_KINDS),
  fleet: z.string().regex(ID_PATTERN),
  vehicle: z.string().regex(ID_PATTERN),
  /** The alarm this evidence belongs to; null for evidence taken without one. */
  alarmId: z.uuid().nullable(),
  /** When the picture or the clip's first frame was taken. */
  capturedAt: z.iso.datetime({ offset: true }),
  timeSource: z.enum(TIME_SOURCES),
  /** Where: the fix at capture (the EXIF/MP4 location inside the file says the same). */
  geotag: FixSchema.nullable(),
  mime: z.string().max(64).optional(),
  /** The footage request this clip answers (busguard dispatch footage). */
  requestId: z.uuid().optional(),
});
export type EvidenceMeta = z.infer<typeof EvidenceMetaSchema>;

/**
 * The init command's JSON (EMQX's field names). EMQX requires only `name`;
 * we also require the size and the SHA-256 (dispatch verifies against it)
 * and our `user_data`.
 */
export const InitPayloadSchema = z.object({
  name: FileNameSchema,
  size: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
  checksum: Sha256Schema,
  /** Seconds since the epoch after which EMQX may delete the file; unused by our dispatch. */
  expire_at: z.number().int().min(0).optional(),
  /** Seconds EMQX keeps loose segments; unused by our dispatch. */
  segments_ttl: z.number().int().min(1).optional(),
  user_data: EvidenceMetaSchema,
  /** The unit's signature of name, size, checksum and user_data (protocol/signed-evidence.ts); ours, not EMQX's. */
  signature: EvidenceSignatureSchema.optional(),
});
export type InitPayload = z.infer<typeof InitPayloadSchema>;

/** A byte range [start, end), end exclusive. Lists of them are kept sorted, disjoint and not touching. */
export type Range = [start: number, end: number];

const RangeSchema = z
  .tuple([z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), z.number().int().min(0).max(Number.MAX_SAFE_INTEGER)])
  .refine(([s, e]) => s < e, 'a range [start, end) with start < end');

export const FILE_RECEIPT_STATES = [
  /** Init known; `have` is what is on dispatch's disk so far. */
  'receiving',
  /** Answer to fin: ranges are missing; send what is not in `have`, then fin again. */
  'incomplete',
  /** Answer to fin: the whole file's SHA-256 did not match; dispatch discarded it all (attempt + 1): send it all again. */
  'corrupt',
  /** Verified against the SHA-256 and stored. */
  'complete',
  /** Dispatch has no init for this fileId (lost, or never sent): send init again. */
  'unknown',
  /** Dispatch will never take this file (too large, fileId reused for other content...): see `reason`. */
  'rejected',
] as const;
export type FileReceiptState = (typeof FILE_RECEIPT_STATES)[number];

/** Dispatch → bus (down/file): where one file stands at dispatch. */
export const FileReceiptSchema = z.object({
  v: z.literal(1),
  fileId: FileIdSchema,
  state: z.enum(FILE_RECEIPT_STATES),
  /**
   * Bumped each time dispatch discards the file (checksum mismatch). A receipt
   * of an older attempt than the bus has seen is stale and ignored; a newer
   * one replaces what the bus believes is held.
   */
  attempt: z.number().int().min(0),
  /** Byte ranges dispatch holds on disk (committed, fsync'd). */
  have: z.array(RangeSchema).max(4096),
  /** Segments dispatch refused (bad per-segment checksum, ...): send them again now, without waiting for a timeout. */
  resend: z.array(RangeSchema).max(4096).optional(),
  reason: z.string().max(500).optional(),
  /**
   * This receipt answers an init, and was made after it: `have` includes all
   * the bus sent before that init. The bus sends segments only after such an
   * answer, so it skips what arrived while their receipts were lost.
   */
  init: z.literal(true).optional(),
});
export type FileReceipt = z.infer<typeof FileReceiptSchema>;

// ---------------------------------------------------------------- topics

export function fileTopicBase(prefix: FilePrefix, ref: VehicleRef): string {
  return prefix === '$file' ? '$file' : `${vehicleBase(ref)}/up/file`;
}

export function initTopic(prefix: FilePrefix, ref: VehicleRef, fileId: string): string {
  return `${fileTopicBase(prefix, ref)}/${fileId}/init`;
}

export function segmentTopic(prefix: FilePrefix, ref: VehicleRef, fileId: string, offset: number, checksum?: string): string {
  return `${fileTopicBase(prefix, ref)}/${fileId}/${offset}${checksum ? `/${checksum}` : ''}`;
}

export function finTopic(prefix: FilePrefix, ref: VehicleRef, fileId: string, size: number, checksum?: string): string {
  return `${fileTopicBase(prefix, ref)}/${fileId}/fin/${size}${checksum ? `/${checksum}` : ''}`;
}

/** What dispatch subscribes to (wrap in $share/{group}/ with sharedFilter). */
export function dispatchFileFilter(): string {
  return `${ROOT}/${VERSION}/+/+/up/file/#`;
}

/** Where dispatch answers about a vehicle's files. */
export function fileReceiptTopic(ref: VehicleRef): string {
  return downlinkTopic(ref, 'file');
}

export type FileCommand =
  | { type: 'init' }
  | { type: 'segment'; offset: number; checksum: string | null }
  | { type: 'fin'; size: number; checksum: string | null };

export type ParsedFileTopic =
  | { ok: true; ref: VehicleRef | null; fileId: string; command: FileCommand }
  | { ok: false; error: string };

const INTEGER = /^(0|[1-9][0-9]{0,15})$/;
const HEX64 = /^[0-9a-fA-F]{64}$/;

/**
 * Parse a file-transfer topic of either prefix. null: not a file topic at
 * all (someone else's business); {ok: false}: a file topic that is malformed.
 */
export function parseFileTopic(topic: string): ParsedFileTopic | null {
  const parts = topic.split('/');
  let ref: VehicleRef | null;
  let tail: string[];
  if (parts[0] === '$file') {
    ref = null;
    tail = parts.slice(1);
  } else if (parts.length >= 7 && parts[0] === ROOT && parts[1] === VERSION && parts[4] === 'up' && parts[5] === 'file') {
    const [, , fleet, vehicle] = parts as [string, string, string, string];
    if (!ID_PATTERN.test(fleet) || !ID_PATTERN.test(vehicle)) return { ok: false, error: `fleet or vehicle id not valid in ${topic}` };
    ref = { fleet, vehicle };
    tail = parts.slice(6);
  } else {
    return null;
  }
  const [fileId, verb, a, b, ...rest] = tail;
  if (fileId === undefined || !ID_PATTERN.test(fileId)) return { ok: false, error: `file id "${fileId ?? ''}" not valid: letters, digits, "_" or "-", 1 to 64 characters` };
  if (rest.length > 0 || verb === undefined) return { ok: false, error: 'expected {fileId}/init, {fileId}/{offset}[/{checksum}] or {fileId}/fin/{size}[/{checksum}]' };
  if (verb === 'init') {
    if (a !== undefined) return { ok: false, error: 'init takes nothing after it' };
    return { ok: true, ref, fileId, command: { type: 'init' } };
  }
  if (verb === 'fin') {
    if (a === undefined || !INTEGER.test(a)) return { ok: false, error: `fin size "${a ?? ''}" is not a whole number of bytes` };
    if (b !== undefined && !HEX64.test(b)) return { ok: false, error: `fin checksum "${b}" is not a SHA-256 (64 hex digits)` };
    return { ok: true, ref, fileId, command: { type: 'fin', size: Number(a), checksum: b?.toLowerCase() ?? null } };
  }
  if (!INTEGER.test(verb)) return { ok: false, error: `"${verb}" is neither init, fin nor a byte offset` };
  if (b !== undefined) return { ok: false, error: 'segment topic has too many levels' };
  if (a !== undefined && !HEX64.test(a)) return { ok: false, error: `segment checksum "${a}" is not a SHA-256 (64 hex digits)` };
  return { ok: true, ref, fileId, command: { type: 'segment', offset: Number(verb), checksum: a?.toLowerCase() ?? null } };
}

/** Why a segment size cannot work with a broker's packet limit, or null when it can. */
export function segmentSizeProblem(segmentBytes: number, brokerMaxPacketBytes: number): string | null {
  const max = brokerMaxPacketBytes - SEGMENT_OVERHEAD_BYTES;
  if (segmentBytes > max) {
    return `segmentBytes ${segmentBytes} does not fit the broker's packet limit of ${brokerMaxPacketBytes} bytes with ${SEGMENT_OVERHEAD_BYTES} bytes of topic and header: at most ${max}`;
  }
  return null;
}

// ---------------------------------------------------------------- hashes

export { hashFile, sha256Hex } from '../common/hash.ts';

// ---------------------------------------------------------------- ranges

/** Sort, drop empty ranges, and merge overlapping or touching ones. */
export function normalizeRanges(ranges: readonly Range[]): Range[] {
  const sorted = ranges.filter(([s, e]) => e > s).map(([s, e]): Range => [s, e]).sort((x, y) => x[0] - y[0]);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out.at(-1);
    if (last && r[0] <= last[1]) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

export function unionRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  return normalizeRanges([...a, ...b]);
}

/** What of [0, size) the ranges do not cover. */
export function missingRanges(have: readonly Range[], size: number): Range[] {
  const out: Range[] = [];
  let at = 0;
  for (const [s, e] of normalizeRanges(have)) {
    if (s >= size) break;
    if (s > at) out.push([at, s]);
    at = Math.max(at, e);
  }
  if (at < size) out.push([at, size]);
  return out;
}

export function coversAll(have: readonly Range[], size: number): boolean {
  return missingRanges(have, size).length === 0;
}

/** Whether [start, end) lies wholly inside the ranges. */
export function containsRange(have: readonly Range[], [start, end]: Range): boolean {
  return have.some(([s, e]) => s <= start && end <= e);
}

export function bytesIn(ranges: readonly Range[]): number {
  return normalizeRanges(ranges).reduce((n, [s, e]) => n + e - s, 0);
}
