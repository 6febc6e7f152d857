// A real Mosquitto on a free loopback port (tests and benchmarks), configured from the shipped
// protocol/mosquitto/mosquitto.conf with only the ports, the file paths and the persistence
// folder rewritten, and its dynamic-security file made by protocol/acl.ts as
// `busguard broker acl` makes it. With `tls`, its mutual-TLS listener runs too, on a
// second free port, with a fleet CA made for the test (common/pki.ts). Stopped by its own PID.

import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './until.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const SHIPPED_CONF = join(REPO, 'protocol/mosquitto/mosquitto.conf');

/** Usernames and passwords the test broker knows. Vehicles log in as fleet/vehicle. */
export const USERS: Record<string, string> = {
  dispatch: 'dispatch-secret',
  /** A second receiver identity (a test that publishes commands beside the running receiver). */
  'dispatch/spare': 'spare-secret',
  /** A read-only tap (a test that watches the uplink). */
  'monitor/test': 'monitor-secret',
  'city/bus-1': 'bus-1-secret',
  'city/bus-2': 'bus-2-secret',
};

/** A fleet CA for a test broker's TLS listener and the paths of what it issued. */
export interface TestPki {
  caDir: string;
  caCert: string;
  crl: string;
  brokerKey: string;
  brokerCert: string;
  /** Key and certificate of each identity asked for, by identity. */
  clients: Record<string, { key: string; cert: string }>;
}

/** mqtt.js options to log in as `identity` with its certificate from `pki` (client id = identity, as the broker binds it). */
export function certLogin(pki: TestPki, identity: string): { ca: Buffer; cert: Buffer; key: Buffer; clientId: string } {
  const c = pki.clients[identity];
  if (!c) throw new Error(`the test PKI issued no certificate for ${identity}`);
  return { ca: readFileSync(pki.caCert), cert: readFileSync(c.cert), key: readFileSync(c.key), clientId: identity };
}

/** A CA, a broker certificate for 127.0.0.1 and one client certificate per identity, under dir/pki. */
export async function makeTestPki(dir: string, identities: string[]): Promise<TestPki> {
  const { initCa, issueServer, makeCsr, signCsr } = await import('../../common/pki.ts');
  const caDir = join(dir, 'pki', 'ca');
  const { caCert, crl } = initCa(caDir, 'busguard test fleet CA');
  const broker = issueServer(caDir, join(dir, 'pki', 'broker'), ['127.0.0.1', 'localhost']);
  const clients: TestPki['clients'] = {};
  for (const id of identities) {
    const { key, csr } = makeCsr(join(dir, 'pki', 'clients'), id);
    const cert = csr.replace(/\.csr$/, '.crt');
    signCsr(caDir, csr, cert);
    clients[id] = { key, cert };
  }
  return { caDir, caCert, crl, brokerKey: broker.key, brokerCert: broker.cert, clients };
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** Until something accepts a TCP connection on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const accepts = () =>
    new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
  await until(accepts, timeoutMs, `something listening on 127.0.0.1:${port}`);
}

export class Mosquitto {
  private child: ChildProcess | null = null;
  stderr = '';

  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly confPath: string,
    readonly tlsPort: number | null,
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  /** The mutual-TLS listener (started with `tls`). */
  get tlsUrl(): string {
    if (this.tlsPort === null) throw new Error('this broker was started without tls');
    return `mqtts://127.0.0.1:${this.tlsPort}`;
  }

  /** Re-read the CRL and the certificates (SIGHUP), as an operator does after `busguard pki revoke`. */
  reload(): void {
    this.child?.kill('SIGHUP');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  static async start(dir: string, opts: { port?: number; tls?: TestPki; identities?: string[]; passwords?: Record<string, string> } = {}): Promise<Mosquitto> {
    // A free port is free when asked, not when Mosquitto binds it: another test may take it between. New ports, then.
    for (let attempt = 1; ; attempt++) {
      try {
        return await Mosquitto.startOnce(dir, opts);
      } catch (err) {
        if (opts.port !== undefined || attempt >= 5 || !/Address already in use/.test((err as Error).message)) throw err;
      }
    }
  }

  private static async startOnce(dir: string, opts: { port?: number; tls?: TestPki; identities?: string[]; passwords?: Record<string, string> }): Promise<Mosquitto> {
    const { dynamicSecurityConfig } = await import('../../protocol/acl.ts');
    const port = opts.port ?? (await freePort());
    const tlsPort = opts.tls ? await freePort() : null;
    const dynsec = join(dir, 'dynamic-security.json');
    const identities = [
      ...Object.entries({ ...USERS, ...opts.passwords }).map(([id, password]) => ({ id, password })),
      ...[...new Set([...(opts.identities ?? []), ...Object.keys(opts.tls?.clients ?? {})])].filter((id) => USERS[id] === undefined && opts.passwords?.[id] === undefined).map((id) => ({ id })),
    ];
    writeFileSync(dynsec, JSON.stringify(dynamicSecurityConfig(identities), null, 1));
    let conf = readFileSync(SHIPPED_CONF, 'utf8')
      .replace(/^listener 1883 127\.0\.0\.1$/m, `listener ${port} 127.0.0.1`)
      .replace(/^plugin_opt_config_file .*$/m, `plugin_opt_config_file ${dynsec}`)
      .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`);
    const tlsBlock = /^# BEGIN TLS LISTENER\n[^]*?^# END TLS LISTENER$/m;
    if (!conf.includes(`listener ${port} 127.0.0.1`) || !conf.includes(dynsec) || !tlsBlock.test(conf)) throw new Error('shipped mosquitto.conf no longer has the lines the test rewrites');
    const tls = opts.tls;
    conf = conf.replace(tlsBlock, (block) =>
      tls
        ? block
            .replace(/^listener 8883$/m, `listener ${tlsPort} 127.0.0.1`)
            .replace(/^cafile .*$/m, `cafile ${tls.caCert}`)
            .replace(/^certfile .*$/m, `certfile ${tls.brokerCert}`)
            .replace(/^keyfile .*$/m, `keyfile ${tls.brokerKey}`)
            .replace(/^crlfile .*$/m, `crlfile ${tls.crl}`)
        : '',
    );
    // Started as root, mosquitto drops to user "mosquitto" and then cannot write a root-owned folder (FIELD-NOTES).
    const confPath = join(dir, 'mosquitto.conf');
    writeFileSync(confPath, `${conf}\nuser root\n`);
    const m = new Mosquitto(dir, port, confPath, tlsPort);
    await m.start();
    return m;
  }

  /** Start (again, after stop()) on the same port with the same persistence. */
  async start(): Promise<void> {
    if (this.child) return;
    const child = spawn('mosquitto', ['-c', this.confPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    this.child = child;
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`mosquitto exited (${code}) at start: ${this.stderr.slice(-500)}`))),
    );
    exited.catch(() => {});
    await Promise.race([waitForPort(this.port, 10_000), exited]);
  }

  /** Stop exactly our broker (SIGTERM by PID) and wait for it to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }
}
