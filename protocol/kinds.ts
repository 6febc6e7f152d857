// Every kind of message on the wire, one entry each. A new kind is an entry
// here (and its name in protocol/topics.ts); the compiler then asks for its
// handler on the other end (dispatch/uplink-handlers.ts for the uplink,
// gateway/downlink.ts for the downlink), and dispatch subscribes to it
// because it is in this table. Nothing else lists kinds by name.

import type { z } from 'zod';
import type { Lane } from './lanes.ts';
import {
  AckMessageSchema,
  AlarmWireSchema,
  BusReceiptMessageSchema,
  DiagWireSchema,
  FootageAnswerWireSchema,
  FootageRequestSchema,
  PositionWireSchema,
  ReceiptMessageSchema,
  RepeatWireSchema,
  StatusMessageSchema,
} from './messages.ts';
import type { DownlinkKind, UplinkKind } from './topics.ts';

export interface UplinkKindSpec {
  /** The payload as it travels (validated whole at dispatch; a failure is refused with its reason). */
  wire: z.ZodType;
  /** The outbox lanes it comes in (its envelope's `lane`); null: not a lane message (it is not receipted). */
  lanes: readonly Lane[] | null;
  /**
   * How dispatch subscribes: 'shared', receivers of a group split the work;
   * 'plain', every receiver gets it (a retained status is not delivered to
   * shared subscriptions, MQTT 5 §4.8.2).
   */
  subscribe: 'shared' | 'plain';
  /**
   * Which of a receiver's two connections takes it: 'alarms', its own
   * connection, handled and receipted at once, so an alarm never waits
   * behind the fleet's track at the broker or in dispatch; 'bulk', the rest,
   * committed in batches (dispatch/bulk-ingest.ts).
   */
  connection: 'alarms' | 'bulk';
}

/** Bus → dispatch (…/up/{kind}). Evidence files travel as file transfers (protocol/file-transfer.ts), not as a kind. */
export const UPLINK = {
  alarm: { wire: AlarmWireSchema, lanes: ['alarm'], subscribe: 'shared', connection: 'alarms' },
  incident: { wire: AlarmWireSchema, lanes: ['incident'], subscribe: 'shared', connection: 'alarms' },
  repeat: { wire: RepeatWireSchema, lanes: ['alarm', 'incident'], subscribe: 'shared', connection: 'alarms' },
  position: { wire: PositionWireSchema, lanes: ['track', 'followup'], subscribe: 'shared', connection: 'bulk' },
  diag: { wire: DiagWireSchema, lanes: ['diag', 'ledger'], subscribe: 'shared', connection: 'bulk' },
  footage: { wire: FootageAnswerWireSchema, lanes: ['clip'], subscribe: 'shared', connection: 'bulk' },
  receipt: { wire: BusReceiptMessageSchema, lanes: null, subscribe: 'shared', connection: 'bulk' },
  status: { wire: StatusMessageSchema, lanes: null, subscribe: 'plain', connection: 'bulk' },
} as const satisfies Record<UplinkKind, UplinkKindSpec>;

/** The payload of an uplink kind as it travels. */
export type UplinkWire<K extends UplinkKind> = z.output<(typeof UPLINK)[K]['wire']>;

/** The lanes an uplink kind may be stored in on the bus. */
export type UplinkLane<K extends UplinkKind> = (typeof UPLINK)[K]['lanes'] extends readonly (infer L extends Lane)[] ? L : never;

export interface DownlinkKindSpec {
  /** The payload, or null for file-transfer receipts (their own framing: protocol/file-transfer.ts). */
  schema: z.ZodType | null;
}

/** Dispatch → one bus (…/down/{kind}). */
export const DOWNLINK = {
  receipt: { schema: ReceiptMessageSchema },
  ack: { schema: AckMessageSchema },
  footage: { schema: FootageRequestSchema },
  file: { schema: null },
} as const satisfies Record<DownlinkKind, DownlinkKindSpec>;

/** The payload of a downlink kind with a schema. */
export type DownlinkMessage<K extends DownlinkKind> = (typeof DOWNLINK)[K]['schema'] extends z.ZodType<infer T> ? T : never;
