// A bus's faults reach dispatch's vehicle table on their own: no alarm needed.
// A real agent with a simulated VC0706 on a serial pair and a simulated GPS
// receiver on another, a real Mosquitto, a real receiver; `busguard dispatch
// vehicles` read as a technician would.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busguardRun } from '../helpers/process.ts';
import type { VehicleRow } from '../../dispatch/vehicles.ts';
import { BusFixture, until } from './fixture.ts';

async function vehicles(configPath: string, ...flags: string[]): Promise<VehicleRow[]> {
  const r = await busguardRun(['dispatch', 'vehicles', '--config', configPath, '--json', ...flags]);
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as VehicleRow);
}

describe('fleet health in the vehicle table', () => {
  const bus = new BusFixture({ camera: {}, name: 'busguard-health' });
  let identities = '';
  beforeAll(async () => {
    identities = join(bus.dir, 'identities.json');
    // The fleet's identities: bus-1 (this one) and bus-9, registered and never installed.
    writeFileSync(identities, JSON.stringify([{ id: 'city/bus-1' }, { id: 'city/bus-9' }, { id: 'dispatch' }]));
    // Everything at its default but the start-up grace (15 s), so the test does not wait it out.
    await bus.start({ health: { graceS: 2 } });
    await bus.restartDispatchWith({ fleet: { identitiesFile: identities } });
  }, 90_000);
  afterAll(() => bus.stop());

  it('a healthy bus is online without faults; a registered bus never heard from is listed as never seen', async () => {
    let last: VehicleRow[] = [];
    await until(
      async () => (last = await vehicles(bus.dispatchConfigPath)).some((v) => v.vehicle === 'bus-1' && v.health !== null && v.health.uptimeS > 2 && v.health.faults.length === 0 && v.health.gnss.state === 'fix'),
      30_000,
      'bus-1 healthy at dispatch',
    ).catch((err: Error) => {
      throw new Error(`${err.message}; the table said ${JSON.stringify(last)}`);
    });
    const all = await vehicles(bus.dispatchConfigPath);
    const me = all.find((v) => v.vehicle === 'bus-1')!;
    expect(me).toMatchObject({ state: 'online', registered: true, faults: [] });
    expect(me.health!.devices).toEqual([expect.objectContaining({ name: 'cabin', kind: 'camera', state: 'ok' })]);
    expect(me.health!.disk.freeBytes).toBeGreaterThan(0);
    expect(me.health!.gnss.satellites).toBeGreaterThan(0);
    expect(all.find((v) => v.vehicle === 'bus-9')).toMatchObject({ state: 'never-seen', registered: true, health: null });
    // Nothing is faulty; both are listed as not online only for bus-9.
    expect(await vehicles(bus.dispatchConfigPath, '--faulty')).toEqual([]);
    expect((await vehicles(bus.dispatchConfigPath, '--offline')).map((v) => v.vehicle)).toEqual(['bus-9']);
  }, 60_000);

  it('the camera dies and the GPS is unplugged: both faults show in `dispatch vehicles` within 10 s, without any alarm', async () => {
    const t0 = performance.now();
    await bus.camera!.stop();
    await bus.pty.stop(); // the GPS's serial device goes away, as a USB receiver pulled out
    let faulty: VehicleRow | undefined;
    await until(
      async () => {
        faulty = (await vehicles(bus.dispatchConfigPath, '--faulty')).find((v) => v.vehicle === 'bus-1');
        return faulty !== undefined && faulty.faults.includes('camera:cabin') && faulty.faults.some((f) => f.startsWith('gnss:'));
      },
      20_000,
      'camera and GPS faults at dispatch',
      200,
    );
    const s = (performance.now() - t0) / 1000;
    expect(s).toBeLessThanOrEqual(10);
    expect(faulty!.state).toBe('online');
    expect(faulty!.health!.devices.find((d) => d.name === 'cabin')).toMatchObject({ state: 'fault' });
    expect(['closed', 'no-data']).toContain(faulty!.health!.gnss.state);
    expect(bus.dispatchAlarms()).toEqual([]);
    // The text table a technician reads says the same.
    const text = await busguardRun(['dispatch', 'vehicles', '--config', bus.dispatchConfigPath, '--faulty']);
    expect(text.stdout).toMatch(/city\/bus-1\tonline\t\S+\t[^\t]*camera:cabin/);
  }, 60_000);

  it('a bus that goes offline with an open emergency is raised to the top', async () => {
    // A second bus (bus-2 has a certificate in the testbed's PKI) that raises an emergency and vanishes.
    const from = bus.dispatch.mark();
    const other = await bus.startSecondAgent('bus-2');
    const { simPress } = await import('../../hal/panel/sim-client.ts');
    await simPress(other.socket, { holdMs: 600 });
    await bus.dispatch.waitForEvent('emergency.received', (l) => l.vehicle === 'bus-2', 15_000, from);
    await other.process.kill('SIGKILL');
    await bus.dispatch.waitForEvent('vehicle.status', (l) => l.vehicle === 'bus-2' && l.state === 'offline', 30_000, from);
    const all = await vehicles(bus.dispatchConfigPath);
    expect(all[0]).toMatchObject({ vehicle: 'bus-2', state: 'offline', openEmergencies: 1 });
    expect(all[0]!.attention).toMatch(/OFFLINE WITH 1 OPEN EMERGENCY/);
    const text = await busguardRun(['dispatch', 'vehicles', '--config', bus.dispatchConfigPath]);
    expect(text.stdout.split('\n')[2]).toMatch(/^city\/bus-2\toffline\t.*OFFLINE WITH 1 OPEN EMERGENCY/);
  }, 60_000);
});
