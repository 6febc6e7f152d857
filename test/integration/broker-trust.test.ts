// Who may do what on the fleet's broker, asserted against a real Mosquitto
// started from the shipped configuration (protocol/mosquitto/mosquitto.conf,
// its dynamic-security file made by protocol/acl.ts) with its mutual-TLS
// listener and a fleet CA made for the test (common/pki.ts). Before: acl_file
// did not check SUBSCRIBE, so a bus joined dispatch's $share group (9 such
// intruders: each alarm took ~20 s instead of ~1 s), client ids were free (a
// bus took dispatch's session over 132 times in 30 s), and nothing was TLS.

import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttConnectionSchema } from '../../common/mqtt-session.ts';
import { revoke } from '../../common/pki.ts';
import { receiverFilters } from '../../protocol/acl.ts';
import { Mosquitto, type TestPki, USERS, makeTestPki } from '../../scripts/lib/mosquitto.ts';

const INTRUDERS = Array.from({ length: 9 }, (_, i) => `city/bus-${i + 3}`);

describe('the fleet broker: identities, confined subscriptions, bound client ids, TLS', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bg-broker-trust-'));
  let pki: TestPki;
  let broker: Mosquitto;
  const open: MqttClient[] = [];

  beforeAll(async () => {
    pki = await makeTestPki(dir, ['city/bus-1', 'city/bus-2', 'dispatch/rx-a', ...INTRUDERS]);
    broker = await Mosquitto.start(dir, { tls: pki });
  }, 60_000);
  afterAll(async () => {
    await Promise.all(open.map((c) => c.endAsync(true).catch(() => {})));
    await broker?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Over mutual TLS with the identity's certificate, or on loopback with a password; null when the broker refuses. */
  async function connect(who: { cert: string } | { user: string; password?: string } | { anonymousTls: true }, clientId?: string): Promise<MqttClient | null> {
    const base: IClientOptions = { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, clean: true };
    let url = broker.url;
    let opts: IClientOptions;
    if ('cert' in who) {
      const c = pki.clients[who.cert]!;
      url = broker.tlsUrl;
      opts = { ...base, ca: readFileSync(pki.caCert), cert: readFileSync(c.cert), key: readFileSync(c.key), clientId: clientId ?? who.cert };
    } else if ('user' in who) {
      opts = { ...base, username: who.user, password: who.password ?? USERS[who.user], clientId: clientId ?? who.user };
    } else {
      url = broker.tlsUrl;
      opts = { ...base, ca: readFileSync(pki.caCert), clientId: clientId ?? 'nobody' };
    }
    try {
      const c = await mqtt.connectAsync(url, opts);
      open.push(c);
      return c;
    } catch {
      return null;
    }
  }

  async function publish(c: MqttClient, topic: string): Promise<'allowed' | 'refused'> {
    try {
      await c.publishAsync(topic, '{}', { qos: 1 });
      return 'allowed';
    } catch (err) {
      expect(String((err as Error).message)).toMatch(/not authori[sz]ed|135/i);
      return 'refused';
    }
  }

  async function subscribe(c: MqttClient, filter: string): Promise<'allowed' | 'refused'> {
    try {
      const granted = await c.subscribeAsync(filter, { qos: 1 });
      return granted.every((g) => g.qos < 128) ? 'allowed' : 'refused';
    } catch (err) {
      // mqtt.js rejects a SUBACK whose reason code is a refusal.
      expect(String((err as Error).message)).toMatch(/not authori[sz]ed/i);
      return 'refused';
    }
  }

  const T = (v: string, dir: 'up' | 'down', kind: string) => `busguard/v1/city/${v}/${dir}/${kind}`;

  it('the refusal matrix: each identity × each action, as the table in protocol/acl.ts says', async () => {
    const identities = {
      'bus A': { cert: 'city/bus-1' },
      'bus B': { cert: 'city/bus-2' },
      dispatch: { cert: 'dispatch/rx-a' },
      'a monitor': { user: 'monitor/test' },
    } as const;
    const actions: [string, (c: MqttClient) => Promise<string>][] = [
      ['publish bus A up/alarm', (c) => publish(c, T('bus-1', 'up', 'alarm'))],
      ['publish bus A up/file/x/init', (c) => publish(c, T('bus-1', 'up', 'file/f-1/init'))],
      ['publish bus B up/position', (c) => publish(c, T('bus-2', 'up', 'position'))],
      ['publish bus A down/receipt', (c) => publish(c, T('bus-1', 'down', 'receipt'))],
      ['publish bus A down/ack', (c) => publish(c, T('bus-1', 'down', 'ack'))],
      ['publish outside busguard/', (c) => publish(c, 'elsewhere/x')],
      ['subscribe bus A down/+', (c) => subscribe(c, T('bus-1', 'down', '+'))],
      ['subscribe bus B down/+', (c) => subscribe(c, T('bus-2', 'down', '+'))],
      ['subscribe every bus up/#', (c) => subscribe(c, 'busguard/v1/+/+/up/#')],
      ['subscribe bus B up/+', (c) => subscribe(c, T('bus-2', 'up', '+'))],
      ['join dispatch group (alarms)', (c) => subscribe(c, '$share/dispatch/busguard/v1/+/+/up/alarm')],
      ['join dispatch group (files)', (c) => subscribe(c, '$share/dispatch/busguard/v1/+/+/up/file/#')],
      ['subscribe #', (c) => subscribe(c, '#')],
    ];
    const A = 'allowed';
    const R = 'refused';
    // One column per identity, in the order above; one row per action.
    const expected: Record<string, [string, string, string, string]> = {
      'publish bus A up/alarm': [A, R, R, R],
      'publish bus A up/file/x/init': [A, R, R, R],
      'publish bus B up/position': [R, A, R, R],
      'publish bus A down/receipt': [R, R, A, R],
      'publish bus A down/ack': [R, R, A, R],
      'publish outside busguard/': [R, R, R, R],
      'subscribe bus A down/+': [A, R, R, R],
      'subscribe bus B down/+': [R, A, R, R],
      'subscribe every bus up/#': [R, R, R, A],
      'subscribe bus B up/+': [R, R, R, A],
      'join dispatch group (alarms)': [R, R, A, R],
      'join dispatch group (files)': [R, R, A, R],
      'subscribe #': [R, R, R, R],
    };
    const got: Record<string, string[]> = {};
    for (const [name, who] of Object.entries(identities)) {
      const c = await connect(who);
      expect(c, `${name} connects`).not.toBeNull();
      for (const [action, run] of actions) (got[action] ??= []).push(await run(c!));
      await c!.endAsync();
    }
    expect(got).toEqual(expected);
    // What a receiver really subscribes to is exactly what it is allowed.
    const d = (await connect(identities.dispatch))!;
    for (const f of receiverFilters('dispatch')) expect(await subscribe(d, f), f).toBe('allowed');
    await d.endAsync();
  });

  it('nobody gets in without an identity: no certificate, a stranger, a dispatcher with a person\'s name, a wrong password', async () => {
    expect(await connect({ anonymousTls: true })).toBeNull();
    expect(await connect({ user: 'person/wang', password: 'wang-secret' })).toBeNull();
    expect(await connect({ user: 'city/bus-1', password: 'wrong' })).toBeNull();
    expect(await connect({ user: '' as string, password: '' })).toBeNull();
    // A bus's certificate is no password: the loopback listener wants both.
    expect(await connect({ user: 'city/bus-9' })).toBeNull();
  });

  it('a client id is its identity: a bus asking for dispatch\'s client id does not take dispatch\'s session over', async () => {
    const d = (await connect({ cert: 'dispatch/rx-a' }))!;
    let closed = 0;
    d.on('close', () => closed++);
    await d.subscribeAsync('$share/dispatch/busguard/v1/+/+/up/alarm', { qos: 1 });
    const got: string[] = [];
    d.on('message', (_t, p) => got.push(p.toString()));
    // Over TLS and over loopback with a password, each a few times.
    for (let i = 0; i < 3; i++) {
      const intruder = await connect({ cert: 'city/bus-2' }, 'dispatch/rx-a');
      expect(intruder).not.toBeNull();
      const local = await connect({ user: 'city/bus-2' }, 'dispatch/rx-a');
      expect(local).not.toBeNull();
      await intruder!.endAsync();
      await local!.endAsync();
    }
    const bus = (await connect({ cert: 'city/bus-1' }))!;
    await bus.publishAsync(T('bus-1', 'up', 'alarm'), 'still-here', { qos: 1 });
    await waitFor(() => got.includes('still-here'), 10_000);
    expect(closed).toBe(0);
    expect(d.connected).toBe(true);
    await bus.endAsync();
    await d.endAsync();
  });

  it('9 intruders cannot join the group: every alarm published once reaches the receiver, none lost or left to a re-send', async () => {
    const intruders: MqttClient[] = [];
    for (const id of INTRUDERS) {
      const c = (await connect({ cert: id }))!;
      intruders.push(c);
      for (const f of receiverFilters('dispatch')) expect(await subscribe(c, f), `${id} ${f}`).toBe('refused');
    }
    const d = (await connect({ cert: 'dispatch/rx-a' }))!;
    for (const f of receiverFilters('dispatch')) await d.subscribeAsync(f, { qos: 1 });
    const got = new Set<string>();
    d.on('message', (topic, p) => {
      if (topic.endsWith('/up/alarm')) got.add(p.toString());
    });
    const bus = (await connect({ cert: 'city/bus-1' }))!;
    // Before, with 3 intruders in the group dispatch got 10 of 40 such alarms.
    for (let i = 0; i < 40; i++) await bus.publishAsync(T('bus-1', 'up', 'alarm'), `alarm-${i}`, { qos: 1 });
    await waitFor(() => got.size === 40, 15_000);
    expect(got.size).toBe(40);
    for (const c of [...intruders, bus, d]) await c.endAsync();
  });

  it('a revoked certificate is refused once the CRL is re-issued and the broker reloads it; the others still connect', async () => {
    expect(await connect({ cert: 'city/bus-11' })).not.toBeNull();
    revoke(pki.caDir, pki.clients['city/bus-11']!.cert);
    broker.reload();
    await waitFor(async () => (await connect({ cert: 'city/bus-11' })) === null, 10_000);
    expect(await connect({ cert: 'city/bus-11' })).toBeNull();
    expect(await connect({ cert: 'city/bus-10' })).not.toBeNull();
  });

  it('config: a broker off this machine is reached over TLS only; certificate and key go together', () => {
    const parse = (m: object) => MqttConnectionSchema.safeParse({ url: 'mqtt://127.0.0.1:1883', ...m });
    expect(parse({}).success).toBe(true);
    expect(parse({ url: 'mqtt://localhost:1883' }).success).toBe(true);
    const clear = parse({ url: 'mqtt://broker.fleet.example:1883' });
    expect(clear.success).toBe(false);
    expect(JSON.stringify(clear.error?.issues)).toMatch(/TLS only: use mqtts/);
    expect(parse({ url: 'ws://10.0.0.5:9001' }).success).toBe(false);
    expect(parse({ url: 'mqtts://broker.fleet.example:8883', caFile: 'ca.crt', certFile: 'a.crt', keyFile: 'a.key' }).success).toBe(true);
    expect(JSON.stringify(parse({ url: 'mqtts://b:8883', certFile: 'a.crt' }).error?.issues)).toMatch(/go together/);
    expect(JSON.stringify(parse({ caFile: 'ca.crt' }).error?.issues)).toMatch(/needs an mqtts/);
  });
});

async function waitFor(ok: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}
