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

  it('raises nothing for a bump shorter than holdMs', () => {
    edge(true);
    advance(300);
    edge(false);
    advance(5000);
    expect(events).toEqual(['short:panic']);
  });

  it('ignores repeated "pressed" edges from a bouncing contact', () => {
    edge(true);
    advance(200);
    edge(true);
    advance(300);
    expect(events).toEqual(['emergency:500']);
  });

  it('raises an incident for a double press within the window', () => {
    edge(true);
    advance(120);
    edge(false);
    advance(200);
    edge(true);
    advance(120);
    edge(false);
    expect(events).toEqual(['short:panic', 'incident']);
  });

  it('treats two short presses too far apart as two bumps', () => {
    edge(true);
    advance(120);
    edge(false);
    advance(700);
    edge(true);
    advance(120);
    edge(false);
    expect(events).toEqual(['short:panic', 'short:panic']);
  });

  it('lets a hold win over a double press: short press then hold is an emergency', () => {
    edge(true);
    advance(100);
    edge(false);
    advance(100);
    edge(true);
    advance(500);
    expect(events).toEqual(['short:panic', 'emergency:500']);
  });

  it('with a second input, a hold on it raises an incident and a double press raises nothing', () => {
    make('second-input');
    edge(true, 'incident');
    advance(500);
    edge(false, 'incident');
    edge(true);
    advance(100);
    edge(false);
    advance(100);
    edge(true);
    advance(100);
    edge(false);
    expect(events).toEqual(['incident', 'short:panic', 'short:panic']);
  });

  it('ignores the second input when the incident pattern is a double press', () => {
    edge(true, 'incident');
    advance(1000);
    expect(events).toEqual([]);
  });
});
