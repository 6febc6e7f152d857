// Chain of custody: the unit signs each alarm record and each evidence
// file's SHA-256 with its own key (the key of its TLS identity, issued by the
// fleet CA: common/pki.ts), and sends its certificate with the signature.
// Dispatch verifies both against the fleet CA and the vehicle the topic names
// and keeps them; `busguard evidence verify FILE` checks a stored file and
// its signature offline. A flipped byte changes the SHA-256; a file re-signed
// with any other key names another identity, or none the CA issued.
//
// What is signed is text, so that it reads the same in ten years:
//   busguard-alarm-v1 \n {canonical JSON of the alarm message, signature left out}
//   busguard-file-v1 \n {fleet}/{vehicle} \n {fileId} \n {canonical JSON of name, size, checksum, user_data}
// Canonical JSON: object keys sorted, no spaces, undefined left out.

import { type KeyObject, X509Certificate, createHash, sign, verify } from 'node:crypto';
import { z } from 'zod';
import type { VehicleRef } from './topics.ts';

export const MAX_CERT_CHARS = 4096;

export const EvidenceSignatureSchema = z
  .object({
    alg: z.literal('ed25519'),
    /** Base64 of the 64-byte Ed25519 signature. */
    sig: z.string().regex(/^[A-Za-z0-9+/]{86}==$/, '64 bytes in base64'),
    /** The signer's certificate (PEM), issued by the fleet CA; its CN is the vehicle. */
    cert: z.string().min(100).max(MAX_CERT_CHARS).regex(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n?$/, 'a PEM certificate'),
  })
  .strict();
export type EvidenceSignature = z.infer<typeof EvidenceSignatureSchema>;

export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v) ?? 'null';
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`;
}

/** The text an alarm's signature covers: the message as the bus made it, without its signature and envelope. */
export function alarmSigningText(alarm: object): string {
  const { signature: _s, ...rest } = alarm as Record<string, unknown>;
  return `busguard-alarm-v1\n${canonicalJson(rest)}`;
}

/** The text a file's signature covers. */
export function fileSigningText(ref: VehicleRef, fileId: string, init: { name: string; size: number; checksum: string; user_data: unknown }): string {
  return `busguard-file-v1\n${ref.fleet}/${ref.vehicle}\n${fileId}\n${canonicalJson({ name: init.name, size: init.size, checksum: init.checksum, user_data: init.user_data })}`;
}

/** The unit's signer: its private key and its certificate. */
export class EvidenceSigner {
  constructor(
    private readonly key: KeyObject,
    readonly certPem: string,
  ) {}

  sign(text: string): EvidenceSignature {
    return { alg: 'ed25519', sig: sign(null, Buffer.from(text), this.key).toString('base64'), cert: this.certPem };
  }
}

export type Verdict = { ok: true; identity: string; fingerprint: string } | { ok: false; reason: string };

const certs = new Map<string, X509Certificate | Error>();

function parseCert(pem: string): X509Certificate | Error {
  let c = certs.get(pem);
  if (!c) {
    try {
      c = new X509Certificate(pem);
    } catch (err) {
      c = new Error(`not a certificate (${(err as Error).message})`);
    }
    // Each unit has one certificate at a time: a handful per vehicle over years.
    if (certs.size > 10_000) certs.clear();
    certs.set(pem, c);
  }
  return c;
}

/**
 * Check a signature: made by the key of `signature.cert`, whose CN is
 * `identity` ({fleet}/{vehicle}), issued by `ca` and valid at `at` (when the
 * evidence was made). Without a CA, everything but the issuer is checked and
 * the verdict says so.
 */
export function verifyEvidence(text: string, signature: EvidenceSignature, identity: string, ca: X509Certificate | null, at?: Date): Verdict {
  const cert = parseCert(signature.cert);
  if (cert instanceof Error) return { ok: false, reason: cert.message };
  const cn = /^CN=(.*)$/m.exec(cert.subject)?.[1];
  if (cn !== identity) return { ok: false, reason: `signed by "${cn ?? cert.subject}", not by ${identity}` };
  if (ca && !(cert.checkIssued(ca) && cert.verify(ca.publicKey))) return { ok: false, reason: `the certificate of ${identity} was not issued by the fleet CA (${ca.subject})` };
  if (cert.publicKey.asymmetricKeyType !== 'ed25519') return { ok: false, reason: `a ${cert.publicKey.asymmetricKeyType} certificate; evidence is signed with Ed25519` };
  const when = at ?? new Date();
  if (when.getTime() < Date.parse(cert.validFrom) - 86_400_000 || when.getTime() > Date.parse(cert.validTo)) {
    return { ok: false, reason: `the certificate of ${identity} was not valid at ${when.toISOString()} (${cert.validFrom} to ${cert.validTo})` };
  }
  if (!verify(null, Buffer.from(text), cert.publicKey, Buffer.from(signature.sig, 'base64'))) return { ok: false, reason: 'the signature does not match what was signed' };
  return { ok: true, identity, fingerprint: createHash('sha256').update(cert.raw).digest('hex') };
}
