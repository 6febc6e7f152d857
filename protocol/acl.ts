// Who may do what on the broker, in one table, from the topic layout itself:
// the Mosquitto dynamic-security configuration the fleet's broker runs
// (`busguard broker acl`, protocol/mosquitto/mosquitto.conf) and the callback
// the demo's in-process aedes runs (aclAllows) are both made from it.
//
// Identities are MQTT usernames (with certificates: the certificate's CN).
//   {fleet}/{vehicle}      a bus: publishes under its own .../up/, subscribes
//                          to exactly its own .../down/+ and nothing else.
//   dispatch, dispatch/{name}
//   dispatch/alarms, dispatch/{name}/alarms
//                          a receiver, and its alarm connection (each receiver
//                          takes alarms on a connection of its own, so they
//                          never queue behind track): subscribes to exactly the uplink filters
//                          the receiver uses (in its shared group), publishes
//                          commands to any one vehicle's .../down/{kind}.
//   monitor, monitor/{name}
//                          a read-only tap (audit, a fleet's own systems):
//                          subscribes to uplink filters, never in a $share
//                          group (it cannot take a receiver's share), publishes
//                          nothing.
// Nobody else may do anything. SUBSCRIBE is checked literally: a bus cannot
// join the receivers' $share group, nor read another bus's commands.
// Client ids are bound to identities by the broker (use_username_as_clientid),
// so one identity cannot take over another's session.

import { createHash, pbkdf2Sync, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { dispatchFileFilter, fileReceiptTopic } from './file-transfer.ts';
import { UPLINK } from './kinds.ts';
import { DOWNLINK_KINDS, ID_PATTERN, ROOT, UPLINK_KINDS, VERSION, type VehicleRef, dispatchUplinkFilter, sharedFilter, vehicleBase, vehicleDownlinkFilter } from './topics.ts';

export const DISPATCH_USER = 'dispatch';
export const MONITOR_USER = 'monitor';
/** The default $share group of receivers (dispatch config `sharedGroup`). */
export const DEFAULT_GROUP = 'dispatch';

export type Identity = { role: 'vehicle'; ref: VehicleRef } | { role: 'receiver'; name: string } | { role: 'monitor'; name: string };

/** What a username is, or null for one no busguard identity can have. "dispatch" is no fleet's name. */
export function identityOf(username: string | undefined): Identity | null {
  if (!username) return null;
  const parts = username.split('/');
  if (parts[0] === DISPATCH_USER || parts[0] === MONITOR_USER) {
    const role = parts[0] === DISPATCH_USER ? 'receiver' : 'monitor';
    if (parts.length === 1) return { role, name: username };
    if (role === 'receiver' && parts.length === 3 && parts[2] === ALARM_CONNECTION) return ID_PATTERN.test(parts[1]!) ? { role, name: username } : null;
    return parts.length === 2 && ID_PATTERN.test(parts[1]!) ? { role, name: username } : null;
  }
  if (parts.length !== 2 || !ID_PATTERN.test(parts[0]!) || !ID_PATTERN.test(parts[1]!)) return null;
  return { role: 'vehicle', ref: { fleet: parts[0]!, vehicle: parts[1]! } };
}

/** The last level of a receiver's alarm-connection identity. */
const ALARM_CONNECTION = 'alarms';

/** The identity of a receiver's alarm connection: "dispatch" → "dispatch/alarms", "dispatch/east" → "dispatch/east/alarms". */
export function alarmConnectionIdentity(receiver: string): string {
  return `${receiver}/${ALARM_CONNECTION}`;
}

/** Every filter a receiver subscribes to, exactly as it sends it (dispatch/receiver.ts, dispatch/file-receiver.ts). */
export function receiverFilters(group: string | null): string[] {
  const filters = UPLINK_KINDS.map((kind) => (UPLINK[kind].subscribe === 'shared' ? sharedFilter(group, dispatchUplinkFilter(kind)) : dispatchUplinkFilter(kind)));
  return [...filters, sharedFilter(group, dispatchFileFilter())];
}

export interface Rights {
  /** Topic filters it may publish to. */
  publish: string[];
  /** Filters it may subscribe to, exactly as written. */
  subscribe: string[];
  /** Filters whose narrower filters it may subscribe to too (never in a $share group). */
  subscribeWithin: string[];
}

/** What an identity may do. */
export function rights(id: Identity, group: string | null = DEFAULT_GROUP): Rights {
  // A bus's own command topics: all of them, or the file receipts alone (an uploader on a session of its own, gateway/upload-pump.ts).
  if (id.role === 'vehicle') return { publish: [`${vehicleBase(id.ref)}/up/#`], subscribe: [vehicleDownlinkFilter(id.ref), fileReceiptTopic(id.ref)], subscribeWithin: [] };
  if (id.role === 'monitor') return { publish: [], subscribe: [], subscribeWithin: [`${ROOT}/${VERSION}/+/+/up/#`] };
  return { publish: DOWNLINK_KINDS.map((k) => `${ROOT}/${VERSION}/+/+/down/${k}`), subscribe: receiverFilters(group), subscribeWithin: [] };
}

/** May `username` publish ('write') to this topic or subscribe ('read') to this exact filter? */
export function aclAllows(username: string | undefined, access: 'read' | 'write', topic: string, group: string | null = DEFAULT_GROUP): boolean {
  const id = identityOf(username);
  if (!id) return false;
  const r = rights(id, group);
  if (access === 'read') return r.subscribe.includes(topic) || (!topic.startsWith('$') && r.subscribeWithin.some((f) => matches(f, topic)));
  if (topic.split('/').some((l) => l === '' || l === '+' || l === '#')) return false;
  return r.publish.some((f) => matches(f, topic));
}

function matches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return t.length > i;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i]) || (t[i] === '#' && f[i] !== '#')) return false;
  }
  return f.length === t.length;
}

