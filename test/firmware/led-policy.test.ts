// What the LED shows, from the alarms' state alone (firmware/led-policy.ts).

import { describe, expect, it } from 'vitest';
import { type LedInputs, ledFor } from '../../firmware/led-policy.ts';

const base: LedInputs = { now: 100_000, flashUntil: 0, emergency: null, incident: null, emergencyAckedAt: null, incidentAckedAt: null, showAckMs: 120_000 };
const led = (over: Partial<LedInputs>) => ledFor({ ...base, ...over });

describe('LED policy', () => {
  it('nothing open: idle, and nothing to come back for', () => {
    expect(led({})).toEqual({ state: 'idle', changesInMs: null });
  });

  it('an emergency shows the state of its latest press; an incident its own long-blink states; a disk that refused it: fault', () => {
    expect(led({ emergency: 'stored' }).state).toBe('stored');
    expect(led({ emergency: 'delivered' }).state).toBe('delivered');
    expect(led({ emergency: 'sending' }).state).toBe('fault');
    expect(led({ incident: 'stored' }).state).toBe('incident-stored');
    expect(led({ incident: 'delivered' }).state).toBe('incident-delivered');
    expect(led({ incident: 'sending' }).state).toBe('fault');
  });

  it('first match wins: flurry, open emergency, fresh emergency ack, open incident, fresh incident ack', () => {
    const all: Partial<LedInputs> = { flashUntil: 101_000, emergency: 'delivered', emergencyAckedAt: 90_000, incident: 'stored', incidentAckedAt: 95_000 };
    expect(led(all)).toEqual({ state: 'registered', changesInMs: 1_000 });
    expect(led({ ...all, flashUntil: 0 }).state).toBe('delivered');
    expect(led({ ...all, flashUntil: 0, emergency: null })).toEqual({ state: 'acknowledged', changesInMs: 110_000 });
    expect(led({ ...all, flashUntil: 0, emergency: null, emergencyAckedAt: null }).state).toBe('incident-stored');
    expect(led({ ...all, flashUntil: 0, emergency: null, emergencyAckedAt: null, incident: null })).toEqual({ state: 'incident-acknowledged', changesInMs: 115_000 });
  });

  it('an acknowledgement older than acknowledgedShowS no longer shows', () => {
    expect(led({ emergencyAckedAt: 100_000 - 120_000 }).state).toBe('idle');
    expect(led({ emergencyAckedAt: 100_000 - 119_000 }).state).toBe('acknowledged');
  });
});
