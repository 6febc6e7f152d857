// Each receiver has its own identity: a second one started with an identity
// in use on the same database is refused with a clear message (exit 3),
// instead of the two taking the broker session from each other. (Two
// sharing one identity on different databases are told by the broker only
// where it sends MQTT 5's "session taken over", which Mosquitto 2.0.11 does
// not: see dispatch/receivers.ts.)

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { busguard } from '../../scripts/lib/logged-process.ts';
import { BusFixture } from './fixture.ts';

describe('receiver identities', () => {
  const bed = new BusFixture({ name: 'busguard-rx-id', gps: false });
  beforeAll(() => bed.start(), 60_000);
  afterAll(() => bed.stop());

  it('a second receiver with the same config is refused at start, naming the identity and who holds it; the first keeps running', async () => {
    const second = busguard(['dispatch', '--config', bed.dispatchConfigPath]);
    const { code } = await second.exited;
    expect(code).toBe(3);
    expect(second.stderr).toMatch(/receiver identity "dispatch" is in use by the receiver on \S+ \(pid \d+/);
    expect(second.stderr).toMatch(/Give this one its own: mqtt.username "dispatch\/NAME"/);
    // The first still takes alarms.
    const held = await bed.holdToDispatch();
    expect(held.received.alarmId).toBe(held.alarmId);
  }, 60_000);
});
