// The MQTT connection settings both ends share, and how they become mqtt.js
// options, and the reconnecting session both ends run. Reconnection is ours
// (backoff with jitter, see backoff.ts), so mqtt.js's fixed-period reconnect
// is switched off.

import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { z } from 'zod';
import { Backoff } from './backoff.ts';

export const MqttConnectionSchema = z
  .object({
    /** Broker URL: mqtt://host:port (mqtts:// once TLS is configured). */
    url: z
      .string()
      .regex(/^(mqtt|mqtts|tcp|tls|ws|wss):\/\/[^/]+/, 'a URL like mqtt://host:1883')
      // The URL is logged on every connect: a password in it would be in every log.
      .refine((u) => !/^[a-z]+:\/\/[^/]*@/i.test(u), 'no user or password in the URL (it is logged); use mqtt.username and mqtt.passwordFile'),
    /** The CA the broker's certificate must chain to (mqtts://); the system's CAs when absent. */
    caFile: z.string().min(1).optional(),
    /** This end's certificate and key (busguard pki): the identity the broker takes as username and client id. */
    certFile: z.string().min(1).optional(),
    keyFile: z.string().min(1).optional(),
    /** Defaults: "{fleet}/{vehicle}" for a bus, "dispatch" for dispatch. */
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    /** Read the password from this file instead (first line). */
    passwordFile: z.string().optional(),
    /** 5 (default). 4 only for brokers without MQTT 5, such as the demo's aedes. */
    protocolVersion: z.union([z.literal(4), z.literal(5)]).default(5),
    /** Default: the username. The fleet broker binds client ids to usernames (use_username_as_clientid) whatever is sent here. */
    clientId: z.string().min(1).max(128).optional(),
    keepaliveS: z.number().int().min(5).max(1_200).default(30),
    /** How long the broker keeps the session (and queued commands) while disconnected. */
    sessionExpiryS: z.number().int().min(0).max(4_294_967_295).default(7 * 24 * 3600),
    reconnectMinMs: z.number().int().min(50).max(60_000).default(500),
    reconnectMaxMs: z.number().int().min(100).max(600_000).default(30_000),
    connectTimeoutMs: z.number().int().min(500).max(120_000).default(10_000),
  })
  .strict()
  .refine((m) => m.reconnectMaxMs >= m.reconnectMinMs, {
    message: 'reconnectMaxMs must be ≥ reconnectMinMs',
    path: ['reconnectMaxMs'],
  })
  // Alarms, positions and passwords in clear over 4G or a depot LAN: never. Loopback is this machine.
  .refine((m) => isTls(m.url) || isLoopback(m.url), {
    message: 'a broker off this machine is reached over TLS only: use mqtts:// (with mqtt.caFile, and mqtt.certFile/keyFile for a certificate identity)',
    path: ['url'],
  })
  .refine((m) => (m.certFile === undefined) === (m.keyFile === undefined), { message: 'mqtt.certFile and mqtt.keyFile go together', path: ['keyFile'] })
  // A certificate and key on a loopback broker still sign the unit's evidence (protocol/signed-evidence.ts).
  .refine((m) => isTls(m.url) || m.caFile === undefined, { message: 'mqtt.caFile needs an mqtts:// URL', path: ['url'] });

function isTls(url: string): boolean {
  return /^(mqtts|tls|wss):/i.test(url);
}

function isLoopback(url: string): boolean {
  const host = /^[a-z]+:\/\/(\[[^\]]+\]|[^:/]+)/i.exec(url)?.[1]?.toLowerCase() ?? '';
  return host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export type MqttConnection = z.output<typeof MqttConnectionSchema>;

export function readPassword(m: MqttConnection): string | undefined {
  if (m.password !== undefined) return m.password;
  if (m.passwordFile === undefined) return undefined;
  try {
    return readFileSync(m.passwordFile, 'utf8').split('\n')[0];
  } catch (err) {
    throw new Error(`mqtt.passwordFile ${m.passwordFile}: cannot read (${(err as NodeJS.ErrnoException).code})`);
  }
}

export function clientOptions(
  m: MqttConnection,
  defaults: { username: string },
  will?: IClientOptions['will'],
): IClientOptions {
  const v5 = m.protocolVersion === 5;
  const username = m.username ?? defaults.username;
  return {
    protocolVersion: m.protocolVersion,
    clientId: m.clientId ?? username,
    username,
    password: readPassword(m),
    // Only over TLS: mqtt.js takes a key and certificate as "use TLS" whatever the URL says (on loopback they only sign evidence).
    ...(isTls(m.url) && m.caFile !== undefined ? { ca: readFileSync(m.caFile) } : {}),
    ...(isTls(m.url) && m.certFile !== undefined && m.keyFile !== undefined ? { cert: readFileSync(m.certFile), key: readFileSync(m.keyFile) } : {}),
    rejectUnauthorized: true,
    keepalive: m.keepaliveS,
    clean: false,
    reconnectPeriod: 0,
    connectTimeout: m.connectTimeoutMs,
    resubscribe: true,
    // mqtt-packet otherwise pre-builds a 2-byte Buffer for each of the 65,536
    // packet ids: ~6 MB of heap (measured in a heap snapshot of the agent)
    // to save an allocation per publish, a bad trade on a head unit.
    writeCache: false,
    ...(v5 ? { properties: { sessionExpiryInterval: m.sessionExpiryS } } : {}),
    ...(will ? { will } : {}),
  };
}

function describeConnectError(err: Error & { code?: string | number }): string {
  switch (err.code) {
    case 'ECONNREFUSED':
      return 'refused the connection (ECONNREFUSED): is the broker running?';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `could not be found (${err.code}): check mqtt.url`;
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'ETIMEDOUT':
      return `is unreachable (${err.code}): check the network`;
    default:
      return `refused us: ${err.message}`;
  }
}

