// What the bus does with each kind of command from dispatch (…/down/{kind}),
// one handler per kind of protocol/kinds.ts DOWNLINK: the type makes a
// forgotten kind a compile error. A topic that is not one of this vehicle's
// command topics, or a kind this software does not know, is logged and
// refused; nothing else is done with it (before this table, any kind that
// was not a receipt, a file receipt or a footage request was taken for an
// acknowledgement).

import type { Logger } from 'pino';
import type { z } from 'zod';
import { DOWNLINK, type DownlinkMessage } from '../protocol/kinds.ts';
import { decode } from '../protocol/messages.ts';
import { type DownlinkKind, type VehicleRef, parseTopic, vehicleBase } from '../protocol/topics.ts';
import type { CommandTrust } from './command-trust.ts';

export type DownlinkHandlers = { [K in DownlinkKind]: (msg: DownlinkMessage<K>, topic: string) => void };

/**
 * Check one downlink message's signature (CommandTrust), decode it and hand it
 * to its kind's handler; refusals are logged (downlink.refused for a command
 * the bus must not trust, downlink.rejected for one it cannot read).
 */
export function takeDownlink(ref: VehicleRef, trust: CommandTrust, handlers: DownlinkHandlers, log: Logger, topic: string, payload: Buffer): void {
  const parsed = parseTopic(topic);
  if (!parsed || parsed.direction !== 'down' || !topic.startsWith(`${vehicleBase(ref)}/down/`)) {
    const kind = topic.startsWith(`${vehicleBase(ref)}/down/`) ? topic.slice(`${vehicleBase(ref)}/down/`.length) : null;
    const reason = kind !== null ? `unknown command kind "${kind}" (this agent knows ${Object.keys(DOWNLINK).join(', ')})` : "not one of this vehicle's command topics";
    log.warn({ event: 'downlink.rejected', topic, reason }, 'ignored message');
    return;
  }
  take(parsed.kind, trust, handlers, log, topic, payload);
}

function take<K extends DownlinkKind>(kind: K, trust: CommandTrust, handlers: DownlinkHandlers, log: Logger, topic: string, payload: Buffer): void {
  const schema: z.ZodType | null = DOWNLINK[kind].schema;
  if (schema === null) {
    // File receipts: taken (and checked) by the file upload listening on the same session.
    handlers[kind](undefined as DownlinkMessage<K>, topic);
    return;
  }
  const text = trust.open(kind, topic, payload);
  if (text === null) return;
  const msg = decode(schema, text);
  if (!msg.ok) {
    log.warn({ event: 'downlink.rejected', topic, reason: msg.error }, `malformed ${kind} ignored`);
    return;
  }
  handlers[kind](msg.value as DownlinkMessage<K>, topic);
}
