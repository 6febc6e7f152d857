// A dispatcher's or officer's own signing key (protocol/signed-command.ts,
// "grant"): `busguard pki grant` makes PERSON.key (0600, theirs) and
// PERSON.grant (a dispatch key vouching for it); `busguard dispatch ack
// --as DIR/PERSON` signs the acknowledgement with it, and the receiver sends
// exactly those bytes. The bus then knows which person acted, not only which
// dispatch server.

import { type KeyObject, createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readPrivateKey, writeNew } from '../common/keys.ts';
import { type Grant, GrantSchema, MAX_COMMAND_TTL_S, MAX_GRANT_DAYS, signCommand, signGrant } from '../protocol/signed-command.ts';
import { type DownlinkKind, type VehicleRef, downlinkTopic } from '../protocol/topics.ts';

export class PersonSigner {
  private constructor(
    private readonly privateKey: KeyObject,
    readonly grant: Grant,
  ) {}

  get person(): string {
    return this.grant.person;
  }

  /** PREFIX.key and PREFIX.grant; every problem in one Error naming the file. */
  static load(prefix: string, now = new Date()): PersonSigner {
    const problems: string[] = [];
    const key = readPrivateKey('--as', `${prefix}.key`, problems);
    let grant: Grant | null = null;
    try {
      const parsed = GrantSchema.safeParse(JSON.parse(readFileSync(`${prefix}.grant`, 'utf8')));
      if (parsed.success) grant = parsed.data;
      else problems.push(`${prefix}.grant: not a grant (${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')})`);
    } catch (err) {
      problems.push(`${prefix}.grant: cannot read it (${(err as Error).message})`);
    }
    if (key && grant) {
      const pub = createPublicKey(key).export({ type: 'spki', format: 'der' }).toString('base64');
      if (pub !== grant.pub) problems.push(`${prefix}.grant vouches for another key than ${prefix}.key`);
      if (Date.parse(grant.exp) <= now.getTime()) problems.push(`${prefix}.grant expired at ${grant.exp}: ask for a new one (busguard pki grant)`);
    }
    if (problems.length > 0 || !key || !grant) throw new Error(problems.join('; '));
    return new PersonSigner(key, grant);
  }

  /** The topic and the payload of a command signed by this person, valid a day (or until the grant ends). */
  seal(kind: DownlinkKind, ref: VehicleRef, message: object, now = new Date()): { topic: string; payload: Buffer } {
    const ttlS = Math.max(1, Math.min(MAX_COMMAND_TTL_S, Math.floor((Date.parse(this.grant.exp) - now.getTime()) / 1000)));
    const payload = signCommand({ keyId: this.grant.key, privateKey: this.privateKey, by: this.grant.person, grant: this.grant }, kind, ref, message, now, ttlS);
    return { topic: downlinkTopic(ref, kind), payload };
  }
}

/** Until when a signed command (its `exp`) is valid, or 0 when the payload is none. */
export function commandExpiry(payload: string | null): number {
  if (!payload) return 0;
  try {
    return Date.parse((JSON.parse(payload) as { exp?: string }).exp ?? '') || 0;
  } catch {
    return 0;
  }
}

/** A person's key and grant, issued with a dispatch signing key (at the dispatch host; the person's key may then move to them). */
export function makePersonKey(dir: string, person: string, issuer: { keyId: string; privateKeyFile: string }, days: number, now = new Date()): { key: string; grant: string } {
  if (!Number.isInteger(days) || days < 1 || days > MAX_GRANT_DAYS) throw new Error(`--days must be a whole number from 1 to ${MAX_GRANT_DAYS}`);
  const problems: string[] = [];
  const issuerKey = readPrivateKey('--signing-key', issuer.privateKeyFile, problems);
  if (!issuerKey) throw new Error(problems.join('; '));
  // A file name from the person's name as is when it is plain ASCII; else a stable one from its hash (王警官 and 李警官 must not collide).
  const stem = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$/.test(person) ? person : `person-${createHash('sha256').update(person).digest('hex').slice(0, 12)}`;
  const key = join(dir, `${stem}.key`);
  const grantPath = join(dir, `${stem}.grant`);
  for (const f of [key, grantPath]) if (existsSync(f)) throw new Error(`${f} already exists: never overwritten (move it away to issue a new one)`);
  const { privateKey } = generateKeyPairSync('ed25519');
  const grant = signGrant({ keyId: issuer.keyId, privateKey: issuerKey }, person, privateKey, new Date(now.getTime() + days * 86_400_000));
  writeNew(key, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
  writeNew(grantPath, `${JSON.stringify(grant, null, 1)}\n`, 0o644);
  return { key, grant: grantPath };
}
