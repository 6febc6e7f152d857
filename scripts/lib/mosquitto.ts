// A real Mosquitto on a free loopback port (tests and benchmarks), configured from the shipped
// protocol/mosquitto/mosquitto.conf and acl with only the port, the file
// paths and the persistence folder rewritten. Stopped by its own PID.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { until } from './until.ts';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const SHIPPED_CONF = join(REPO, 'protocol/mosquitto/mosquitto.conf');
export const SHIPPED_ACL = join(REPO, 'protocol/mosquitto/acl');

/** Usernames and passwords the test broker knows. Vehicles log in as fleet/vehicle. */
export const USERS: Record<string, string> = {
  dispatch: 'dispatch-secret',
  'city/bus-1': 'bus-1-secret',
  'city/bus-2': 'bus-2-secret',
};

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
  ) {}

  get url(): string {
    return `mqtt://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  static async start(dir: string, opts: { port?: number } = {}): Promise<Mosquitto> {
    const port = opts.port ?? (await freePort());
    const passwd = join(dir, 'passwd');
    writeFileSync(passwd, '');
    for (const [user, pass] of Object.entries(USERS)) execFileSync('mosquitto_passwd', ['-b', passwd, user, pass]);
    const conf = readFileSync(SHIPPED_CONF, 'utf8')
      .replace(/^listener 1883$/m, `listener ${port} 127.0.0.1`)
      .replace(/^password_file .*$/m, `password_file ${passwd}`)
      .replace(/^acl_file .*$/m, `acl_file ${SHIPPED_ACL}`)
      .replace(/^persistence_location .*$/m, `persistence_location ${dir}/`);
    if (!conf.includes(`listener ${port}`) || !conf.includes(SHIPPED_ACL)) throw new Error('shipped mosquitto.conf no longer has the lines the test rewrites');
    // Started as root, mosquitto drops to user "mosquitto" and then cannot write a root-owned folder (FIELD-NOTES).
    const confPath = join(dir, 'mosquitto.conf');
    writeFileSync(confPath, `${conf}\nuser root\n`);
    const m = new Mosquitto(dir, port, confPath);
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
