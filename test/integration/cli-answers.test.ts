// The command line says what happened, and says it where a person reads it:
// a mistyped storage path is an error naming the key (never an empty queue),
// a mistyped subcommand is "unknown command", logs stay off stdout, a broker
// that is down is named at once, footage windows take the forms the help
// lists (ahead of now too) and a vehicle never seen is refused at once, and a
// busguard started through `npx ... &` stops when npx is killed. On real
// parts: Mosquitto, the agent and dispatch as processes.

import { generateKeyFiles } from '../../common/keys.ts';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busguardRun } from '../helpers/process.ts';
import { REPO } from '../helpers/mosquitto.ts';
import { BusFixture, until } from './fixture.ts';

describe('what the command line answers', () => {
  const bus = new BusFixture();
  beforeAll(() => bus.start(), 60_000);
  afterAll(() => bus.stop());

  it('a dispatch config whose storage.path is wrong: exit 2 naming the key, and nothing is created', async () => {
    const wrong = join(bus.dir, 'nowhere', 'dispatch.db');
    const cfg = join(bus.dir, 'wrong.json');
    writeFileSync(cfg, JSON.stringify({ ...JSON.parse(readFileSync(bus.dispatchConfigPath, 'utf8')), storage: { path: wrong } }));
    for (const cmd of [['alarms'], ['incidents'], ['ack', 'abcd1234'], ['footage', 'city/bus-1', '--from', '-1m', '--to', 'now']]) {
      const r = await busguardRun(['dispatch', ...cmd, '--config', cfg]);
      expect(r.code, `${cmd[0]}: ${r.stdout} ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(`key "storage.path" = ${JSON.stringify(wrong)}: no dispatch database there`);
      expect(r.stdout).not.toContain('no open');
    }
    expect(existsSync(join(bus.dir, 'nowhere'))).toBe(false);
  });

  it('busguard dispatch lists its commands; a mistyped one is "unknown command" with a suggestion; --version answers', async () => {
    const plain = await busguardRun(['dispatch']);
    expect(plain.code).toBe(0);
    for (const c of ['serve', 'alarms', 'incidents', 'ack', 'footage']) expect(plain.stdout).toContain(c);
    const typo = await busguardRun(['dispatch', 'alrams', '--config', bus.dispatchConfigPath]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toContain("unknown command 'alrams' (did you mean 'alarms'?)");
    const version = await busguardRun(['--version']);
    expect(version.stdout.trim()).toBe(JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')).version);
    const baud = await busguardRun(['sim', 'gps', '--port', join(bus.dir, 'x'), '--baud', '1234']);
    expect(baud.code).not.toBe(0);
    expect(baud.stderr).toContain('--baud must be one of 4800, 9600, 19200, 38400, 57600, 115200');
  });

  it('dispatch footage: "+40s" is a time; only the bad argument is named; the help lists every form; a vehicle never seen is refused at once', async () => {
    const ahead = await busguardRun(['dispatch', 'footage', 'city/bus-1', '--from', '-20s', '--to', '+40s', '--wait', '0', '--config', bus.dispatchConfigPath]);
    expect(ahead.code, ahead.stdout + ahead.stderr).toBe(0);
    expect(ahead.stdout).toMatch(/footage request [0-9a-f-]{36} to city\/bus-1/);
    const bad = await busguardRun(['dispatch', 'footage', 'city/bus-1', '--from', 'yesterday', '--to', 'now', '--config', bus.dispatchConfigPath]);
    expect(bad.code).toBe(2);
    expect(bad.stdout).toContain('--from "yesterday": not a time');
    expect(bad.stdout).not.toContain('--to');
    const help = await busguardRun(['dispatch', 'footage', '--help']);
    for (const form of ['"now"', '"-1h"', '"+40s"', '"-90s"']) expect(help.stdout).toContain(form);
    const ghost = await busguardRun(['dispatch', 'footage', 'city/bus-99', '--from', '-1m', '--to', 'now', '--config', bus.dispatchConfigPath]);
    expect(ghost.code).toBe(2);
    expect(ghost.stdout).toContain('vehicle city/bus-99 has never been seen by this dispatch');
    expect(ghost.stdout).toContain('fleet city has: city/bus-1');
  });

  it('a dispatcher acks with a key of their own (pki grant, ack --as): the bus acts on it and logs who signed; an expired grant is refused before anything is recorded', async () => {
    const from = bus.agent.mark();
    const r0 = await busguardRun(['sim', 'press', '--hold', '700', '--config', bus.agentConfigPath]);
    const id = /emergency ([0-9a-f-]{36}) raised/.exec(r0.stdout)![1]!;
    await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === id, 10_000);
    const people = join(bus.dir, 'people');
    mkdirSync(people);
    const g = await busguardRun(['pki', 'grant', '--person', '王警官', '--signing-key', bus.dispatchKey.privateKeyFile, '--key-id', 'testbed-dispatch', '--days', '7', '--out', people]);
    expect(g.code, g.stderr).toBe(0);
    const prefix = /--as (\S+)/.exec(g.stdout)![1]!;
    expect(prefix).toMatch(/people\/person-[0-9a-f]{12}$/);
    // A grant past its end: refused at once (exit 2), and the alarm stays unacknowledged.
    const grant = JSON.parse(readFileSync(`${prefix}.grant`, 'utf8')) as Record<string, string>;
    writeFileSync(join(people, 'old.grant'), JSON.stringify({ ...grant, exp: '2020-01-01T00:00:00.000Z' }));
    copyFileSync(`${prefix}.key`, join(people, 'old.key'));
    const old = await busguardRun(['dispatch', 'ack', id, '--as', join(people, 'old'), '--config', bus.dispatchConfigPath]);
    expect(old.code).toBe(2);
    expect(old.stderr).toMatch(/old\.grant expired at 2020-01-01/);
    const r = await busguardRun(['dispatch', 'ack', id, '--as', prefix, '--config', bus.dispatchConfigPath]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`acknowledged alarm ${id} \\(city/bus-1\\) by 王警官\\nthe bus showed it at `));
    const signed = await bus.agent.waitForEvent('downlink.signed', (l) => l.kind === 'ack' && l.personal === true, 10_000, from);
    expect(signed).toMatchObject({ by: '王警官', key: 'testbed-dispatch' });
    await bus.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === id, 10_000, from);
  });

  it('dispatch ack while the broker is down: recorded, stdout has no log lines, exit 4 saying the bus has not shown it yet; the running receiver sends it once the broker is back', async () => {
    const from = bus.agent.mark();
    const r0 = await busguardRun(['sim', 'press', '--hold', '700', '--config', bus.agentConfigPath]);
    const id = /emergency ([0-9a-f-]{36}) raised/.exec(r0.stdout)![1]!;
    await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === id, 10_000);
    await bus.broker.stop();
    try {
      const r = await busguardRun(['dispatch', 'ack', id, '--by', 'officer-7', '--wait', '2', '--config', bus.dispatchConfigPath]);
      expect(r.code).toBe(4);
      expect(r.stdout).toBe(`acknowledged alarm ${id} (city/bus-1) by officer-7\n`);
      expect(r.stderr).toMatch(/the bus has not confirmed it within 2 s; it is recorded, and the running "busguard dispatch" keeps sending it/);
      expect(r.stderr).not.toContain('"level"');
    } finally {
      await bus.broker.start();
    }
    await bus.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === id, 30_000, from);
    // Once the bus has it, a second ack says who acknowledged first and that the bus showed it.
    const again = await busguardRun(['dispatch', 'ack', id, '--by', 'officer-9', '--config', bus.dispatchConfigPath]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`alarm ${id} was already acknowledged by officer-7 at .*\\nthe bus showed it at `));
  });

  it('a busguard started as `npx busguard ... &` stops when npx is killed (it does not live on under init)', async () => {
    const cfg = join(bus.dir, 'npx-agent.json');
    const agentCfg = JSON.parse(readFileSync(bus.agentConfigPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(cfg, JSON.stringify({ ...agentCfg, vehicle: { fleet: 'city', id: 'bus-npx' }, storage: { dir: join(bus.dir, 'npx-bus') }, panel: { driver: 'sim', socket: join(bus.dir, 'npx.sock') }, gps: null }));
    const npx = spawn('npx', ['busguard', 'agent', '--config', cfg], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    npx.stdout.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('"agent.started"'), 30_000, 'the agent started through npx');
    const agentPid = Number(/"pid":(\d+)/.exec(out.split('\n').find((l) => l.includes('"agent.started"'))!)![1]);
    expect(agentPid).not.toBe(npx.pid);
    npx.kill('SIGTERM');
    const alive = () => {
      try {
        process.kill(agentPid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await until(() => !alive(), 15_000, `the agent (pid ${agentPid}) to stop after npx was killed`);
  }, 60_000);
});

describe('start-up: everything that can be checked is, before anything is touched', () => {
  it('an agent whose password file cannot be read, whose storage is under /proc or not writable: exit 2, every key named, nothing created or opened', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bg-startup-'));
    try {
      const cfg = join(dir, 'agent.json');
      const storage = join(dir, 'bus');
      const socket = join(dir, 'sock', 'panel.sock');
      writeFileSync(
        cfg,
        JSON.stringify({
          vehicle: { fleet: 'city', id: 'bus-1' },
          mqtt: { url: 'mqtt://127.0.0.1:1', passwordFile: join(dir, 'no-such-password') },
          storage: { dir: storage },
          media: { dir: '/proc/busguard-media' },
          panel: { driver: 'sim', socket },
          trust: { dispatchKeys: [{ id: 'dispatch-2026', publicKeyFile: join(dir, 'no-such.pub') }] },
        }),
      );
      const r = await busguardRun(['agent', '--config', cfg]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`key "trust.dispatchKeys.0.publicKeyFile" = ${JSON.stringify(join(dir, 'no-such.pub'))}: cannot read it (no such file)`);
      expect(r.stderr).toContain(`key "mqtt.passwordFile" = ${JSON.stringify(join(dir, 'no-such-password'))}: cannot read it (ENOENT: no such file)`);
      expect(r.stderr).toContain('key "media.dir" = "/proc/busguard-media": /proc is on procfs, a view of the kernel, not storage');
      // Nothing made: no database, no socket folder.
      expect(existsSync(storage)).toBe(false);
      expect(existsSync(join(dir, 'sock'))).toBe(false);

      const procCfg = join(dir, 'proc.json');
      writeFileSync(procCfg, JSON.stringify({ vehicle: { fleet: 'city', id: 'bus-1' }, mqtt: { url: 'mqtt://127.0.0.1:1', password: 'x' }, storage: { dir: '/proc/busguard' }, panel: { driver: 'sim', socket }, trust: { dispatchKeys: [{ id: 'k', publicKeyFile: generateKeyFiles(dir, 'k').publicKeyFile }] } }));
      const p = await busguardRun(['agent', '--config', procCfg]);
      expect(p.code).toBe(2);
      expect(p.stderr).toContain('key "storage.dir" = "/proc/busguard": /proc is on procfs');

      const dispatchCfg = join(dir, 'dispatch.json');
      writeFileSync(dispatchCfg, JSON.stringify({ mqtt: { url: 'mqtt://127.0.0.1:1', password: 'x' }, storage: { path: '/proc/busguard/dispatch.db' }, signing: { keyId: 'k', privateKeyFile: join(dir, 'no-such.key') } }));
      const d = await busguardRun(['dispatch', '--config', dispatchCfg]);
      expect(d.code).toBe(2);
      expect(d.stderr).toContain('key "storage.path" = "/proc/busguard/dispatch.db" (its folder /proc/busguard): /proc is on procfs');
      expect(d.stderr).toContain(`key "signing.privateKeyFile" = ${JSON.stringify(join(dir, 'no-such.key'))}: cannot read it (no such file)`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
