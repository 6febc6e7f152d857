import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkAgentPaths, loadAgentConfig, trustedKeys } from '../../firmware/config.ts';
import { checkDispatchPaths, loadDispatchConfig } from '../../dispatch/config.ts';
import { ConfigError } from '../../common/config-file.ts';
import { openDatabase } from '../../common/sqlite.ts';
import { TEST_KEY_ID, writeTestKeyFiles } from '../helpers/command-keys.ts';

const dir = mkdtempSync(join(tmpdir(), 'config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const keys = writeTestKeyFiles(dir);

const minimal = {
  vehicle: { fleet: 'city', id: 'bus-1' },
  mqtt: { url: 'mqtt://127.0.0.1:1883', password: 'x' },
  storage: { dir: '/var/lib/busguard' },
  panel: { driver: 'sim', socket: '/run/busguard/panel.sock' },
  trust: { dispatchKeys: [{ id: TEST_KEY_ID, publicKeyFile: keys.publicKeyFile }] },
};
const minimalDispatch = {
  mqtt: { url: 'mqtt://127.0.0.1:1883' },
  storage: { path: 'd.db' },
  signing: { keyId: TEST_KEY_ID, privateKeyFile: keys.privateKeyFile },
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
    const c = loadDispatchConfig(write('d.json', minimalDispatch));
    expect(c.sharedGroup).toBe('dispatch');
    expect(c.ack.resendS).toBe(10);
  });

  it('refuses a URL that is not a broker URL', () => {
    expect(refusal(() => loadDispatchConfig(write('d2.json', { ...minimalDispatch, mqtt: { url: 'http//x' } })))).toContain('key "mqtt.url" = "http//x"');
  });
});

describe('command keys in the config', () => {
  it('a bus trusts at least one dispatch key, each id once, read from its PEM file', () => {
    const c = loadAgentConfig(write('t.json', minimal));
    expect([...trustedKeys(c).keys()]).toEqual([TEST_KEY_ID]);
    const { trust: _t, ...noTrust } = minimal;
    expect(refusal(() => loadAgentConfig(write('t1.json', noTrust)))).toContain('key "trust" missing');
    expect(refusal(() => loadAgentConfig(write('t2.json', { ...minimal, trust: { dispatchKeys: [] } })))).toContain('at least one dispatch key');
    const twice = { dispatchKeys: [minimal.trust.dispatchKeys[0], minimal.trust.dispatchKeys[0]] };
    expect(refusal(() => loadAgentConfig(write('t3.json', { ...minimal, trust: twice })))).toContain('each key id once');
    const missing = loadAgentConfig(write('t4.json', { ...minimal, trust: { dispatchKeys: [{ id: 'k', publicKeyFile: join(dir, 'nope.pub') }] } }));
    expect(checkAgentPaths(missing).join('\n')).toContain('key "trust.dispatchKeys.0.publicKeyFile"');
    expect(refusal(() => trustedKeys(missing))).toContain('no such file');
    const notAKey = loadAgentConfig(write('t5.json', { ...minimal, trust: { dispatchKeys: [{ id: 'k', publicKeyFile: write('x.pub', 'hello') }] } }));
    expect(refusal(() => trustedKeys(notAKey))).toContain('not a PEM public key');
  });

  it('dispatch signs with a private key only it can read', () => {
    const { signing: _s, ...noSigning } = minimalDispatch;
    expect(refusal(() => loadDispatchConfig(write('s1.json', noSigning)))).toContain('key "signing" missing');
    const open = write('open.key', readFileSync(keys.privateKeyFile, 'utf8'));
    chmodSync(open, 0o644);
    const c = loadDispatchConfig(write('s2.json', { ...minimalDispatch, storage: { path: join(dir, 'd.db') }, signing: { keyId: TEST_KEY_ID, privateKeyFile: open } }));
    expect(checkDispatchPaths(c).join('\n')).toMatch(/key "signing.privateKeyFile" = ".*open.key": a private key readable by others \(mode 644\); run: chmod 600 /);
    const ok = loadDispatchConfig(write('s3.json', { ...minimalDispatch, storage: { path: join(dir, 'd.db') } }));
    expect(checkDispatchPaths(ok)).toEqual([]);
  });
});

describe('secrets hygiene', () => {
  it('a broker URL with a user or password in it is refused (the URL is logged)', () => {
    expect(refusal(() => loadAgentConfig(write('url.json', { ...minimal, mqtt: { url: 'mqtt://city%2Fbus-1:secret@127.0.0.1:1883' } })))).toContain(
      'key "mqtt.url" = "mqtt://city%2Fbus-1:secret@127.0.0.1:1883": no user or password in the URL',
    );
  });

  it('a password file every user can read is refused at start; 0640 is fine', () => {
    const pw = write('pw', 'secret\n');
    chmodSync(pw, 0o644);
    const c = loadAgentConfig(write('pw.json', { ...minimal, mqtt: { url: 'mqtt://127.0.0.1:1883', passwordFile: pw }, storage: { dir: join(dir, 'bus') } }));
    expect(checkAgentPaths(c).join('\n')).toContain(`key "mqtt.passwordFile" = ${JSON.stringify(pw)}: readable by every user of this machine (mode 644); run: chmod 640 ${pw}`);
    chmodSync(pw, 0o640);
    expect(checkAgentPaths(c)).toEqual([]);
  });

  it('a database is created readable by its owner only, with its WAL', () => {
    const file = join(dir, 'fresh', 'outbox.db');
    const db = openDatabase(file);
    db.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(`${file}-wal`).mode & 0o777).toBe(0o600);
    db.close();
  });
});
