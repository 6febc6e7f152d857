// The bus's check on every command from dispatch before it acts on it
// (protocol/signed-command.ts): signed by a key in trust.dispatchKeys, for
// this vehicle and this kind, and, once the bus has GPS time, not expired. A
// refusal is logged as downlink.refused with the reason and changes nothing.

import type { KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import { openCommand } from '../protocol/signed-command.ts';
import type { DownlinkKind, VehicleRef } from '../protocol/topics.ts';

export interface CommandTrustOptions {
  self: VehicleRef;
  /** The keys this bus trusts, by id. */
  keys: ReadonlyMap<string, KeyObject>;
  /** How far this bus's clock may be off dispatch's before a command looks expired (or too far ahead). */
  clockSkewS: number;
  /** The bus's time once it can trust it (GPS time), else null: expiry is then not checked. */
  now: () => Date | null;
  log: Logger;
}

export class CommandTrust {
  constructor(private readonly o: CommandTrustOptions) {}

  /** The command's own JSON text, or null (logged) when the bus must not act on it. */
  open(kind: DownlinkKind, topic: string, payload: Buffer): string | null {
    const opened = openCommand(payload, { kind, self: this.o.self, keys: this.o.keys, now: this.o.now(), skewS: this.o.clockSkewS });
    if (!opened.ok) {
      this.o.log.warn({ event: 'downlink.refused', topic, kind, reason: opened.error }, `${kind} command refused`);
      return null;
    }
    // Who signed it, on the record: a dispatch server, or a person with a key of their own under its grant.
    const { key, by, personal } = opened.value;
    this.o.log.debug({ event: 'downlink.signed', topic, kind, key, by, personal }, `${kind} command signed by ${by}${personal ? ` (own key, grant of ${key})` : ` (key ${key})`}`);
    return opened.value.msg;
  }
}
