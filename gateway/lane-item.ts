// A message made ready for the outbox: its topic from its kind, its lane
// checked against the lanes its kind may travel in (protocol/kinds.ts) when
// it compiles. Producers on the bus build every outbox row through here.

import { type UplinkLane } from '../protocol/kinds.ts';
import type { Lane } from '../protocol/lanes.ts';
import { encode } from '../protocol/messages.ts';
import { type UplinkKind, type VehicleRef, uplinkTopic } from '../protocol/topics.ts';

export interface LaneItem {
  id: string;
  lane: Lane;
  topic: string;
  payload: Buffer;
}

export function laneItem<K extends UplinkKind>(ref: VehicleRef, kind: K, lane: UplinkLane<K>, msg: { id: string }): LaneItem {
  return { id: msg.id, lane, topic: uplinkTopic(ref, kind), payload: encode(msg) };
}
