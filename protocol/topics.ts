// Topic layout, version 1:
//
//   busguard/v1/{fleet}/{vehicle}/up/{kind}     vehicle → dispatch
//   busguard/v1/{fleet}/{vehicle}/down/{kind}   dispatch → vehicle
//
// Each vehicle's MQTT username is "{fleet}/{vehicle}", so one Mosquitto ACL
// pattern (`pattern write busguard/v1/%u/up/#`) confines every vehicle to its
// own subtree, and only the dispatch user may write the `down` (command) topics.
// See protocol/mosquitto/acl. Evidence files travel one level deeper, under
// .../up/file/{fileId}/... (protocol/file-transfer.ts), inside the same pattern.

export const ROOT = 'busguard';
export const VERSION = 'v1';

/** Fleet and vehicle ids become topic levels and a username: no '/', '+', '#'. */
export const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export interface VehicleRef {
  fleet: string;
  vehicle: string;
}

/** What a vehicle publishes. `status` is retained and is also the last will. */
export const UPLINK_KINDS = ['alarm', 'incident', 'repeat', 'position', 'diag', 'footage', 'receipt', 'status'] as const;
export type UplinkKind = (typeof UPLINK_KINDS)[number];

/**
 * What dispatch publishes to one vehicle. `file`: receipts for evidence files
 * (protocol/file-transfer.ts); `footage`: a request for a window of video.
 */
export const DOWNLINK_KINDS = ['receipt', 'ack', 'file', 'footage'] as const;
export type DownlinkKind = (typeof DOWNLINK_KINDS)[number];

export function vehicleBase(ref: VehicleRef): string {
  return `${ROOT}/${VERSION}/${ref.fleet}/${ref.vehicle}`;
}

export function uplinkTopic(ref: VehicleRef, kind: UplinkKind): string {
  return `${vehicleBase(ref)}/up/${kind}`;
}

export function downlinkTopic(ref: VehicleRef, kind: DownlinkKind): string {
  return `${vehicleBase(ref)}/down/${kind}`;
}

/** What a vehicle subscribes to: its own command topics. */
export function vehicleDownlinkFilter(ref: VehicleRef): string {
  return `${vehicleBase(ref)}/down/+`;
}

/** What dispatch subscribes to (wrapped in $share/{group}/ when a group is set). */
export function dispatchUplinkFilter(kind: UplinkKind | '+' = '+'): string {
  return `${ROOT}/${VERSION}/+/+/up/${kind}`;
}

export function sharedFilter(group: string | null, filter: string): string {
  return group ? `$share/${group}/${filter}` : filter;
}

export function mqttUsername(ref: VehicleRef): string {
  return `${ref.fleet}/${ref.vehicle}`;
}

export type ParsedTopic =
  | { direction: 'up'; ref: VehicleRef; kind: UplinkKind }
  | { direction: 'down'; ref: VehicleRef; kind: DownlinkKind };

/** Parse a topic of our layout; null for anything else (another version, a stray kind). */
export function parseTopic(topic: string): ParsedTopic | null {
  const parts = topic.split('/');
  if (parts.length !== 6 || parts[0] !== ROOT || parts[1] !== VERSION) return null;
  const [, , fleet, vehicle, direction, kind] = parts as [string, string, string, string, string, string];
  if (!ID_PATTERN.test(fleet) || !ID_PATTERN.test(vehicle)) return null;
  const ref = { fleet, vehicle };
  if (direction === 'up' && (UPLINK_KINDS as readonly string[]).includes(kind)) {
    return { direction, ref, kind: kind as UplinkKind };
  }
  if (direction === 'down' && (DOWNLINK_KINDS as readonly string[]).includes(kind)) {
    return { direction, ref, kind: kind as DownlinkKind };
  }
  return null;
}
