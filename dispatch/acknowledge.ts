// A dispatcher acknowledges an alarm: recorded in the store, from which the
// running receiver signs it in the name of the dispatcher and sends it at
// once (and again until the bus confirms); the driver's LED follows.

import { setTimeout as sleep } from 'node:timers/promises';
import { DispatchSigner } from './command-signer.ts';
import type { PersonSigner } from './person-signer.ts';
import type { DispatchConfig } from './config.ts';
import type { DispatchStore, StoredAlarm } from './store.ts';

export interface AckResult {
  alarm: StoredAlarm;
  /** false when it had already been acknowledged (by whom stays as first recorded). */
  recorded: boolean;
}

/** Record an acknowledgement by `by`; with `person`, signed by that person's own key (and `by` is theirs). */
export function acknowledge(store: DispatchStore, config: DispatchConfig, idOrPrefix: string, by: string, person?: PersonSigner): AckResult {
  // The key first: a dispatcher whose acknowledgement could never be signed learns it before anything is recorded.
  DispatchSigner.fromConfig(config, by);
  const found = store.find(idOrPrefix);
  const who = person?.person ?? by;
  const at = new Date().toISOString();
  const command = person ? person.seal('ack', found, { v: 1, alarmId: found.id, by: who, at }).payload.toString() : null;
  const recorded = store.acknowledge(found, who, at, command);
  return { alarm: store.get(found.id, found)!, recorded };
}

/** Until the bus has confirmed the acknowledgement (it shows on its LED), or null after `timeoutMs`. */
export async function ackSeen(store: DispatchStore, alarm: StoredAlarm, timeoutMs: number): Promise<string | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen = store.get(alarm.id, alarm)?.ackSeenAt ?? null;
    if (seen !== null || Date.now() >= deadline) return seen;
    await sleep(100);
  }
}
