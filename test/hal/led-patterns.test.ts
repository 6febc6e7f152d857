// The driver must tell every LED state from every other by eye, within one
// 2 s cycle, and the LED must stay discreet (docs/DRIVER.md).

import { describe, expect, it } from 'vitest';
import { LED_CYCLE_MS, LED_PATTERNS } from '../../hal/panel/led-patterns.ts';
import { LED_STATES } from '../../hal/panel/types.ts';

/** What an eye sees of a pattern: the lengths of its lit and dark stretches, merged. */
function signature(states: (typeof LED_STATES)[number]): string {
  const runs: [boolean, number][] = [];
  for (const s of LED_PATTERNS[states]) {
    const last = runs.at(-1);
    if (last && last[0] === s.on) last[1] += s.ms;
    else runs.push([s.on, s.ms]);
  }
  return runs.map(([on, ms]) => `${on ? 'on' : 'off'}${ms}`).join(' ');
}

describe('LED patterns', () => {
  it('every state has a pattern of its own, each one 2 s long', () => {
    const seen = new Map<string, string>();
    for (const state of LED_STATES) {
      const total = LED_PATTERNS[state].reduce((n, s) => n + s.ms, 0);
      expect(total, state).toBe(LED_CYCLE_MS);
      const sig = signature(state);
      expect(seen.get(sig), `${state} looks like ${seen.get(sig)}`).toBeUndefined();
      seen.set(sig, state);
    }
  });

  it('an incident blinks longer than an emergency, and the same number of times for the same step', () => {
    const lit = (state: (typeof LED_STATES)[number]) => LED_PATTERNS[state].filter((s) => s.on).map((s) => s.ms);
    expect(lit('incident-stored').length).toBe(lit('stored').length);
    expect(lit('incident-delivered').length).toBe(lit('delivered').length);
    expect(Math.min(...lit('incident-stored'))).toBeGreaterThanOrEqual(4 * Math.max(...lit('stored')));
  });

  it('discreet: only the acknowledgements are lit for more than half the cycle', () => {
    for (const state of LED_STATES) {
      const litMs = LED_PATTERNS[state].filter((s) => s.on).reduce((n, s) => n + s.ms, 0);
      if (state === 'acknowledged' || state === 'incident-acknowledged') continue;
      expect(litMs, state).toBeLessThanOrEqual(LED_CYCLE_MS / 2);
    }
  });
});
