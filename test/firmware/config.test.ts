import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../../firmware/config.ts';
import { loadDispatchConfig } from '../../dispatch/config.ts';
import { ConfigError } from '../../common/config-file.ts';

const dir = mkdtempSync(join(tmpdir(), 'config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const minimal = {
  vehicle: { fleet: 'city', id: 'bus-1' },
  mqtt: { url: 'mqtt://127.0.0.1:1883', password: 'x' },
  storage: { dir: '/var/lib/busguard' },
  panel: { driver: 'sim', socket: '/run/busguard/panel.sock' },
};

function write(name: string, content: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function refusal(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error('config was accepted');
}

describe('agent config', () => {
  it('fills the documented defaults', () => {
    const c = loadAgentConfig(write('ok.json', minimal));
    expect(c.alarm.holdMs).toBe(500);
    expect(c.alarm.incidentPattern).toBe('double');
    expect(c.position.alarmIntervalS).toBe(5);
    expect(c.mqtt.protocolVersion).toBe(5);
    expect(c.gps).toBeNull();
    expect(c.vehicle.route).toBeNull();
  });

  it('refuses a wrong value naming the key, the value and what is expected', () => {
    const msg = refusal(() => loadAgentConfig(write('bad.json', { ...minimal, alarm: { holdMs: 'long' } })));
    expect(msg).toContain('key "alarm.holdMs" = "long"');
    expect(msg).toContain('expected number');
    const enumMsg = refusal(() => loadAgentConfig(write('bad2.json', { ...minimal, alarm: { incidentPattern: 'triple' } })));
    expect(enumMsg).toMatch(/key "alarm.incidentPattern" = "triple": expected one of "double", "second-input"/);
    const baud = refusal(() => loadAgentConfig(write('bad3.json', { ...minimal, gps: { port: '/dev/ttyS0', baudRate: 4801 } })));
    expect(baud).toContain('key "gps.baudRate" = 4801');
  });

  it('refuses a missing key, an unknown key (a typo), a bad vehicle id', () => {
    const { storage: _s, ...noStorage } = minimal;
    expect(refusal(() => loadAgentConfig(write('m.json', noStorage)))).toContain('key "storage" missing');
    expect(refusal(() => loadAgentConfig(write('u.json', { ...minimal, alarm: { holdMS: 500 } })))).toContain('unknown key "alarm.holdMS"');
    expect(refusal(() => loadAgentConfig(write('v.json', { ...minimal, vehicle: { fleet: 'city', id: 'bus/1' } })))).toContain('key "vehicle.id" = "bus/1"');
  });

  it('refuses an unreadable file and broken JSON with the file name', () => {
    expect(refusal(() => loadAgentConfig(join(dir, 'nope.json')))).toMatch(/nope\.json: cannot read the file \(ENOENT\)/);
    expect(refusal(() => loadAgentConfig(write('j.json', '{"vehicle": ')))).toMatch(/j\.json: not valid JSON/);
  });
});

describe('dispatch config', () => {
  it('defaults to the shared-subscription group "dispatch"', () => {
    const c = loadDispatchConfig(write('d.json', { mqtt: { url: 'mqtt://127.0.0.1:1883' }, storage: { path: 'd.db' } }));
    expect(c.sharedGroup).toBe('dispatch');
    expect(c.ack.resendS).toBe(10);
  });

  it('refuses a URL that is not a broker URL', () => {
    expect(refusal(() => loadDispatchConfig(write('d2.json', { mqtt: { url: 'http//x' }, storage: { path: 'd.db' } })))).toContain('key "mqtt.url" = "http//x"');
  });
});
