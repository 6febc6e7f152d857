// The uplink's drain on a real (in-process, aedes) broker: after a
// reconnect every alarm and incident goes first, whatever waits; then the
// other lanes share the link by weight, so a long backlog of one lane does not
// stop the others; and nothing leaves the outbox on a PUBACK.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testTrust } from '../helpers/command-keys.ts';
import { MqttConnectionSchema } from '../../common/mqtt-session.ts';
import { type Db, migrate, openDatabase } from '../../common/sqlite.ts';
import { laneItem } from '../../gateway/lane-item.ts';
import { OUTBOX_SCHEMA, Outbox, OutboxConfigSchema } from '../../gateway/outbox.ts';
import { Uplink } from '../../gateway/uplink.ts';
import { InProcessBroker } from '../../scripts/lib/aedes-broker.ts';
import { until } from '../../scripts/lib/until.ts';

const ref = { fleet: 'city', vehicle: 'bus-1' };

describe('uplink drain', () => {
  let dir: string;
  let db: Db;
  let broker: InProcessBroker;
  let url: string;
  const users = { 'city/bus-1': 'bus', dispatch: 'dispatch', 'monitor/test': 'monitor' };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'bg-drain-'));
    db = openDatabase(join(dir, 'outbox.db'));
    migrate(db, [OUTBOX_SCHEMA]);
    broker = await InProcessBroker.start(users);
    url = broker.url;
  });
  afterAll(async () => {
    await broker.stop();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('alarms and incidents first, then clips, track and diagnostics interleaved by weight (8 : 2 : 1); all stay in the outbox until receipted', async () => {
    const outbox = new Outbox(db, OutboxConfigSchema.parse({ window: 1000 }));
    const put = (kind: 'footage' | 'position' | 'diag' | 'alarm' | 'incident', lane: 'clip' | 'track' | 'diag' | 'alarm' | 'incident', n: number) => {
      for (let i = 0; i < n; i++) {
        const msg = { id: `${lane}-${i}`, lane };
        outbox.write(lane, () => outbox.append(laneItem(ref, kind, lane as never, msg)));
      }
    };
    // The backlog of a day offline, the alarms stored last.
    put('footage', 'clip', 40);
    put('position', 'track', 40);
    put('diag', 'diag', 40);
    put('alarm', 'alarm', 2);
    put('incident', 'incident', 1);

    const seen: string[] = [];
    const sub = await mqtt.connectAsync(url, { clientId: 'monitor/test', username: 'monitor/test', password: users['monitor/test'] });
    sub.on('message', (topic, payload) => {
      if (!topic.endsWith('/status')) seen.push((JSON.parse(payload.toString()) as { lane: string }).lane);
    });
    await sub.subscribeAsync('busguard/v1/+/+/up/+', { qos: 1 });
    const uplink = new Uplink({
      ref,
      mqtt: MqttConnectionSchema.parse({ url, protocolVersion: 4, password: users['city/bus-1'] }),
      outbox,
      resendMs: 3_600_000,
      agent: 'test',
      log: pino({ level: 'silent' }),
      trust: testTrust(ref),
    });
    uplink.start();
    try {
      await until(() => seen.length >= 123, 10_000, 'every message at the subscriber');
      expect(seen.slice(0, 3).sort()).toEqual(['alarm', 'alarm', 'incident']);
      const next = seen.slice(3, 3 + 33);
      const count = (lane: string) => next.filter((l) => l === lane).length;
      expect(count('clip')).toBe(24);
      expect(count('track')).toBe(6);
      expect(count('diag')).toBe(3);
      // PUBACKed, not receipted: still held.
      expect(outbox.size()).toBe(123);
    } finally {
      await uplink.stop();
      await sub.endAsync();
    }
  });

  it('unreceipted, an alarm goes again every resendMs; the track backs off (×2 each time, at most ×16), so a fleet that dispatch cannot keep up with does not multiply its load', async () => {
    const outbox = new Outbox(db, OutboxConfigSchema.parse({}));
    for (const lane of ['alarm', 'track'] as const) {
      const kind = lane === 'alarm' ? 'alarm' : 'position';
      const msg = { id: `${lane}-backoff`, lane };
      outbox.write(lane, () => outbox.append(laneItem(ref, kind, lane as never, msg)));
    }
    const sent = { alarm: 0, track: 0 };
    const sub = await mqtt.connectAsync(url, { clientId: 'monitor/test', username: 'monitor/test', password: users['monitor/test'] });
    sub.on('message', (topic, payload) => {
      const m = JSON.parse(payload.toString()) as { id?: string; lane?: 'alarm' | 'track' };
      if (m.id?.endsWith('-backoff') && m.lane) sent[m.lane]++;
    });
    await sub.subscribeAsync('busguard/v1/+/+/up/+', { qos: 1 });
    const uplink = new Uplink({ ref, mqtt: MqttConnectionSchema.parse({ url, protocolVersion: 4, password: users['city/bus-1'] }), outbox, resendMs: 200, agent: 'test', log: pino({ level: 'silent' }), trust: testTrust(ref) });
    uplink.start();
    try {
      // Sends of the track at 0, 0.2, 0.6, 1.4, 3.0 s (5 in 3.2 s); the alarm every 0.2 s (16).
      await until(() => sent.alarm >= 12, 20_000, 'the alarm re-sent a dozen times');
      expect(sent.track).toBeGreaterThanOrEqual(2);
      expect(sent.track).toBeLessThanOrEqual(Math.ceil(sent.alarm / 2));
    } finally {
      await uplink.stop();
      await sub.endAsync();
    }
  });
});

describe('uplink: eviction records', () => {
  it('a ledger record read for sending is no longer open to amendment, even before it is published', () => {
    const dir = mkdtempSync(join(tmpdir(), 'bg-diag-'));
    const db = openDatabase(join(dir, 'outbox.db'));
    try {
      migrate(db, [OUTBOX_SCHEMA]);
      const outbox = new Outbox(db, OutboxConfigSchema.parse({}));
      const ids = ['evicted-1', 'evicted-2'];
      for (const id of ids) outbox.write('ledger', () => outbox.append(laneItem(ref, 'diag', 'ledger', { id })));
      const uplink = new Uplink({ ref, mqtt: MqttConnectionSchema.parse({ url: 'mqtt://127.0.0.1:1' }), outbox, resendMs: 1000, agent: 'test', log: pino({ level: 'silent' }), trust: testTrust(ref) });
      expect(ids.map((id) => uplink.takenForSending(id))).toEqual([false, false]);
      // The drain reads a lane in chunks: the first goes out now, the second waits its turn with the payload it was read with.
      const first = (uplink as unknown as { take(lane: 'ledger'): { id: string } | undefined }).take('ledger');
      expect(first?.id).toBe('evicted-1');
      // Otherwise Diagnostics could amend evicted-2's row while the uplink holds it, and the old payload would go out.
      expect(ids.map((id) => uplink.takenForSending(id))).toEqual([true, true]);
    } finally {
      db.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
