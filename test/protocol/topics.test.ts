import { describe, expect, it } from 'vitest';
import { aclAllows, dynamicSecurityConfig, identityOf } from '../../protocol/acl.ts';
import {
  dispatchUplinkFilter,
  downlinkTopic,
  mqttUsername,
  parseTopic,
  sharedFilter,
  uplinkTopic,
  vehicleDownlinkFilter,
} from '../../protocol/topics.ts';

const bus1 = { fleet: 'city', vehicle: 'bus-1' };

describe('topic layout v1', () => {
  it('puts every vehicle under busguard/v1/{fleet}/{vehicle}/up|down', () => {
    expect(uplinkTopic(bus1, 'alarm')).toBe('busguard/v1/city/bus-1/up/alarm');
    expect(downlinkTopic(bus1, 'ack')).toBe('busguard/v1/city/bus-1/down/ack');
    expect(vehicleDownlinkFilter(bus1)).toBe('busguard/v1/city/bus-1/down/+');
    expect(sharedFilter('dispatch', dispatchUplinkFilter('alarm'))).toBe('$share/dispatch/busguard/v1/+/+/up/alarm');
    expect(sharedFilter(null, dispatchUplinkFilter())).toBe('busguard/v1/+/+/up/+');
  });

  it('makes the vehicle username equal to its topic subtree, so one ACL pattern confines it', () => {
    expect(mqttUsername(bus1)).toBe('city/bus-1');
    expect(uplinkTopic(bus1, 'alarm').startsWith(`busguard/v1/${mqttUsername(bus1)}/`)).toBe(true);
  });

  it('parses its own topics and nothing else', () => {
    expect(parseTopic('busguard/v1/city/bus-1/up/incident')).toEqual({ direction: 'up', ref: bus1, kind: 'incident' });
    expect(parseTopic('busguard/v1/city/bus-1/down/receipt')).toEqual({ direction: 'down', ref: bus1, kind: 'receipt' });
    for (const bad of [
      'busguard/v2/city/bus-1/up/alarm',
      'busguard/v1/city/bus-1/up/selfdestruct',
      'busguard/v1/city/bus-1/down/alarm',
      'busguard/v1/city/bus 1/up/alarm',
      'busguard/v1/city/bus-1/up/alarm/extra',
      'other/v1/city/bus-1/up/alarm',
      '',
    ]) {
      expect(parseTopic(bad), bad).toBeNull();
    }
  });
});