export interface MqttSessionEvents {
  connected: [sessionPresent: boolean];
  disconnected: [];
  message: [topic: string, payload: Buffer];
  /** The broker gave this session to another client with the same client id (MQTT 5 DISCONNECT 0x8E). */
  takenOver: [];
}

/**
 * One long-lived MQTT connection that comes back by itself: reconnect with
 * exponential backoff and full jitter after every close, never giving up.
 */
export class MqttSession extends EventEmitter<MqttSessionEvents> {
  readonly client: MqttClient;
  private readonly backoff: Backoff;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private isConnected = false;

  constructor(
    private readonly conn: MqttConnection,
    defaults: { username: string },
    private readonly log: Logger,
    will?: IClientOptions['will'],
  ) {
    super();
    this.backoff = new Backoff(conn.reconnectMinMs, conn.reconnectMaxMs);
    this.client = mqtt.connect(conn.url, clientOptions(conn, defaults, will));
    this.client.on('connect', (connack) => {
      // mqtt.js leaves Nagle on: a small alarm written while a PUBACK or a
      // ping is unacknowledged would wait for it. Alarms are small and urgent.
      (this.client.stream as { setNoDelay?: (on: boolean) => void } | undefined)?.setNoDelay?.(true);
      this.isConnected = true;
      this.backoff.reset();
      this.emit('connected', connack.sessionPresent);
    });
    this.client.on('close', () => this.onClose());
    this.client.on('error', (err) => {
      // While we end the session, a message that still arrives gets its PUBACK
      // written to a closed stream ("write after end"): our own shutdown, not a fault.
      if (this.stopping) this.log.debug({ event: 'mqtt.error', err: err.message, url: conn.url, stopping: true }, 'MQTT error while stopping');
      else this.log.warn({ event: 'mqtt.error', err: err.message, url: conn.url }, 'MQTT error');
    });
    this.client.on('message', (topic, payload) => this.emit('message', topic, payload));
    this.client.on('disconnect', (packet) => {
      if (packet.reasonCode === 0x8e) this.emit('takenOver');
    });
  }

  get connected(): boolean {
    return this.isConnected;
  }

  /**
   * Subscribe, and say so in the log when the broker refuses any of it (an
   * ACL that does not grant a filter answers 0x80 in its SUBACK): `what`
   * says what then cannot arrive and what to check. Calls `ok` when all of it
   * was granted.
   */
  subscribeChecked(filters: string | Record<string, { qos: 0 | 1 | 2 }>, what: string, ok?: () => void): void {
    const granted = (err: Error | null | undefined, grants?: { topic: string; qos: number }[]) => {
      const refused = grants?.filter((g) => g.qos >= 0x80) ?? [];
      if (err || refused.length) {
        this.log.error({ event: 'mqtt.subscribe-refused', err: err?.message, refused: refused.map((g) => g.topic) }, `broker refused a subscription: ${what}`);
        return;
      }
      ok?.();
    };
    if (typeof filters === 'string') this.client.subscribe(filters, { qos: 1 }, granted);
    else this.client.subscribe(filters, granted);
  }

  /** Publish and resolve when the broker answered (PUBACK), or reject with its reason. */
  publishAsync(topic: string, payload: Buffer, opts: IClientPublishOptions = { qos: 1 }): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.publish(topic, payload, opts, (err) => (err ? reject(err) : resolve()));
    });
  }

  async stop(lastWords?: { topic: string; payload: Buffer; retain: boolean }): Promise<void> {
    this.stopping = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (lastWords && this.isConnected) {
      await Promise.race([
        this.publishAsync(lastWords.topic, lastWords.payload, { qos: 1, retain: lastWords.retain }).catch(() => {}),
        new Promise((r) => setTimeout(r, 1000).unref()),
      ]);
    }
    // A graceful end waits for in-flight publishes; a broker that went away never
    // answers them, so after a moment end it hard instead of hanging the caller.
    await new Promise<void>((resolve) => {
      const hard = setTimeout(() => this.client.end(true, {}, () => resolve()), 2000);
      hard.unref();
      this.client.end(false, {}, () => {
        clearTimeout(hard);
        resolve();
      });
    });
  }

  /**
   * For a short-lived command: resolves once connected; rejects at once when
   * the first attempt fails (refused, unreachable, not authorized) instead of
   * waiting out a timeout while the broker is down, or after timeoutMs when
   * the broker does not answer at all.
   */
  firstConnect(timeoutMs: number): Promise<void> {
    if (this.isConnected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.off('connected', onConnect);
        this.client.off('error', onError);
        this.client.off('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onConnect = () => done();
      const onError = (err: Error & { code?: string | number }) => done(new Error(`broker ${this.conn.url} ${describeConnectError(err)}`));
      const onClose = () => done(new Error(`broker ${this.conn.url} closed the connection before accepting it`));
      const timer = setTimeout(() => done(new Error(`broker ${this.conn.url} did not answer within ${timeoutMs} ms`)), timeoutMs);
      this.once('connected', onConnect);
      this.client.once('error', onError);
      this.client.once('close', onClose);
    });
  }

  private onClose(): void {
    if (this.isConnected) {
      this.isConnected = false;
      // Our own stop() is not a lost link: nobody needs warning about it.
      if (!this.stopping) this.emit('disconnected');
    }
    if (this.stopping || this.reconnectTimer) return;
    const delay = this.backoff.next();
    this.log.debug({ event: 'mqtt.reconnect-scheduled', delayMs: delay }, 'reconnecting later');
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.stopping) this.client.reconnect();
    }, delay);
    // Not unref'd: a receiver whose broker is gone has nothing else keeping
    // its process alive, and must still be there when the broker returns.
  }
}
