// Commands from dispatch to a bus (…/down/{kind}) travel signed. Anyone who
// may publish on a bus's command topics (a stolen dispatch password, a broker
// misconfigured, a replay from a sniffed link) could otherwise empty its alarm
// lane with a forged receipt and leave the panic button refusing every new
// press. The bus acts on a command only when it is signed by a key it trusts,
// for this vehicle, for this kind of command, and not expired.
//
//   {"v":1,"to":"city/bus-1","kind":"ack","key":"dispatch-2026",
//    "by":"dispatch@control-1","exp":"2026-12-03T10:00:00.000Z",
//    "msg":"{\"v\":1,\"alarmId\":...}","sig":"<Ed25519, base64>"}
//
// `msg` is the command's own JSON (the schemas of protocol/kinds.ts) carried
// as a string, so the bytes signed are the bytes the bus then parses: nothing
// is re-serialised on either side. The signature covers a fixed context line
// and every other field, one per line (none of them can hold a newline: the
// schemas below and JSON.stringify see to it), so no field can be moved into
// another. Ed25519 through node:crypto; keys are PEM files (common/keys.ts).
//
// A person (a dispatcher, an officer) signs with a key of their own: the
// command then carries a grant, `{person, pub, key, exp, sig}`, in which a
// dispatch key the bus trusts vouches for that person's public key until
// `exp`. The bus checks the grant with the trusted key, that `by` is the
// person it names, and the command with the person's key. A person leaving
// is a grant not renewed (they last 30 days by default) or a dispatch key
// rotated; no bus needs a list of people.

import { type KeyObject, createPublicKey, sign, verify } from 'node:crypto';
import { z } from 'zod';
import { type Decoded, decode } from './messages.ts';
import { DOWNLINK_KINDS, type DownlinkKind, ID_PATTERN, type VehicleRef } from './topics.ts';

/** What a signature is for: a signature made for anything else never verifies here. */
const CONTEXT = 'busguard/v1 command';

/** A key's name: the bus's trust list and dispatch's signing key agree on it. */
export const KEY_ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** Who signed: a dispatch instance, or the person acting through it (any script: 王警官), without control characters. */
const SIGNER_PATTERN = /^[^\u0000-\u001f\u007f-\u009f]{1,128}$/u;

/** A command may be signed for at most this long (dispatch re-signs what it re-sends). */
export const MAX_COMMAND_TTL_S = 86_400;

const MAX_MSG_BYTES = 200_000;

/** What a grant's signature is for. */
const GRANT_CONTEXT = 'busguard/v1 grant';

/** A grant lasts at most this long: a person's key outlives nobody's job by more. */
export const MAX_GRANT_DAYS = 400;

export const GrantSchema = z
  .object({
    v: z.literal(1),
    person: z.string().regex(SIGNER_PATTERN, 'text without control characters, 1 to 128 characters'),
    /** The person's Ed25519 public key, SPKI DER in base64. */
    pub: z.string().regex(/^[A-Za-z0-9+/]{59}=$/, 'an Ed25519 public key (SPKI DER, base64)'),
    key: z.string().regex(KEY_ID_PATTERN, 'a key id'),
    exp: z.iso.datetime({ offset: true }),
    sig: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'an Ed25519 signature in base64'),
  })
  .strict();
export type Grant = z.infer<typeof GrantSchema>;

function grantBytes(g: Omit<Grant, 'sig'>): Buffer {
  return Buffer.from([GRANT_CONTEXT, String(g.v), g.person, g.pub, g.key, g.exp].join('\n'));
}

/** A trusted dispatch key vouches for a person's public key until `exp`. */
export function signGrant(issuer: { keyId: string; privateKey: KeyObject }, person: string, personKey: KeyObject, exp: Date): Grant {
  if (!SIGNER_PATTERN.test(person)) throw new Error(`person ${JSON.stringify(person)}: text without control characters, 1 to 128 characters`);
  const pub = createPublicKey(personKey).export({ type: 'spki', format: 'der' }).toString('base64');
  const unsigned = { v: 1 as const, person, pub, key: issuer.keyId, exp: exp.toISOString() };
  return { ...unsigned, sig: sign(null, grantBytes(unsigned), issuer.privateKey).toString('base64') };
}

export const SignedCommandSchema = z
  .object({
    v: z.literal(1),
    to: z.string().refine((s) => parseTarget(s) !== null, 'a vehicle as "{fleet}/{vehicle}"'),
    kind: z.enum(DOWNLINK_KINDS),
    key: z.string().regex(KEY_ID_PATTERN, 'a key id: letters, digits, ".", "_" or "-", 1 to 64 characters'),
    by: z.string().regex(SIGNER_PATTERN, 'text without control characters, 1 to 128 characters'),
    exp: z.iso.datetime({ offset: true }),
    msg: z.string().max(MAX_MSG_BYTES),
    sig: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, 'an Ed25519 signature in base64'),
    /** Signed by a person: the grant that vouches for their key. */
    grant: GrantSchema.optional(),
  })
  .strict();
export type SignedCommand = z.infer<typeof SignedCommandSchema>;

function parseTarget(s: string): VehicleRef | null {
  const parts = s.split('/');
  if (parts.length !== 2 || !ID_PATTERN.test(parts[0]!) || !ID_PATTERN.test(parts[1]!)) return null;
  return { fleet: parts[0]!, vehicle: parts[1]! };
}

function target(ref: VehicleRef): string {
  return `${ref.fleet}/${ref.vehicle}`;
}

function signedBytes(c: Omit<SignedCommand, 'sig' | 'grant'>): Buffer {
  return Buffer.from([CONTEXT, String(c.v), c.to, c.kind, c.key, c.by, c.exp, c.msg].join('\n'));
}

