// What the alarm says about position when the receiver has gone quiet or never
// spoke, and what dispatch learns when a bus drops off the broker.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busguardRun } from '../helpers/process.ts';
import { BusFixture } from './fixture.ts';

describe('fix age, no fix, and vehicle status', () => {
  const bus = new BusFixture();
  beforeAll(() => bus.start({ position: { intervalS: 0, alarmIntervalS: 1, staleAfterS: 1 } }), 60_000);
  afterAll(() => bus.stop());

  async function holdToDispatch() {
    const { alarmId, received } = await bus.holdToDispatch({ receivedWithinMs: 15_000 });
    return { id: alarmId, fix: received.fix as Record<string, unknown> | null };
  }

  it('a bus that vanishes (SIGKILL) is reported offline by its last will; online again after restart', async () => {
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    // A last will exists once the bus is connected (over TLS that can come after the first fix): online first.
    await bus.dispatch.waitForEvent('vehicle.status', (l) => l.vehicle === 'bus-1' && l.state === 'online', 15_000);
    const from = bus.dispatch.mark();
    await bus.agent.kill('SIGKILL');
    await bus.dispatch.waitForEvent('vehicle.status', (l) => l.vehicle === 'bus-1' && l.state === 'offline', 15_000, from);
    const back = bus.dispatch.mark();
    await bus.startAgent();
    await bus.dispatch.waitForEvent('vehicle.status', (l) => l.vehicle === 'bus-1' && l.state === 'online', 15_000, back);
  });

  it('the receiver goes quiet: the alarm carries the last fix with its age and stale: true', async () => {
    await bus.agent.waitForEvent('gps.first-fix', () => true, 15_000);
    await bus.gps.stop();
    await new Promise((r) => setTimeout(r, 2_000));
    const { id, fix } = await holdToDispatch();
    expect(fix).not.toBeNull();
    expect(fix).toMatchObject({ valid: true, stale: true });
    expect(fix?.ageS as number).toBeGreaterThanOrEqual(1.5);
    const last = bus.samples.at(-1);
    expect(Math.abs((fix?.lat as number) - (last?.lat ?? 0))).toBeLessThan(1e-3);
    await bus.ackAndSee(id);
  });

  it('no fix since the agent started: the alarm is raised anyway and says it has no fix', async () => {
    await bus.agent.kill('SIGKILL');
    await bus.startAgent(); // the simulator is still stopped: this agent never hears a sentence
    const { id, fix } = await holdToDispatch();
    expect(fix).toBeNull();
    expect(bus.dispatchAlarms('emergency').find((a) => a.id === id)?.fix).toBeNull();
    const listed = await busguardRun(['dispatch', 'alarms', '--config', bus.dispatchConfigPath]);
    expect(listed.stdout).toMatch(new RegExp(`${id.slice(0, 8)}.*no fix`));
    await bus.ackAndSee(id);
  });
});
