// What the driver sees and what whoever plays driver is told, on real parts
// (the agent and dispatch as processes, Mosquitto, the sim panel driven
// through `busguard sim press` as a person would): each state has its own LED
// pattern, an incident is told from an emergency, a press while an alarm is
// open reaches dispatch as a repeat and the LED shows it was taken, and
// `sim press` says which alarm it raised or why it raised none.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { simLed } from '../../hal/panel/sim-client.ts';
import { busguardRun } from '../helpers/process.ts';
import { BusFixture, until } from './fixture.ts';

describe('driver feedback: LED patterns, repeats, and what sim press says', () => {
  const bus = new BusFixture();
  // A short acknowledged display, so the test sees what comes after it.
  beforeAll(() => bus.start({ alarm: { resendS: 1, acknowledgedShowS: 3 } }), 60_000);
  afterAll(() => bus.stop());

  const press = (...args: string[]) => busguardRun(['sim', 'press', '--config', bus.agentConfigPath, ...args]);
  const led = () => simLed(bus.socket);

  it('an emergency: sim press prints its id; the LED goes stored → delivered; a second hold is a repeat dispatch hears, shown as "registered" then the repeat\'s own journey', async () => {
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    const first = await press('--hold', '700');
    expect(first.code, first.stderr).toBe(0);
    const id = /emergency ([0-9a-f-]{36}) raised and stored/.exec(first.stdout)?.[1];
    expect(id, first.stdout).toBeDefined();
    await bus.dispatch.waitForEvent('emergency.received', (l) => l.alarmId === id, 10_000);
    await until(async () => (await led()) === 'delivered', 10_000, 'LED delivered');

    const dFrom = bus.dispatch.mark();
    const again = await press('--hold', '700');
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`emergency ${id} is still open: this press was sent to dispatch as press 2 of it`);
    // The flurry says the press was taken, though the alarm was already delivered.
    expect(again.stdout).toMatch(/LED: registered/);
    const repeat = await bus.dispatch.waitForEvent('emergency.repeat', (l) => l.alarmId === id, 10_000, dFrom);
    expect(repeat).toMatchObject({ count: 2, acknowledged: false });
    await until(async () => (await led()) === 'delivered', 10_000, 'LED delivered again once the repeat is at dispatch');
    expect(bus.agent.events('led').map((l) => l.state)).toEqual(expect.arrayContaining(['registered', 'stored', 'delivered']));
  });

  it('an incident while the emergency shows: raised, "registered" for a moment, and the LED keeps showing the emergency', async () => {
    const r = await press('--pattern', 'double');
    expect(r.code, r.stderr).toBe(0);
    const id = /incident ([0-9a-f-]{36}) raised and stored/.exec(r.stdout)?.[1];
    expect(id, r.stdout).toBeDefined();
    expect(r.stdout).toMatch(/LED: registered/);
    await bus.dispatch.waitForEvent('incident.received', (l) => l.alarmId === id, 10_000);
    await until(async () => (await led()) === 'delivered', 10_000, 'the LED back on the emergency');
  });

  it('acknowledgements: the emergency\'s (steady) first; once it has been shown, the open incident (two long blinks), then its own acknowledgement', async () => {
    const open = bus.dispatchAlarms().filter((a) => !a.ackAt);
    const emergency = open.find((a) => a.kind === 'emergency')!;
    const incident = open.find((a) => a.kind === 'incident')!;
    await bus.ack(emergency.id);
    await until(async () => (await led()) === 'acknowledged', 10_000, 'LED acknowledged');
    await until(async () => (await led()) === 'incident-delivered', 10_000, 'the open incident shown after the acknowledgement');
    await bus.ack(incident.id);
    await until(async () => (await led()) === 'incident-acknowledged', 10_000, 'LED incident-acknowledged');
    await until(async () => (await led()) === 'idle', 10_000, 'LED idle');
  });

  it('a press that raises nothing says why and exits 3: too short, or an input this bus does not use', async () => {
    const short = await press('--hold', '200');
    expect(short.code).toBe(3);
    expect(short.stdout).toMatch(/no alarm: held 20\d ms, shorter than alarm\.holdMs \(500 ms\)/);
    const incidentInput = await press('--hold', '800', '--input', 'incident');
    expect(incidentInput.code).toBe(3);
    expect(incidentInput.stdout).toContain('no alarm: this bus takes incidents as a double press of the panic button (alarm.incidentPattern "double")');
    // Neither raised anything at dispatch.
    expect(bus.dispatchAlarms().filter((a) => !a.ackAt)).toHaveLength(0);
  });
});
