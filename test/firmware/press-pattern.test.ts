import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PressPattern } from '../../firmware/press-pattern.ts';
import type { ButtonEvent } from '../../hal/panel/types.ts';

// Timers are faked: the pattern is about durations, and tests must not depend on machine speed.
describe('press pattern', () => {
  let now = 0;
  let events: string[];
  let pattern: PressPattern;
  const edge = (pressed: boolean, input: ButtonEvent['input'] = 'panic') => pattern.handle({ input, pressed, atMs: now });
  const advance = (ms: number) => {
    now += ms;
    vi.advanceTimersByTime(ms);
  };
  const make = (incidentPattern: 'double' | 'second-input') => {
    pattern = new PressPattern({ holdMs: 500, incidentPattern, doublePressWindowMs: 600 });
    pattern.on('emergency', (held) => events.push(`emergency:${held}`));
    pattern.on('incident', () => events.push('incident'));
    pattern.on('short', (input) => events.push(`short:${input}`));
  };
  /**
   * Presses as a script, read left to right: `down` and `up` are edges of the
   * panic button, `incident-down` and `incident-up` of the second input, and a
   * number is that many ms passing.
   */
  const play = (script: string) => {
    const edges: Record<string, [boolean, ButtonEvent['input']]> = {
      down: [true, 'panic'],
      up: [false, 'panic'],
      'incident-down': [true, 'incident'],
      'incident-up': [false, 'incident'],
    };
    for (const step of script.split(' ')) {
      const e = edges[step];
      if (e) edge(...e);
      else if (/^\d+$/.test(step)) advance(Number(step));
      else throw new Error(`press script "${script}": unknown step "${step}"`);
    }
  };

  beforeEach(() => {
    vi.useFakeTimers();
    now = 0;
    events = [];
    make('double');
  });
  afterEach(() => {
    pattern.dispose();
    vi.useRealTimers();
  });

  it('raises an emergency once the button has been held for holdMs, without waiting for release', () => {
    edge(true);
    advance(499);
    expect(events).toEqual([]);
    advance(1);
    expect(events).toEqual(['emergency:500']);
    advance(3000);
    edge(false);
    expect(events).toEqual(['emergency:500']);
  });

  it.each([
    { what: 'raises nothing for a bump shorter than holdMs', presses: 'down 300 up 5000', raised: ['short:panic'] },
    { what: 'ignores repeated "pressed" edges from a bouncing contact', presses: 'down 200 down 300', raised: ['emergency:500'] },
    { what: 'raises an incident for a double press within the window', presses: 'down 120 up 200 down 120 up', raised: ['short:panic', 'incident'] },
    { what: 'treats two short presses too far apart as two bumps', presses: 'down 120 up 700 down 120 up', raised: ['short:panic', 'short:panic'] },
    { what: 'lets a hold win over a double press: short press then hold is an emergency', presses: 'down 100 up 100 down 500', raised: ['short:panic', 'emergency:500'] },
    { what: 'ignores the second input when the incident pattern is a double press', presses: 'incident-down 1000', raised: [] },
  ])('$what', ({ presses, raised }) => {
    play(presses);
    expect(events).toEqual(raised);
  });

  it('with a second input, a hold on it raises an incident and a double press raises nothing', () => {
    make('second-input');
    play('incident-down 500 incident-up down 100 up 100 down 100 up');
    expect(events).toEqual(['incident', 'short:panic', 'short:panic']);
  });
});
