// The one-key alarm end to end, on real parts: Mosquitto with the shipped ACL,
// the agent and dispatch as separate processes, NMEA through a socat pair,
// the sim panel driven through its control socket like a person would.

import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { simDouble, simLed, simPress } from '../../hal/panel/sim-client.ts';
import { busguardRun } from '../helpers/process.ts';
import { BusFixture, until } from './fixture.ts';

describe('one-key alarm, end to end', () => {
  const bus = new BusFixture();
  beforeAll(() => bus.start(), 60_000);
  afterAll(() => bus.stop());

  /** Set while a test has the broker stopped: if it fails before starting it again, afterEach does. */
  let brokerDown = false;
  async function brokerUp(): Promise<void> {
    await bus.broker.start();
    brokerDown = false;
  }

  // One failing test must not take the next ones down with it: they need the
  // broker (a stopped one was never seen to go, so their wait for
  // mqtt.disconnected timed out) and no alarm left open (their holds would be
  // taken as repeats of it and store no alarm).
  afterEach(async (ctx) => {
    const agent = bus.agent;
    const agentAlive = agent.child.exitCode === null && agent.child.signalCode === null;
    if (brokerDown) {
      const from = agent.mark();
      await brokerUp();
      if (agentAlive) await agent.waitForEvent('mqtt.connected', () => true, 15_000, from);
    }
    if (ctx.task.result?.state !== 'fail' || !agentAlive) return;
    const bdb = new Database(join(bus.dir, 'bus', 'outbox.db'), { readonly: true, fileMustExist: true });
    let open: string[];
    try {
      open = (bdb.prepare("SELECT id FROM alarms WHERE state != 'acknowledged'").all() as { id: string }[]).map((r) => r.id);
    } finally {
      bdb.close();
    }
    for (const id of open) {
      await until(() => bus.dispatchAlarms().some((a) => a.id === id), 20_000, `alarm ${id} left open by the failed test, at dispatch`);
      await bus.ackAndSee(id);
    }
  });

  /** Stop the broker, wait until the agent has seen it go, then hold: the alarm is stored on the bus only. */
  async function holdWithBrokerDown() {
    const from = bus.agent.mark();
    brokerDown = true;
    await bus.broker.stop();
    await bus.agent.waitForEvent('mqtt.disconnected', () => true, 15_000, from);
    return bus.holdAndStore();
  }

  it('hold → alarm at dispatch with the fix → receipt → LED delivered → ack → LED acknowledged', async () => {
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    expect(await simLed(bus.socket)).toBe('idle');

    // Played from another process, as a person at a terminal would.
    const from = bus.agent.mark();
    const press = await busguardRun(['sim', 'press', '--hold', '700', '--config', bus.agentConfigPath]);
    expect(press.code, press.stderr).toBe(0);
    expect(press.stdout).toMatch(/LED: (stored|delivered)/);

    const stored = await bus.agent.waitForEvent('alarm.stored', () => true, 10_000, from);
    const alarmId = stored.alarmId as string;
    const atDispatch = await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === alarmId);
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === alarmId);
    expect(await simLed(bus.socket)).toBe('delivered');

    // The fix is one the receiver really sent, to the 1e-6 degree the sentences carry.
    const fix = atDispatch.fix as { lat: number; lon: number; valid: boolean; ageS: number; stale: boolean; time: string };
    expect(fix.valid).toBe(true);
    expect(fix.stale).toBe(false);
    const match = bus.samples.find((s) => Math.abs(s.lat - fix.lat) < 1e-6 && Math.abs(s.lon - fix.lon) < 1e-6);
    expect(match, `fix ${fix.lat},${fix.lon} not among the ${bus.samples.length} positions the receiver sent`).toBeDefined();
    expect(new Date(fix.time).getTime()).toBe(match!.time.getTime());

    const listed = await busguardRun(['dispatch', 'alarms', '--config', bus.dispatchConfigPath]);
    expect(listed.stdout).toContain(alarmId);
    expect(listed.stdout).toContain('city/bus-1');

    // While open, positions follow at the alarm rate (1 s here).
    await until(() => bus.dispatchPositions(alarmId).length >= 2, 10_000, 'follow-up positions at dispatch');

    const out = await bus.ack(alarmId.slice(0, 8));
    expect(out).toContain(`acknowledged alarm ${alarmId}`);
    await bus.agent.waitForEvent('alarm.acknowledged', (l) => l.alarmId === alarmId);
    expect(await simLed(bus.socket)).toBe('acknowledged');
    await bus.dispatch.waitForEvent('ack.seen', (l) => (l.alarmIds as string[]).includes(alarmId));
    expect(bus.dispatchAlarms('emergency').find((a) => a.id === alarmId)?.ackSeenAt).toBeTruthy();
    const open = await busguardRun(['dispatch', 'alarms', '--config', bus.dispatchConfigPath]);
    expect(open.stdout).toContain('no open emergency alarms');

    // Acknowledged: the fast position reports stop.
    // Over three alarm intervals (1 s each) at most one batch already in flight arrives.
    const batches = () => new Set(bus.dispatchPositions(alarmId).map((p) => p.messageId)).size;
    const before = batches();
    await new Promise((r) => setTimeout(r, 3_000));
    expect(batches()).toBeLessThanOrEqual(before + 1);
  });

  it('a press shorter than the hold time raises nothing; a double press raises an incident in the incident queue', async () => {
    const emergenciesBefore = bus.dispatchAlarms('emergency').length;
    const from = bus.agent.mark();
    await simPress(bus.socket, { holdMs: 200 });
    await bus.agent.waitForEvent('press.ignored', () => true, 5000, from);
    // The driver pauses before the next action; otherwise the bump and the first
    // press of the double would themselves make a double press.
    await new Promise((r) => setTimeout(r, 800));
    const fromDouble = bus.dispatch.mark();
    await simDouble(bus.socket, {});
    const incident = await bus.dispatch.waitForEvent('incident.received', () => true, 15_000, fromDouble);
    // The bump came first; by the time the incident is at dispatch, an alarm from it would be too.
    expect(bus.dispatchAlarms('emergency')).toHaveLength(emergenciesBefore);
    expect(bus.agent.events('alarm.stored').filter((l) => bus.agent.lines.indexOf(l) >= from)).toHaveLength(1);
    expect(bus.dispatchAlarms('incident').map((a) => a.id)).toContain(incident.alarmId);
    const alarms = await busguardRun(['dispatch', 'alarms', '--config', bus.dispatchConfigPath, '--json']);
    const incidents = await busguardRun(['dispatch', 'incidents', '--config', bus.dispatchConfigPath, '--json']);
    expect(alarms.stdout).not.toContain(incident.alarmId as string);
    expect(incidents.stdout).toContain(incident.alarmId as string);
    await bus.ackAndSee(incident.alarmId as string);
  });

  it('holding again while an alarm is open raises no second alarm: dispatch hears it as a repeat of the open one', async () => {
    const first = await bus.holdAndStore();
    await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === first.alarmId);
    const from = bus.agent.mark();
    const dFrom = bus.dispatch.mark();
    const outcomes = await simPress(bus.socket, { holdMs: 600 });
    expect(outcomes).toEqual([expect.objectContaining({ result: 'repeat', kind: 'emergency', alarmId: first.alarmId })]);
    await bus.agent.waitForEvent('alarm.repeated', (l) => l.alarmId === first.alarmId && l.count === 2, 10_000, from);
    const repeat = await bus.dispatch.waitForEvent('emergency.repeat', (l) => l.alarmId === first.alarmId, 10_000, dFrom);
    expect(repeat.count).toBe(2);
    expect(bus.agent.events('alarm.stored').filter((l) => bus.agent.lines.indexOf(l) >= from)).toHaveLength(0);
    expect(bus.dispatchAlarms('emergency').filter((a) => !a.ackAt)).toHaveLength(1);
    const listed = await busguardRun(['dispatch', 'alarms', '--config', bus.dispatchConfigPath]);
    expect(listed.stdout).toMatch(new RegExp(`${first.alarmId}\t.*\t2 \\(last `));
    await bus.ackAndSee(first.alarmId as string);
    // The repeat showed the 'registered' flurry (one LED cycle, 2 s). Wait for it to end, so the
    // next test's press, however soon it comes, reads the LED of its own alarm and not this flurry.
    await until(async () => (await simLed(bus.socket)) === 'acknowledged', 10_000, 'the flurry of the repeat over: LED acknowledged');
  });

  it('broker down at the press → LED stored → the alarm arrives after the broker returns', async () => {
    const stored = await holdWithBrokerDown();
    expect(await simLed(bus.socket)).toBe('stored');
    await brokerUp();
    await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === stored.alarmId, 20_000);
    await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === stored.alarmId, 20_000);
    expect(await simLed(bus.socket)).toBe('delivered');
    await bus.ackAndSee(stored.alarmId as string);
  });

  it('agent SIGKILLed right after the LED said "stored" → after a restart the alarm arrives exactly once', async () => {
    // Broker down so the kill surely lands before delivery.
    const stored = await holdWithBrokerDown();
    await bus.agent.kill('SIGKILL');
    await brokerUp();
    const agent = await bus.startAgent();
    await agent.waitForEvent('alarm.delivered', (l) => l.alarmId === stored.alarmId, 20_000);
    expect(bus.dispatchAlarms().filter((a) => a.id === stored.alarmId)).toHaveLength(1);
    expect(await simLed(bus.socket)).toBe('delivered');
    await bus.ackAndSee(stored.alarmId as string);
  });

  it('agent SIGKILLed the instant it stored the alarm, broker up → still exactly once', async () => {
    const stored = await bus.holdAndStore();
    await bus.agent.kill('SIGKILL');
    await bus.startAgent();
    // Whether or not it went out before the kill, it ends up at dispatch once and the LED says so.
    await until(() => bus.dispatchAlarms().some((a) => a.id === stored.alarmId), 20_000, 'the alarm at dispatch');
    await until(async () => (await simLed(bus.socket)) === 'delivered', 20_000, 'LED delivered');
    expect(bus.dispatchAlarms().filter((a) => a.id === stored.alarmId)).toHaveLength(1);
    await bus.ackAndSee(stored.alarmId as string);
  });

  it('dispatch SIGKILLed and restarted → no alarm lost or doubled', async () => {
    const before = new Set(bus.dispatchAlarms().map((a) => a.id));
    await bus.dispatch.kill('SIGKILL');
    const from = bus.agent.mark();
    await simPress(bus.socket, { holdMs: 600 });
    await simDouble(bus.socket, {});
    const stored = await until(() => {
      const s = bus.agent.events('alarm.stored').filter((l) => bus.agent.lines.indexOf(l) >= from);
      return s.length === 2 && s;
    }, 10_000, 'an emergency and an incident stored on the bus');
    await bus.startDispatch();
    for (const s of stored) await bus.agent.waitForEvent('alarm.delivered', (l) => l.alarmId === s.alarmId, 20_000);
    // Kill it again and restart: the bus may re-send whatever it likes, nothing doubles.
    await bus.dispatch.kill('SIGKILL');
    await bus.startDispatch();
    const ids = bus.dispatchAlarms().map((a) => a.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids.filter((id) => !before.has(id)).sort()).toEqual(stored.map((s) => s.alarmId as string).sort());
    for (const s of stored) await bus.ackAndSee(s.alarmId as string);
  });
});
