// A dispatcher acknowledges an alarm: recorded first (so a running receiver
// re-sends it until the bus confirms), then published at once so the
// driver's LED changes within a round trip.

import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { type AckMessage, encode } from '../protocol/messages.ts';
import { MqttSession } from '../common/mqtt-session.ts';
import { downlinkTopic } from '../protocol/topics.ts';
import type { DispatchConfig } from './config.ts';
import type { DispatchStore, StoredAlarm } from './store.ts';

export interface AckResult {
  alarm: StoredAlarm;
  /** false when it had already been acknowledged (by whom stays as first recorded). */
  recorded: boolean;
  /** The broker took the ack (PUBACK); if not, a running receiver re-sends it. */
  published: boolean;
  publishError?: string;
}

let ackSessions = 0;

export async function acknowledge(
  store: DispatchStore,
  config: DispatchConfig,
  idOrPrefix: string,
  by: string,
  log: Logger,
  timeoutMs = 5000,
): Promise<AckResult> {
  const found = store.find(idOrPrefix);
  const recorded = store.acknowledge(found.id, by, new Date().toISOString());
  const alarm = store.get(found.id)!;
  const msg: AckMessage = { v: 1, alarmId: alarm.id, by: alarm.ackBy!, at: alarm.ackAt! };
  // A short-lived session of its own: a clean one, so it never takes over a receiver's.
  const session = new MqttSession(
    { ...config.mqtt, sessionExpiryS: 0 },
    // Unique per call: a second ack from the same process must not take over the first one's session.
    { username: 'dispatch', clientId: `dispatch-ack-${hostname()}-${process.pid}-${++ackSessions}` },
    log,
  );
  try {
    await session.firstConnect(timeoutMs);
    // Bounded: if the broker goes away before its PUBACK, the receiver's re-send loop delivers the ack.
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        session.publishAsync(downlinkTopic(alarm, 'ack'), encode(msg)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no PUBACK from ${config.mqtt.url} in ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
    return { alarm, recorded, published: true };
  } catch (err) {
    return { alarm, recorded, published: false, publishError: (err as Error).message };
  } finally {
    await session.stop();
  }
}
