// `busguard pki …`, `busguard broker acl` and `busguard evidence verify`: the
// fleet's identities, the broker's rights, and the offline check of a file's
// chain of custody. Every failure is one line on stderr and a non-zero exit.

import { X509Certificate, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { z } from 'zod';

function fail(cmd: string, why: string, code = 2): void {
  process.stderr.write(`busguard ${cmd}: ${why}\n`);
  process.exitCode = code;
}

async function pkiAction(cmd: string, run: (pki: typeof import('../common/pki.ts')) => string): Promise<void> {
  const pki = await import('../common/pki.ts');
  try {
    process.stdout.write(run(pki));
  } catch (err) {
    if (err instanceof pki.PkiError) return fail(cmd, err.message);
    throw err;
  }
}

export function registerTrustCommands(program: Command, pki: Command): void {
  const ca = pki.command('ca').description('the fleet CA: it issues every bus\'s and receiver\'s TLS identity');
  ca.command('init')
    .description('make the fleet CA in an empty folder (ca.key stays there, mode 0600; give ca.crt to the broker, the buses and dispatch)')
    .requiredOption('--dir <dir>', 'the CA folder')
    .requiredOption('--name <name>', 'the CA\'s name, e.g. "city bus fleet CA"')
    .action((o: { dir: string; name: string }) =>
      pkiAction('pki ca init', (p) => {
        const r = p.initCa(o.dir, o.name);
        return `fleet CA ${r.caCert} (broker: cafile; buses and receivers: mqtt.caFile; dispatch: trust.fleetCaFile)\nCRL ${r.crl} (broker: crlfile; re-issue with busguard pki revoke at least every 30 days)\n`;
      }),
    );
  pki
    .command('csr')
    .description('on the unit: its key (mode 0600, it never leaves the unit) and a certificate request naming its identity')
    .requiredOption('--id <identity>', 'FLEET/VEHICLE for a bus (e.g. city/bus-17), dispatch/NAME for a receiver')
    .option('--out <dir>', 'where to write ID.key and ID.csr', '.')
    .action((o: { id: string; out: string }) =>
      pkiAction('pki csr', (p) => {
        const r = p.makeCsr(o.out, o.id);
        return `key ${r.key} (mode 0600: mqtt.keyFile)\nrequest ${r.csr} (take it to the CA: busguard pki sign)\n`;
      }),
    );
  pki
    .command('sign')
    .description('at the CA: issue the certificate a request asks for (only busguard identities are issued)')
    .argument('<csr>', 'the unit\'s request')
    .requiredOption('--ca <dir>', 'the CA folder')
    .requiredOption('--out <file>', 'the certificate to write (mqtt.certFile on the unit)')
    .action((csr: string, o: { ca: string; out: string }) =>
      pkiAction('pki sign', (p) => {
        const r = p.signCsr(o.ca, csr, o.out);
        return `certificate ${r.cert} for ${r.identity} (the unit: mqtt.certFile; the broker: add "${r.identity}" to the identities, busguard broker acl)\n`;
      }),
    );
  pki
    .command('server')
    .description('at the CA: the broker\'s key and certificate')
    .requiredOption('--ca <dir>', 'the CA folder')
    .requiredOption('--host <name...>', 'every host name and IP address the buses reach the broker by')
    .option('--out <dir>', 'where to write broker.key and broker.crt', '.')
    .action((o: { ca: string; host: string[]; out: string }) =>
      pkiAction('pki server', (p) => {
        const r = p.issueServer(o.ca, o.out, o.host);
        return `broker key ${r.key} (keyfile), certificate ${r.cert} (certfile)\n`;
      }),
    );
  pki
    .command('revoke')
    .description('a unit stolen or retired: revoke its certificate and re-issue the CRL (then reload the broker: kill -HUP)')
    .argument('<cert>', 'the certificate to revoke')
    .requiredOption('--ca <dir>', 'the CA folder')
    .action((cert: string, o: { ca: string }) =>
      pkiAction('pki revoke', (p) => {
        const r = p.revoke(o.ca, cert);
        return `revoked ${r.identity}; CRL ${r.crl} re-issued: copy it to the broker's crlfile and send the broker SIGHUP\n`;
      }),
    );

  pki
    .command('crl')
    .description('re-issue the CRL (it names its next update 30 days on: do this monthly), then copy it to the broker and reload it')
    .requiredOption('--ca <dir>', 'the CA folder')
    .action((o: { ca: string }) => pkiAction('pki crl', (p) => `CRL ${p.gencrl(o.ca)} re-issued: copy it to the broker's crlfile and send the broker SIGHUP\n`));

  pki
    .command('grant')
    .description('a dispatcher\'s or officer\'s own signing key, vouched for by a dispatch key the buses trust (busguard dispatch ack --as DIR/PERSON)')
    .requiredOption('--person <name>', 'who: shown to the fleet in every command they sign')
    .requiredOption('--signing-key <file>', 'the dispatch private key that vouches (signing.privateKeyFile)')
    .requiredOption('--key-id <id>', 'its id, as the buses\' trust.dispatchKeys name it (signing.keyId)')
    .option('--days <n>', 'how long the grant lasts (a person leaving is a grant not renewed)', '30')
    .option('--out <dir>', 'where to write PERSON.key (0600: give it to them only) and PERSON.grant', '.')
    .action(async (o: { person: string; signingKey: string; keyId: string; days: string; out: string }) => {
      const { makePersonKey } = await import('../dispatch/person-signer.ts');
      try {
        const r = makePersonKey(o.out, o.person, { keyId: o.keyId, privateKeyFile: o.signingKey }, Number(o.days));
        process.stdout.write(`key ${r.key} (mode 0600: ${o.person}'s alone)\ngrant ${r.grant}, ${o.days} days\nsign with: busguard dispatch ack ID --as ${r.key.replace(/\.key$/, '')}\n`);
      } catch (err) {
        fail('pki grant', (err as Error).message);
      }
    });

  program
    .command('broker')
    .description('the fleet broker (Mosquitto 2 with its dynamic-security plugin)')
    .command('acl')
    .description('write the dynamic-security file from the fleet\'s identities and protocol/acl.ts (then restart Mosquitto)')
    .requiredOption('--identities <file>', 'JSON: [{ "id": "city/bus-17" }, { "id": "dispatch", "passwordFile": "/etc/busguard/dispatch.pass" }, ...]; an id without passwordFile logs in by certificate only')
    .requiredOption('--out <file>', 'the file plugin_opt_config_file names')
    .option('--group <name>', 'the receivers\' shared-subscription group (dispatch config sharedGroup)', 'dispatch')
    .action(async (o: { identities: string; out: string; group: string }) => {
      const { dynamicSecurityConfig } = await import('../protocol/acl.ts');
      const { IdentitiesFileSchema } = await import('../protocol/acl.ts');
      let list: z.infer<typeof IdentitiesFileSchema>;
      try {
        list = IdentitiesFileSchema.parse(JSON.parse(readFileSync(o.identities, 'utf8')));
      } catch (err) {
        return fail('broker acl', `${o.identities}: ${err instanceof z.ZodError ? err.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') : (err as Error).message}`);
      }
      try {
        const identities = list.map((i) => {
          if (i.passwordFile === undefined) return { id: i.id };
          const password = readFileSync(i.passwordFile, 'utf8').split('\n')[0] ?? '';
          if (password.length < 16) throw new Error(`${i.passwordFile} (${i.id}): a machine password of at least 16 random characters (e.g. openssl rand -base64 24)`);
          return { id: i.id, password };
        });
        writeFileSync(o.out, `${JSON.stringify(dynamicSecurityConfig(identities, o.group), null, 1)}\n`, { mode: 0o600 });
        process.stdout.write(`${o.out}: ${identities.length} identities (${identities.filter((i) => i.password).length} with passwords); restart Mosquitto to load it\n`);
      } catch (err) {
        fail('broker acl', (err as Error).message);
      }
    });

  program
    .command('evidence')
    .description('evidence files as dispatch stored them')
    .command('verify')
    .description('check a file against the unit\'s signature, offline: its SHA-256, the signature, and that the fleet CA issued the signer\'s certificate for that vehicle')
    .argument('<file>', 'the evidence file (its signature is FILE.sig.json beside it)')
    .requiredOption('--ca <file>', 'the fleet CA\'s certificate (ca.crt)')
    .option('--sig <file>', 'the signature file, if not FILE.sig.json')
    .action(async (file: string, o: { ca: string; sig?: string }) => {
      const { fileSigningText, verifyEvidence, EvidenceSignatureSchema } = await import('../protocol/signed-evidence.ts');
      const sigPath = o.sig ?? `${file}.sig.json`;
      let bytes: Buffer, sidecar: Record<string, unknown>, ca: X509Certificate;
      try {
        bytes = readFileSync(file);
        sidecar = JSON.parse(readFileSync(sigPath, 'utf8')) as Record<string, unknown>;
        ca = new X509Certificate(readFileSync(o.ca));
      } catch (err) {
        return fail('evidence verify', `cannot read ${(err as NodeJS.ErrnoException).path ?? 'an input'}: ${(err as Error).message}`);
      }
      const signature = EvidenceSignatureSchema.safeParse(sidecar.signature);
      const signedText = typeof sidecar.signedText === 'string' ? sidecar.signedText : '';
      const lines = signedText.split('\n');
      type Signed = { name: string; size: number; checksum: string; user_data: unknown };
      const signed = ((): Signed | null => {
        try {
          return JSON.parse(lines.slice(3).join('\n')) as Signed;
        } catch {
          return null;
        }
      })();
      const [fleet, vehicle] = (lines[1] ?? '').split('/');
      const fileId = lines[2] ?? '';
      if (!signature.success || lines[0] !== 'busguard-file-v1' || !signed || !fleet || !vehicle) return fail('evidence verify', `${sigPath}: not a busguard evidence signature`, 1);
      const sha256 = createHash('sha256').update(bytes).digest('hex');
      const problems: string[] = [];
      if (sha256 !== signed.checksum) problems.push(`the file's SHA-256 is ${sha256}; the unit signed ${signed.checksum}: the file is not the one the unit sent`);
      if (bytes.length !== signed.size) problems.push(`the file has ${bytes.length} bytes; the unit signed ${signed.size}`);
      // What is signed is rebuilt from its parts: a sidecar whose text was edited fails here or at the signature.
      if (fileSigningText({ fleet, vehicle }, fileId, signed) !== signedText) problems.push('the signed text is not in canonical form');
      const v = verifyEvidence(signedText, signature.data, `${fleet}/${vehicle}`, ca, new Date(String((signed.user_data as { capturedAt?: string })?.capturedAt ?? Date.now())));
      if (!v.ok) problems.push(v.reason);
      process.stdout.write(`${file}\n  ${signed.name}, ${bytes.length} bytes, sha256 ${sha256}\n  from ${fleet}/${vehicle}, file id ${fileId}\n`);
      if (problems.length) {
        for (const p of problems) process.stdout.write(`  FAILED: ${p}\n`);
        process.exitCode = 1;
        return;
      }
      process.stdout.write(`  OK: signed by ${fleet}/${vehicle} (certificate sha256 ${v.ok ? v.fingerprint : ''}), issued by ${ca.subject.replace(/^CN=/, '')}\n`);
    });
}
