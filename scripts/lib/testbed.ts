// The simulated bus, built once for every test, bench and chaos run: a real
// Mosquitto on a free port with the shipped config and ACL, a GPS simulator
// writing NMEA into a socat serial pair, optionally a simulated VC0706 on a
// pair of its own and a TCP proxy standing for the 4G link, and the config
// files of one agent (sim panel) and one dispatch receiver, started as real
// processes. Everything it starts it stops, by PID (with the agent's
// children), and its folder goes with it.

import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyFiles } from '../../common/keys.ts';
import { type DispatchConfig, loadDispatchConfig } from '../../dispatch/config.ts';
import { SimVc0706, type SimVc0706Options } from '../../hal/camera/sim.ts';
import { SimGpsReceiver, type SimOptions, type SimSample } from '../../hal/gps/route-sim.ts';
import { type PtyPair, openPtyPair } from '../../hal/serial/pty-pair.ts';
import { type LoggedProcess, busguard } from './logged-process.ts';
import { InProcessBroker } from './aedes-broker.ts';
import { Mosquitto, REPO, type TestPki, USERS, makeTestPki } from './mosquitto.ts';
import { TcpProxy, type TcpProxyOptions } from './tcp-proxy.ts';


/** The id of the testbed's dispatch signing key. */
export const DISPATCH_KEY_ID = 'testbed-dispatch';
export const CAMERA_FIXTURES = join(REPO, 'test/fixtures/camera');

export interface TestbedOptions {
  /** Folder prefix (under the OS temp folder). */
  name?: string;
  /** Agent config keys over the defaults below (shallow: a key given replaces the default's). */
  agent?: Record<string, unknown>;
  dispatch?: Record<string, unknown>;
  /** The GPS simulator's options, or false for none (the agent's `gps` is then null unless given). */
  gps?: Partial<SimOptions> | false;
  /** A simulated VC0706 camera named "cabin" on its own serial pair (its options), or false (default). */
  camera?: Partial<SimVc0706Options> | false;
  /** A TCP proxy between the bus and the broker (the 4G link), or false (default). */
  link?: Omit<TcpProxyOptions, 'target'> | false;
  /** Log level of both processes. Default debug (tests read their events). */
  logLevel?: string;
  /**
   * 'test' (default): quick resends, no routine track, a long acknowledged
   * display, debug logs, reconnects within a second. 'shipped': the configs
   * carry only what a bus must set (paths, credentials, devices), everything
   * else at its shipped default, as benches measure it.
   */
  profile?: 'test' | 'shipped';
  /** Keys of the sim camera's config entry over { name: 'cabin', port } (imageSize, rates...). */
  cameraConfig?: Record<string, unknown>;
  /** 'mosquitto' (default, the shipped config and ACL) or 'aedes' (in this process, for the demo: MQTT 3.1.1, no shared subscriptions). */
  broker?: 'mosquitto' | 'aedes';
  /** Usernames and passwords the broker knows (default: the test users). */
  users?: Readonly<Record<string, string>>;
  /** Keys of the agent's `mqtt` over the testbed's (the url and password stay the testbed's). */
  agentMqtt?: Record<string, unknown>;
  /** The bus's id in fleet "city" (default bus-1); `users` must know "city/{vehicle}". */
  vehicle?: string;
  /**
   * Mosquitto only (default true): the bus reaches the broker over mutual TLS
   * with a certificate from a fleet CA made for the test (which also signs its
   * evidence), as a fleet's buses do; dispatch logs in on loopback with its
   * password and checks the units' signatures against that CA. false: the bus
   * logs in with a password on loopback.
   */
  tls?: boolean;
}