export interface CommandSigner {
  /** The key's id, as the buses' trust lists name it. */
  keyId: string;
  /** Ed25519 private key. */
  privateKey: KeyObject;
  /** Who signs: this dispatch instance (receipts) or the person acting (acks, footage requests). */
  by: string;
  /** A person signing with their own key (`privateKey`): their grant; `by` must be its person and `keyId` its key. */
  grant?: Grant;
}

/** Sign `message` (the command's JSON object) for one vehicle and kind, valid `ttlS` seconds from `now`. */
export function signCommand(signer: CommandSigner, kind: DownlinkKind, to: VehicleRef, message: object, now: Date, ttlS: number): Buffer {
  if (!KEY_ID_PATTERN.test(signer.keyId)) throw new Error(`signing key id "${signer.keyId}": letters, digits, ".", "_" or "-", 1 to 64 characters`);
  if (!SIGNER_PATTERN.test(signer.by)) throw new Error(`signer ${JSON.stringify(signer.by)}: text without control characters, 1 to 128 characters`);
  if (signer.grant && (signer.grant.person !== signer.by || signer.grant.key !== signer.keyId)) throw new Error(`the grant is ${signer.grant.person}'s from key ${signer.grant.key}, not ${signer.by}'s from ${signer.keyId}`);
  const unsigned = {
    v: 1 as const,
    to: target(to),
    kind,
    key: signer.keyId,
    by: signer.by,
    exp: new Date(now.getTime() + Math.min(ttlS, MAX_COMMAND_TTL_S) * 1000).toISOString(),
    msg: JSON.stringify(message),
  };
  const sig = sign(null, signedBytes(unsigned), signer.privateKey).toString('base64');
  return Buffer.from(JSON.stringify({ ...unsigned, sig, ...(signer.grant ? { grant: signer.grant } : {}) }));
}

export interface OpenedCommand {
  /** The command's own JSON text, for the kind's schema. */
  msg: string;
  key: string;
  by: string;
  /** Signed by `by` with their own key, under a grant of `key`; false: signed by `key` itself. */
  personal: boolean;
}

export interface CommandCheck {
  kind: DownlinkKind;
  /** This bus. */
  self: VehicleRef;
  /** The keys this bus trusts, by id. */
  keys: ReadonlyMap<string, KeyObject>;
  /** The bus's time, or null when it has none it can trust (no GPS time yet): then expiry is not checked. */
  now: Date | null;
  /** How far this bus's clock may be behind dispatch's before a fresh command looks expired. */
  skewS: number;
}

/**
 * Check a signed command before anything is done with it: its form, that it
 * is for this vehicle and this kind (the topic's), that a trusted key signed
 * exactly these bytes, and that it has not expired. The refusal says which.
 */
export function openCommand(payload: Buffer, check: CommandCheck): Decoded<OpenedCommand> {
  const env = decode(SignedCommandSchema, payload);
  if (!env.ok) return { ok: false, error: `not a signed command: ${env.error}` };
  const c = env.value;
  if (c.to !== target(check.self)) return { ok: false, error: `signed for ${c.to}, this is ${target(check.self)}` };
  if (c.kind !== check.kind) return { ok: false, error: `signed as a ${c.kind} command, came on the ${check.kind} topic` };
  const trusted = check.keys.get(c.key);
  if (!trusted) return { ok: false, error: `signed with key "${c.key}", which this bus does not trust (it trusts ${[...check.keys.keys()].join(', ') || 'none'})` };
  const { sig, grant, ...unsigned } = c;
  let key: KeyObject = trusted;
  if (grant) {
    if (grant.key !== c.key || grant.person !== c.by) return { ok: false, error: `the grant is ${grant.person}'s from key "${grant.key}", the command says ${c.by} under "${c.key}"` };
    const { sig: grantSig, ...g } = grant;
    if (!goodSignature(grantBytes(g), trusted, grantSig)) return { ok: false, error: `bad grant signature for key "${c.key}" (person ${grant.person})` };
    if (check.now !== null && check.now.getTime() > Date.parse(grant.exp) + check.skewS * 1000) return { ok: false, error: `${grant.person}'s grant expired at ${grant.exp} (this bus's clock reads ${check.now.toISOString()})` };
    try {
      key = createPublicKey({ key: Buffer.from(grant.pub, 'base64'), format: 'der', type: 'spki' });
    } catch {
      return { ok: false, error: `${grant.person}'s grant holds no public key` };
    }
  }
  if (!goodSignature(signedBytes(unsigned), key, sig)) return { ok: false, error: grant ? `bad signature for ${grant.person}'s key (grant of "${c.key}")` : `bad signature for key "${c.key}"` };
  // Without a time it can trust (a head unit's clock before GPS time, perhaps 1970) the bus cannot
  // judge expiry, and refusing would leave it without receipts and acks; every command is bound to
  // this vehicle and idempotent by id, so a replay in that window changes nothing.
  if (check.now !== null) {
    const expires = Date.parse(c.exp);
    if (check.now.getTime() > expires + check.skewS * 1000) return { ok: false, error: `expired at ${c.exp} (this bus's clock reads ${check.now.toISOString()})` };
    if (expires - check.now.getTime() > (MAX_COMMAND_TTL_S + check.skewS) * 1000) return { ok: false, error: `valid until ${c.exp}, more than ${MAX_COMMAND_TTL_S} s ahead of this bus's clock (${check.now.toISOString()})` };
  }
  return { ok: true, value: { msg: c.msg, key: c.key, by: c.by, personal: grant !== undefined } };
}

function goodSignature(bytes: Buffer, key: KeyObject, sig: string): boolean {
  try {
    return verify(null, bytes, key, Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
}
