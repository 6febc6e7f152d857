// The fleet's certificate authority and the units' TLS identities, with the
// openssl command-line tool (on every Debian head unit and depot PC; the
// tool Mosquitto's own TLS guide uses). Node's crypto reads certificates but
// cannot issue them.
//
//   at the depot, once:   pki ca init   → ca.key (0600, stays there), ca.crt, ca.crl
//   on the unit:          pki csr       → unit.key (0600, never leaves the unit), unit.csr
//   at the depot:         pki sign      → unit.crt (CN = the identity, e.g. city/bus-17)
//   for the broker:       pki server    → broker.key, broker.crt (its host names and IPs)
//   a stolen unit:        pki revoke    → ca.crl re-issued; the broker refuses it after SIGHUP
//
// Keys are Ed25519: the unit's key is also the one that signs its evidence
// (protocol/signed-evidence.ts), so a clip's signature and the TLS identity
// that delivered it are one and the same.

import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { identityOf } from '../protocol/acl.ts';

export class PkiError extends Error {}

function openssl(args: string[], cwd?: string): string {
  try {
    return execFileSync('openssl', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new PkiError('openssl is not installed (apt-get install openssl)');
    throw new PkiError(`openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim().split('\n').slice(-2).join(' ')}`);
  }
}

/** A file name for an identity: "city/bus-17" → "city+bus-17" ('+' is in no id). */
export function fileStem(identity: string): string {
  return identity.replace(/\//g, '+');
}

function subject(cn: string): string {
  return `/CN=${cn.replace(/([/\\,+=])/g, '\\$1')}`;
}

function makeKey(path: string): void {
  if (existsSync(path)) throw new PkiError(`${path} already exists: a key is never overwritten (move the old one away first)`);
  openssl(['genpkey', '-algorithm', 'ed25519', '-out', path]);
  chmodSync(path, 0o600);
}

const CA_CNF = `[ ca ]
default_ca = fleet
[ fleet ]
dir = .
database = $dir/index.txt
serial = $dir/serial
crlnumber = $dir/crlnumber
new_certs_dir = $dir/issued
certificate = $dir/ca.crt
private_key = $dir/ca.key
default_md = default
default_days = 825
default_crl_days = 30
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
[ client ]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
`;

/** A new fleet CA in an empty (or new) folder. */
export function initCa(dir: string, name: string): { caCert: string; crl: string } {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (readdirSync(dir).length > 0) throw new PkiError(`${dir} is not empty: a CA is made once, in a folder of its own`);
  chmodSync(dir, 0o700);
  mkdirSync(join(dir, 'issued'));
  writeFileSync(join(dir, 'ca.cnf'), CA_CNF);
  writeFileSync(join(dir, 'index.txt'), '');
  writeFileSync(join(dir, 'serial'), '1000\n');
  writeFileSync(join(dir, 'crlnumber'), '1000\n');
  makeKey(join(dir, 'ca.key'));
  openssl(['req', '-x509', '-new', '-key', 'ca.key', '-subj', subject(name), '-days', '3650', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-out', 'ca.crt'], dir);
  return { caCert: join(dir, 'ca.crt'), crl: gencrl(dir) };
}

/** On the unit: its key (0600) and a request for a certificate naming `identity`. */
export function makeCsr(outDir: string, identity: string): { key: string; csr: string } {
  if (!identityOf(identity)) throw new PkiError(`"${identity}" is no busguard identity: a bus is {fleet}/{vehicle}, a receiver dispatch/{name}`);
  mkdirSync(outDir, { recursive: true });
  const stem = fileStem(identity);
  const key = join(outDir, `${stem}.key`);
  const csr = join(outDir, `${stem}.csr`);
  makeKey(key);
  openssl(['req', '-new', '-key', key, '-subj', subject(identity), '-out', csr]);
  return { key, csr };
}

function csrIdentity(csr: string): string {
  const text = openssl(['req', '-in', csr, '-noout', '-subject', '-nameopt', 'RFC2253', '-verify']);
  const m = /^subject=CN=(.+)$/m.exec(text);
  if (!m) throw new PkiError(`${csr}: its subject must be exactly one CN (busguard pki csr makes such a request)`);
  return m[1]!.replace(/\\(.)/g, '$1');
}

/** At the CA: a client certificate for the identity a request names (refused unless it is a busguard identity). */
export function signCsr(caDir: string, csr: string, out: string): { identity: string; cert: string } {
  const identity = csrIdentity(csr);
  if (!identityOf(identity)) throw new PkiError(`${csr} asks for "${identity}", which is no busguard identity`);
  if (existsSync(out)) throw new PkiError(`${out} already exists`);
  openssl(['ca', '-config', 'ca.cnf', '-batch', '-notext', '-extensions', 'client', '-in', resolve(csr), '-out', resolve(out)], caDir);
  return { identity, cert: out };
}

/** At the CA: the broker's key and certificate, valid for these host names and IP addresses. */
export function issueServer(caDir: string, outDir: string, hosts: string[]): { key: string; cert: string } {
  if (hosts.length === 0) throw new PkiError('name at least one --host: the buses check the broker by it');
  mkdirSync(outDir, { recursive: true });
  const key = join(outDir, 'broker.key');
  const csr = join(outDir, 'broker.csr');
  const cert = join(outDir, 'broker.crt');
  makeKey(key);
  openssl(['req', '-new', '-key', key, '-subj', subject(hosts[0]!), '-out', csr]);
  const san = hosts.map((h) => (/^[0-9.]+$|:/.test(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  const ext = join(outDir, 'broker.ext');
  writeFileSync(ext, `[ server ]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = ${san}\n`);
  openssl(['ca', '-config', 'ca.cnf', '-batch', '-notext', '-extfile', resolve(ext), '-extensions', 'server', '-in', resolve(csr), '-out', resolve(cert)], caDir);
  return { key, cert };
}

/** Revoke a certificate the CA issued and re-issue the CRL; the broker refuses it once reloaded (SIGHUP). */
export function revoke(caDir: string, cert: string): { identity: string; crl: string } {
  const x = new X509Certificate(readFileSync(cert));
  openssl(['ca', '-config', 'ca.cnf', '-revoke', resolve(cert)], caDir);
  return { identity: x.subject.replace(/^CN=/, ''), crl: gencrl(caDir) };
}

/** Re-issue the CRL (it names its next update: re-issue at least every 30 days). */
export function gencrl(caDir: string): string {
  openssl(['ca', '-config', 'ca.cnf', '-gencrl', '-out', 'ca.crl'], caDir);
  return join(caDir, 'ca.crl');
}

/** The identity a certificate names (its CN). */
export function certIdentity(pem: string | Buffer): string {
  const s = new X509Certificate(pem).subject;
  const m = /^CN=(.*)$/m.exec(s);
  if (!m) throw new PkiError('the certificate names no CN');
  return m[1]!;
}
