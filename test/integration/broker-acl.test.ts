// The shipped mosquitto.conf + acl, on a real Mosquitto: a vehicle is
// confined to its own topics; only dispatch writes the command topics.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Mosquitto, USERS } from '../helpers/mosquitto.ts';

describe('broker ACL (protocol/mosquitto/acl)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'acl-'));
  let broker: Mosquitto;
  const clients: MqttClient[] = [];
  const connect = async (username: string, password = USERS[username]) => {
    const c = mqtt.connect(broker.url, { protocolVersion: 5, username, password, reconnectPeriod: 0, clientId: `t-${username.replace('/', '-')}-${clients.length}` });
    clients.push(c);
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
    });
    return c;
  };

  beforeAll(async () => {
    broker = await Mosquitto.start(dir);
  });
  afterAll(async () => {
    for (const c of clients) c.end(true);
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a vehicle publishing on another vehicle\'s topic (MQTT 5 reason 0x87), and dispatch never sees it', async () => {
    const dispatch = await connect('dispatch');
    const seen: string[] = [];
    dispatch.on('message', (topic) => seen.push(topic));
    await dispatch.subscribeAsync('$share/dispatch/busguard/v1/+/+/up/+', { qos: 1 });
    const bus1 = await connect('city/bus-1');
    const refused = await bus1.publishAsync('busguard/v1/city/bus-2/up/alarm', '{"v":1}', { qos: 1 }).then(
      () => null,
      (err: Error & { code?: number }) => err,
    );
    expect(refused).not.toBeNull();
    expect(refused!.code).toBe(0x87);
    // Its own topic goes through; once that arrives, the refused one would have too.
    await bus1.publishAsync('busguard/v1/city/bus-1/up/position', '{"v":1}', { qos: 1 });
    await new Promise<void>((resolve) => {
      const check = () => (seen.includes('busguard/v1/city/bus-1/up/position') ? resolve() : setTimeout(check, 10));
      check();
    });
    expect(seen).not.toContain('busguard/v1/city/bus-2/up/alarm');
  });

  it('refuses a vehicle reading another vehicle\'s commands, or writing commands at all', async () => {
    const bus1 = await connect('city/bus-1');
    const got: string[] = [];
    bus1.on('message', (topic) => got.push(topic));
    // Mosquitto 2.0's acl_file grants the SUBSCRIBE and checks read access on
    // each delivery, so what matters is that nothing of bus-2's arrives.
    await bus1.subscribeAsync('busguard/v1/city/bus-2/down/+', { qos: 1 });
    const own = await bus1.subscribeAsync('busguard/v1/city/bus-1/down/+', { qos: 1 });
    expect(own[0]!.qos).toBe(1);
    const dispatch = await connect('dispatch');
    await dispatch.publishAsync('busguard/v1/city/bus-2/down/ack', '{"for":"bus-2"}', { qos: 1 });
    await dispatch.publishAsync('busguard/v1/city/bus-1/down/ack', '{"for":"bus-1"}', { qos: 1 });
    // Delivered in order: once bus-1's own arrives, bus-2's would have come first.
    await new Promise<void>((resolve) => {
      const check = () => (got.includes('busguard/v1/city/bus-1/down/ack') ? resolve() : setTimeout(check, 10));
      check();
    });
    expect(got).toEqual(['busguard/v1/city/bus-1/down/ack']);
    const err = await bus1.publishAsync('busguard/v1/city/bus-1/down/ack', '{}', { qos: 1 }).then(() => null, (e: Error & { code?: number }) => e);
    expect(err?.code).toBe(0x87);
  });

  it('refuses a wrong password and an unknown user', async () => {
    await expect(connect('city/bus-1', 'wrong')).rejects.toThrow(/Not authorized|Bad User Name or Password/i);
    await expect(connect('city/bus-9', 'x')).rejects.toThrow(/Not authorized|Bad User Name or Password/i);
  });
});