describe('ACL as a function (the demo broker) is the broker table of protocol/acl.ts', () => {
  it('lets a vehicle write only its own uplink and read only its own downlink', () => {
    expect(aclAllows('city/bus-1', 'write', 'busguard/v1/city/bus-1/up/alarm')).toBe(true);
    expect(aclAllows('city/bus-1', 'read', 'busguard/v1/city/bus-1/down/+')).toBe(true);
    expect(aclAllows('city/bus-1', 'write', 'busguard/v1/city/bus-2/up/alarm')).toBe(false);
    expect(aclAllows('city/bus-1', 'write', 'busguard/v1/city/bus-1/down/ack')).toBe(false);
    expect(aclAllows('city/bus-1', 'read', 'busguard/v1/city/bus-2/down/+')).toBe(false);
    expect(aclAllows('city/bus-1', 'read', 'busguard/v1/+/+/up/+')).toBe(false);
    expect(aclAllows(undefined, 'read', 'busguard/v1/city/bus-1/down/+')).toBe(false);
  });

  it('lets only dispatch read all uplink (shared or not) and write commands', () => {
    expect(aclAllows('dispatch', 'read', '$share/dispatch/busguard/v1/+/+/up/alarm')).toBe(true);
    expect(aclAllows('dispatch', 'read', 'busguard/v1/+/+/up/status')).toBe(true);
    expect(aclAllows('dispatch', 'write', 'busguard/v1/city/bus-1/down/ack')).toBe(true);
    expect(aclAllows('dispatch', 'write', 'busguard/v1/city/bus-1/up/alarm')).toBe(false);
  });

  it('lets a monitor read the uplink but never join a $share group nor publish; a receiver subscribes only to its own filters', () => {
    expect(aclAllows('monitor/audit', 'read', 'busguard/v1/city/bus-1/up/+')).toBe(true);
    expect(aclAllows('monitor/audit', 'read', 'busguard/v1/+/+/up/#')).toBe(true);
    expect(aclAllows('monitor/audit', 'read', '$share/dispatch/busguard/v1/+/+/up/alarm')).toBe(false);
    expect(aclAllows('monitor/audit', 'read', 'busguard/v1/city/bus-1/down/+')).toBe(false);
    expect(aclAllows('monitor/audit', 'read', 'busguard/#')).toBe(false);
    expect(aclAllows('monitor/audit', 'write', 'busguard/v1/city/bus-1/up/alarm')).toBe(false);
    expect(aclAllows('dispatch', 'read', 'busguard/v1/city/bus-1/up/+')).toBe(false);
    expect(aclAllows('dispatch', 'read', '$share/other/busguard/v1/+/+/up/alarm')).toBe(false);
    expect(aclAllows('dispatch/rx-b', 'read', '$share/other/busguard/v1/+/+/up/alarm', 'other')).toBe(true);
  });

  it('knows no identity outside the table: "dispatch" and "monitor" are no fleet, deeper names are nobody', () => {
    expect(identityOf('dispatch/bus-1')).toEqual({ role: 'receiver', name: 'dispatch/bus-1' });
    expect(identityOf('monitor')).toEqual({ role: 'monitor', name: 'monitor' });
    for (const nobody of ['', 'city', 'city/bus-1/x', 'dispatch/a/b', 'city/bus 1', 'city/+', '#']) expect(identityOf(nobody), nobody).toBeNull();
    expect(() => dynamicSecurityConfig([{ id: 'city/bus-1' }, { id: 'city/bus-1' }])).toThrow(/twice/);
    expect(() => dynamicSecurityConfig([{ id: 'city/bus-1/x' }])).toThrow(/no busguard identity/);
  });

  it('lets a vehicle write its own evidence files one level deeper, and dispatch read everyone\'s', () => {
    const seg = 'busguard/v1/city/bus-1/up/file/f-1/65536/' + 'a'.repeat(64);
    expect(aclAllows('city/bus-1', 'write', 'busguard/v1/city/bus-1/up/file/f-1/init')).toBe(true);
    expect(aclAllows('city/bus-1', 'write', seg)).toBe(true);
    expect(aclAllows('city/bus-2', 'write', seg)).toBe(false);
    expect(aclAllows('city/bus-1', 'write', 'busguard/v1/city/bus-1/up/file/+/init')).toBe(false);
    expect(aclAllows('city/bus-1', 'write', 'busguard/v1/city/bus-1/up/file//init')).toBe(false);
    expect(aclAllows('city/bus-1', 'write', 'busguard/v1/city/bus-1/down/file/x')).toBe(false);
    expect(aclAllows('dispatch', 'read', '$share/dispatch/busguard/v1/+/+/up/file/#')).toBe(true);
    expect(aclAllows('dispatch', 'write', 'busguard/v1/city/bus-1/down/file')).toBe(true);
    // SUBSCRIBE is allowed literally: a bus subscribes to exactly its own down/+, or (an uploader on its own session) down/file.
    expect(aclAllows('city/bus-1', 'read', 'busguard/v1/city/bus-1/down/+')).toBe(true);
    expect(aclAllows('city/bus-1', 'read', 'busguard/v1/city/bus-1/down/file')).toBe(true);
    expect(aclAllows('city/bus-1', 'read', 'busguard/v1/city/bus-1/down/ack')).toBe(false);
    expect(aclAllows('city/bus-1', 'read', 'busguard/v1/city/bus-1/down/#')).toBe(false);
  });
});