/** The fleet's identities file (`busguard broker acl --identities`; dispatch's fleet.identitiesFile): one entry per bus, receiver and tap. */
export const IdentitiesFileSchema = z.array(z.object({ id: z.string().min(1), passwordFile: z.string().min(1).optional() }).strict()).min(1);

/** The buses an identities file lists (its other entries are receivers and taps). */
export function vehiclesOf(list: z.infer<typeof IdentitiesFileSchema>): VehicleRef[] {
  return list.flatMap((i) => {
    const id = identityOf(i.id);
    return id?.role === 'vehicle' ? [id.ref] : [];
  });
}

export interface BrokerIdentity {
  /** The username (or certificate CN). */
  id: string;
  /** For password logins (loopback, or TLS for small fleets); none for certificate-only identities. */
  password?: string;
}

/**
 * Mosquitto's dynamic-security hash: PBKDF2-SHA512, 64 bytes, as mosquitto_ctrl
 * writes it. 1,000 rounds: the broker hashes on its one thread at every login,
 * and a fleet reconnecting after an outage must not stall alarm delivery;
 * machine passwords are random (`busguard broker acl` says so), not words.
 */
function passwordFields(password: string): { password: string; salt: string; iterations: number } {
  const salt = randomBytes(12);
  const iterations = 1_000;
  return { password: pbkdf2Sync(password, salt, iterations, 64, 'sha512').toString('base64'), salt: salt.toString('base64'), iterations };
}

/**
 * The dynamic-security plugin's configuration for these identities: one role
 * per vehicle (Mosquitto 2.0's plugin has no %u patterns), one for receivers,
 * SUBSCRIBE refused by default and allowed literally.
 */
export function dynamicSecurityConfig(identities: BrokerIdentity[], group: string | null = DEFAULT_GROUP): object {
  const roles = new Map<string, object>();
  const clients = identities.map((c) => {
    const id = identityOf(c.id);
    if (!id) throw new Error(`"${c.id}" is no busguard identity: a bus is {fleet}/{vehicle}, a receiver "dispatch" or dispatch/{name} (letters, digits, - and _)`);
    const rolename = id.role === 'vehicle' ? `vehicle-${createHash('sha256').update(c.id).digest('hex').slice(0, 16)}` : id.role;
    if (!roles.has(rolename)) {
      const r = rights(id, group);
      roles.set(rolename, {
        rolename,
        textdescription: id.role === 'vehicle' ? `bus ${c.id}` : id.role === 'receiver' ? 'dispatch receivers' : 'read-only taps of the uplink',
        acls: [
          ...r.publish.map((topic) => ({ acltype: 'publishClientSend', topic, priority: 0, allow: true })),
          ...r.subscribe.map((topic) => ({ acltype: 'subscribeLiteral', topic, priority: 0, allow: true })),
          ...r.subscribeWithin.map((topic) => ({ acltype: 'subscribePattern', topic, priority: 0, allow: true })),
        ],
      });
    }
    return { username: c.id, textname: c.id, roles: [{ rolename, priority: 0 }], ...(c.password !== undefined ? passwordFields(c.password) : {}) };
  });
  // A receiver that logs in with a password has its alarm connection log in with the same one, unless listed itself.
  const listed = new Set(identities.map((c) => c.id));
  for (const c of identities) {
    const id = identityOf(c.id);
    const companion = alarmConnectionIdentity(c.id);
    if (id?.role !== 'receiver' || c.password === undefined || listed.has(companion) || !identityOf(companion)) continue;
    clients.push({ username: companion, textname: `${c.id}'s alarm connection`, roles: [{ rolename: 'receiver', priority: 0 }], ...passwordFields(c.password) });
  }
  const seen = new Set<string>();
  for (const c of identities) {
    if (seen.has(c.id)) throw new Error(`"${c.id}" is listed twice`);
    seen.add(c.id);
  }
  return {
    defaultACLAccess: { publishClientSend: false, publishClientReceive: true, subscribe: false, unsubscribe: true },
    clients,
    groups: [],
    roles: [...roles.values()],
  };
}
