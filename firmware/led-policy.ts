// What the driver's LED shows, as a pure function of the alarms' state: the
// first match wins. A 'registered' flurry for one cycle after a press the
// steady pattern would not show (a repeat, an incident behind an emergency);
// the open emergency (the state of its latest press); a fresh
// acknowledgement of an emergency; the open incident; a fresh
// acknowledgement of an incident; nothing. The patterns themselves are in
// hal/panel/led-patterns.ts, and explained to drivers in docs/DRIVER.md.

import type { LedState } from '../hal/panel/types.ts';

/** Where an open alarm's latest press is: on the bus, at dispatch, or only in memory (the disk refused it). */
export type OpenState = 'stored' | 'delivered' | 'sending';

export interface LedInputs {
  /** Date.now() ms. */
  now: number;
  /** Until when the 'registered' flurry shows. */
  flashUntil: number;
  emergency: OpenState | null;
  incident: OpenState | null;
  /** When the last emergency / incident was acknowledged (Date.now() ms), or null. */
  emergencyAckedAt: number | null;
  incidentAckedAt: number | null;
  /** How long an acknowledgement shows (alarm.acknowledgedShowS). */
  showAckMs: number;
}

export interface LedDecision {
  state: LedState;
  /** When the decision changes by itself (a flurry or an acknowledgement ending), or null. */
  changesInMs: number | null;
}

export function ledFor(i: LedInputs): LedDecision {
  const ackLeft = (at: number | null) => (at === null ? 0 : at + i.showAckMs - i.now);
  const open = (s: OpenState, kind: 'emergency' | 'incident'): LedState => {
    if (s === 'sending') return 'fault';
    if (kind === 'emergency') return s;
    return s === 'stored' ? 'incident-stored' : 'incident-delivered';
  };
  if (i.now < i.flashUntil) return { state: 'registered', changesInMs: i.flashUntil - i.now };
  if (i.emergency) return { state: open(i.emergency, 'emergency'), changesInMs: null };
  const emergencyAck = ackLeft(i.emergencyAckedAt);
  if (emergencyAck > 0) return { state: 'acknowledged', changesInMs: emergencyAck };
  if (i.incident) return { state: open(i.incident, 'incident'), changesInMs: null };
  const incidentAck = ackLeft(i.incidentAckedAt);
  if (incidentAck > 0) return { state: 'incident-acknowledged', changesInMs: incidentAck };
  return { state: 'idle', changesInMs: null };
}
