// Dispatch's half of the chain of custody (protocol/signed-evidence.ts): each
// alarm record's and each evidence file's signature is checked against the
// fleet CA (trust.fleetCaFile) and the vehicle the topic names, and kept with
// what was signed and the verdict. A stored file gets a sidecar,
// {file}.sig.json, so `busguard evidence verify FILE` can check it offline,
// wherever the file is copied to. A bad or missing signature never stops an
// alarm from being stored and shown: it is marked, and logged.

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import { type Db, writeTx } from '../common/sqlite.ts';
import { type EvidenceSignature, type Verdict, verifyEvidence } from '../protocol/signed-evidence.ts';
import type { VehicleRef } from '../protocol/topics.ts';

export const SIGNATURES_SCHEMA = `
CREATE TABLE evidence_signatures (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  subject TEXT NOT NULL CHECK (subject IN ('alarm', 'file')),
  subject_id TEXT NOT NULL,
  signed_text TEXT NOT NULL,
  signature TEXT,
  verdict TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle, subject, subject_id)
);
`;

/** What a sidecar holds: enough to check the file with nothing but the fleet CA's certificate. */
export interface Sidecar {
  v: 1;
  fleet: string;
  vehicle: string;
  fileId: string;
  name: string;
  size: number;
  sha256: string;
  signedText: string;
  signature: EvidenceSignature;
  /** Dispatch's verdict when it stored the file. */
  verdict: string;
}

const UNCHECKED = 'unchecked';

export function verdictText(v: Verdict, caKnown: boolean): string {
  if (!v.ok) return `invalid: ${v.reason}`;
  return caKnown ? `verified: ${v.identity}, certificate sha256 ${v.fingerprint}` : `signature good, issuer unchecked (no trust.fleetCaFile): ${v.identity}`;
}

export class SignatureBook {
  private readonly ca: X509Certificate | null;

  constructor(
    private readonly db: Db,
    fleetCaFile: string | null,
  ) {
    this.ca = fleetCaFile === null ? null : new X509Certificate(readFileSync(fleetCaFile));
  }

  /** Check a signature (or its absence), keep it, and return the verdict: "verified: …", "invalid: …" or "unsigned". */
  record(subject: 'alarm' | 'file', ref: VehicleRef, id: string, signedText: string, signature: EvidenceSignature | undefined, at?: Date): string {
    this.keep(subject, ref, id, signedText, signature);
    return this.check(subject, ref, id, at);
  }

  /**
   * Keep what was signed and the signature, unchecked (cheap: inside the
   * alarm's own transaction, so the evidence is as durable as the alarm);
   * check() gives the verdict once the alarm is committed and receipted.
   * The first record of an id stands: a later copy cannot replace it.
   */
  keep(subject: 'alarm' | 'file', ref: VehicleRef, id: string, signedText: string, signature: EvidenceSignature | undefined): void {
    this.db
      .prepare('INSERT OR IGNORE INTO evidence_signatures (fleet, vehicle, subject, subject_id, signed_text, signature, verdict) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(ref.fleet, ref.vehicle, subject, id, signedText, signature ? JSON.stringify(signature) : null, signature ? UNCHECKED : 'unsigned');
  }

  /** The verdict on a kept signature, checked now if it was not yet (recorded without fsync: a verdict lost is checked again at start). */
  check(subject: 'alarm' | 'file', ref: VehicleRef, id: string, at?: Date): string {
    const rec = this.get(subject, ref, id);
    if (!rec) return 'unsigned';
    if (rec.verdict !== UNCHECKED || !rec.signature) return rec.verdict;
    const verdict = verdictText(verifyEvidence(rec.signedText, rec.signature, `${ref.fleet}/${ref.vehicle}`, this.ca, at), this.ca !== null);
    writeTx(this.db, 'NORMAL', () =>
      this.db.prepare('UPDATE evidence_signatures SET verdict = ? WHERE fleet = ? AND vehicle = ? AND subject = ? AND subject_id = ?').run(verdict, ref.fleet, ref.vehicle, subject, id),
    );
    return verdict;
  }

  /** Signatures kept and never checked (a receiver stopped in between): checked now. */
  checkPending(): number {
    const rows = this.db.prepare('SELECT fleet, vehicle, subject, subject_id FROM evidence_signatures WHERE verdict = ?').all(UNCHECKED) as { fleet: string; vehicle: string; subject: 'alarm' | 'file'; subject_id: string }[];
    for (const r of rows) this.check(r.subject, { fleet: r.fleet, vehicle: r.vehicle }, r.subject_id);
    return rows.length;
  }

  get(subject: 'alarm' | 'file', ref: VehicleRef, id: string): { signedText: string; signature: EvidenceSignature | null; verdict: string } | null {
    const row = this.db
      .prepare('SELECT signed_text, signature, verdict FROM evidence_signatures WHERE fleet = ? AND vehicle = ? AND subject = ? AND subject_id = ?')
      .get(ref.fleet, ref.vehicle, subject, id) as { signed_text: string; signature: string | null; verdict: string } | undefined;
    return row ? { signedText: row.signed_text, signature: row.signature ? (JSON.parse(row.signature) as EvidenceSignature) : null, verdict: row.verdict } : null;
  }

  /**
   * Once a file is stored: its sidecar, and the verdict on the file itself.
   * The signature covers the SHA-256 the bus announced; a file stored under
   * another one (a fin that named a different checksum) is not what was signed.
   */
  async sealStored(f: { fleet: string; vehicle: string; fileId: string; name: string; size: number; sha256: string; path: string }): Promise<string> {
    const ref = { fleet: f.fleet, vehicle: f.vehicle };
    const rec = this.get('file', ref, f.fileId);
    if (!rec || !rec.signature) return 'unsigned';
    const signedSha = /"checksum":"([0-9a-f]{64})"/.exec(rec.signedText)?.[1];
    const verdict = signedSha === f.sha256 ? rec.verdict : `invalid: the file stored has SHA-256 ${f.sha256}, the unit signed ${signedSha ?? 'none'}`;
    const sidecar: Sidecar = { v: 1, ...ref, fileId: f.fileId, name: f.name, size: f.size, sha256: f.sha256, signedText: rec.signedText, signature: rec.signature, verdict };
    const path = `${f.path}.sig.json`;
    await writeFile(`${path}.tmp`, `${JSON.stringify(sidecar, null, 1)}\n`, { mode: 0o640 });
    await rename(`${path}.tmp`, path);
    return verdict;
  }
}
