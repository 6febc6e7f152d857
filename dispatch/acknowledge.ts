// A dispatcher acknowledges an alarm: recorded first (so a running receiver
// re-sends it until the bus confirms), then published at once so the
// driver's LED changes within a round trip.

import type { Logger } from 'pino';
import type { AckMessage } from '../protocol/messages.ts';
import { DispatchSigner, sendOnce } from './command-signer.ts';
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

export async function acknowledge(
  store: DispatchStore,
  config: DispatchConfig,
  idOrPrefix: string,
  by: string,
  log: Logger,
  timeoutMs = 5000,
): Promise<AckResult> {
  // The key first: a dispatcher who cannot sign learns it before anything is recorded.
  const signer = DispatchSigner.fromConfig(config, by);
  const found = store.find(idOrPrefix);
  const recorded = store.acknowledge(found.id, by, new Date().toISOString());
  const alarm = store.get(found.id)!;
  const msg: AckMessage = { v: 1, alarmId: alarm.id, by: alarm.ackBy!, at: alarm.ackAt! };
  const sent = await sendOnce(config, signer, 'ack', alarm, msg, log, timeoutMs);
  return { alarm, recorded, published: sent.published, ...(sent.error ? { publishError: sent.error } : {}) };
}