/** What the testbed needs of a broker (Mosquitto as a process, or aedes in this one). */
export interface Broker {
  readonly url: string;
  readonly port: number;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export class Testbed {
  readonly dir: string;
  readonly socket: string;
  readonly agentConfigPath: string;
  readonly dispatchConfigPath: string;
  /** Dispatch's signing key pair (DIR/ID.key, DIR/ID.pub), made at start. */
  dispatchKey!: { privateKeyFile: string; publicKeyFile: string };
  /** The test's fleet CA and certificates (with `tls`). */
  pki: TestPki | null = null;
  readonly dispatchDb: string;
  broker!: Broker;
  pty!: PtyPair;
  gps!: SimGpsReceiver;
  camera: SimVc0706 | null = null;
  proxy: TcpProxy | null = null;
  agent!: LoggedProcess;
  dispatch!: LoggedProcess;
  /** What the GPS simulator wrote, sampled as it went. */
  readonly samples: SimSample[] = [];
  private sampler: NodeJS.Timeout | null = null;
  private readonly ptys: PtyPair[] = [];
  private readonly started: LoggedProcess[] = [];

  constructor(protected o: TestbedOptions = {}) {
    this.dir = mkdtempSync(join(tmpdir(), `${o.name ?? 'busguard-it'}-`));
    this.socket = join(this.dir, 'panel.sock');
    this.agentConfigPath = join(this.dir, 'agent.json');
    this.dispatchConfigPath = join(this.dir, 'dispatch.json');
    this.dispatchDb = join(this.dir, 'dispatch.db');
  }

  /** Broker, serial pairs, simulators and config files; then dispatch and the agent unless `processes` is false. */
  async start(opts: { processes?: boolean } = {}): Promise<this> {
    const o = this.o;
    const users = o.users ?? USERS;
    const vehicle = `city/${o.vehicle ?? 'bus-1'}`;
    // The unit's certificate signs its evidence on either broker; only Mosquitto gets the TLS listener.
    if (o.tls !== false) this.pki = await makeTestPki(this.dir, [...new Set([vehicle, 'city/bus-2'])]);
    const tls = o.broker !== 'aedes' && this.pki !== null;
    const mosquitto = o.broker === 'aedes' ? null : await Mosquitto.start(this.dir, tls ? { tls: this.pki! } : {});
    this.broker = mosquitto ?? (await InProcessBroker.start(users));
    const busPort = mosquitto?.tlsPort ?? this.broker.port;
    if (o.link) this.proxy = await TcpProxy.start({ ...o.link, target: { host: '127.0.0.1', port: busPort } });
    const busUrl = `${tls ? 'mqtts' : 'mqtt'}://127.0.0.1:${this.proxy?.port ?? busPort}`;
    const identity = this.pki ? { certFile: this.pki.clients[vehicle]!.cert, keyFile: this.pki.clients[vehicle]!.key } : {};
    const busLogin = tls ? { caFile: this.pki!.caCert, ...identity } : { password: users[vehicle], ...identity };
    let gpsPort: string | null = null;
    if (o.gps !== false) {
      this.pty = await this.pair('gps');
      this.gps = new SimGpsReceiver({ path: this.pty.a, baudRate: 9600, rateHz: 2, ...o.gps });
      await this.gps.start();
      gpsPort = this.pty.b;
      this.sampler = setInterval(() => {
        const s = this.gps.position();
        if (s && this.samples.at(-1)?.time.getTime() !== s.time.getTime()) this.samples.push(s);
      }, 20);
    }
    let cameras: unknown[] = [];
    if (o.camera) {
      const camPty = await this.pair('camera');
      this.camera = new SimVc0706({ path: camPty.a, peer: camPty.b, dir: CAMERA_FIXTURES, ...o.camera });
      await this.camera.start();
      cameras = [{ name: 'cabin', port: camPty.b, ...o.cameraConfig }];
    }
    const test = o.profile !== 'shipped';
    const level = o.logLevel ?? (test ? 'debug' : 'info');
    const aedes = o.broker === 'aedes';
    const mqtt = { ...(test ? { reconnectMinMs: 100, reconnectMaxMs: 1000, keepaliveS: 5 } : {}), ...(aedes ? { protocolVersion: 4 } : {}) };
    // Dispatch's signing key; the bus trusts its public half (protocol/signed-command.ts).
    const keys = generateKeyFiles(this.dir, DISPATCH_KEY_ID);
    this.dispatchKey = keys;
    writeFileSync(
      this.agentConfigPath,
      JSON.stringify({
        vehicle: { fleet: 'city', id: o.vehicle ?? 'bus-1', route: '603' },
        mqtt: { url: busUrl, ...busLogin, ...mqtt, ...o.agentMqtt },
        storage: { dir: join(this.dir, 'bus') },
        panel: { driver: 'sim', socket: this.socket },
        gps: gpsPort === null ? null : { port: gpsPort, baudRate: o.gps && o.gps.baudRate ? o.gps.baudRate : 9600 },
        cameras,
        trust: { dispatchKeys: [{ id: DISPATCH_KEY_ID, publicKeyFile: keys.publicKeyFile }] },
        ...(test ? { alarm: { resendS: 1, acknowledgedShowS: 3600 }, position: { intervalS: 0, alarmIntervalS: 1 } } : {}),
        log: { level },
        ...o.agent,
      }),
    );
    writeFileSync(
      this.dispatchConfigPath,
      JSON.stringify({
        mqtt: { url: this.broker.url, password: users.dispatch, ...mqtt },
        ...(aedes ? { sharedGroup: null } : {}),
        storage: { path: this.dispatchDb },
        signing: { keyId: DISPATCH_KEY_ID, privateKeyFile: keys.privateKeyFile },
        ...(this.pki ? { trust: { fleetCaFile: this.pki.caCert } } : {}),
        ...(test ? { ack: { resendS: 1 } } : {}),
        log: { level },
        ...o.dispatch,
      }),
    );
    if (opts.processes !== false) {
      await this.startDispatch();
      await this.startAgent();
    }
    return this;
  }

  /** The agent config as written (to derive another from it). */
  agentConfig(): Record<string, unknown> {
    return JSON.parse(readFileSync(this.agentConfigPath, 'utf8')) as Record<string, unknown>;
  }

  /** Dispatch's config, parsed as the receiver parses it (for in-process commands: acknowledge, footage). */
  dispatchConfig(): DispatchConfig {
    return loadDispatchConfig(this.dispatchConfigPath);
  }

  async startAgent(env: Record<string, string> = {}): Promise<LoggedProcess> {
    const p = busguard(['agent', '--config', this.agentConfigPath], env);
    this.started.push(p);
    await p.waitForEvent('agent.started', () => true, 20_000);
    this.agent = p;
    return p;
  }

  /**
   * Another bus on the same broker and dispatch: its own config, storage,
   * panel socket and (with TLS) certificate, no GPS and no camera.
   */
  async startSecondAgent(vehicle: string): Promise<{ process: LoggedProcess; socket: string; configPath: string }> {
    const base = this.agentConfig() as { mqtt: Record<string, unknown>; vehicle: Record<string, unknown> };
    const dir = join(this.dir, vehicle);
    mkdirSync(dir, { recursive: true });
    const socket = join(dir, 'panel.sock');
    const id = this.pki?.clients[`city/${vehicle}`];
    const configPath = join(dir, 'agent.json');
    writeFileSync(
      configPath,
      JSON.stringify({
        ...base,
        vehicle: { ...base.vehicle, id: vehicle },
        mqtt: { ...base.mqtt, ...(id ? { certFile: id.cert, keyFile: id.key } : { password: (this.o.users ?? USERS)[`city/${vehicle}`] }) },
        storage: { dir: join(dir, 'bus') },
        panel: { driver: 'sim', socket },
        gps: null,
        cameras: [],
      }),
    );
    const p = busguard(['agent', '--config', configPath]);
    this.started.push(p);
    await p.waitForEvent('agent.started', () => true, 20_000);
    return { process: p, socket, configPath };
  }

  /** Stop dispatch, merge these keys into its config, and start it again. */
  async restartDispatchWith(overrides: Record<string, unknown>): Promise<LoggedProcess> {
    await this.dispatch.killTree();
    const config = JSON.parse(readFileSync(this.dispatchConfigPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(this.dispatchConfigPath, JSON.stringify({ ...config, ...overrides }));
    return this.startDispatch();
  }

  async startDispatch(): Promise<LoggedProcess> {
    const p = busguard(['dispatch', '--config', this.dispatchConfigPath]);
    this.started.push(p);
    await p.waitForEvent('mqtt.connected', () => true, 20_000);
    this.dispatch = p;
    return p;
  }

  async stop(): Promise<void> {
    if (this.sampler) clearInterval(this.sampler);
    // With their children (the recorder, a clip's ffmpeg): nothing of ours may write into the folder below.
    for (const p of this.started) await p.killTree();
    await this.camera?.stop();
    await this.gps?.stop();
    for (const p of this.ptys) await p.stop();
    await this.proxy?.stop();
    await this.broker?.stop();
    try {
      rmSync(this.dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 100 });
    } catch (err) {
      throw new Error(`testbed teardown: cannot remove ${this.dir} (${(err as Error).message}); a process of this test may still be writing there`, { cause: err });
    }
  }

  private async pair(name: string): Promise<PtyPair> {
    const dir = join(this.dir, name);
    mkdirSync(dir, { recursive: true });
    const p = await openPtyPair(dir);
    this.ptys.push(p);
    return p;
  }
}
