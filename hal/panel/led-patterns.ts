// What the driver's status LED shows. The LED is meant to be discreet: an
// attacker standing by the cab should not see that an alarm went out, so the
// states are short blinks every two seconds, not a flashing beacon, and
// nothing on the panel makes a sound (there is no buzzer by design).

import type { Logger } from 'pino';
import type { LedState } from './types.ts';

export interface LedStep {
  on: boolean;
  ms: number;
}

/** A pattern repeats forever; one whose steps all have the same `on` is steady. */
export type LedPattern = readonly LedStep[];

export const LED_CYCLE_MS = 2_000;
export const LED_BLINK_MS = 60;
/** An incident's blink: long enough to tell from an emergency's at a glance, short enough to stay discreet. */
export const LED_LONG_BLINK_MS = 500;
/** Dark time between blinks of one group: long enough to count them by eye. */
export const LED_BLINK_GAP_MS = 240;
/** The `registered` flurry: fast, so it reads as "taken" and not as a count. */
export const LED_FLURRY_MS = 70;

function blinks(count: number, onMs = LED_BLINK_MS, gapMs = LED_BLINK_GAP_MS): LedPattern {
  const steps: LedStep[] = [];
  for (let i = 0; i < count; i++) {
    steps.push({ on: true, ms: onMs });
    const last = i === count - 1;
    const used = count * onMs + (count - 1) * gapMs;
    steps.push({ on: false, ms: last ? LED_CYCLE_MS - used : gapMs });
  }
  return steps;
}

/**
 * One pattern per state, each told apart by eye within one 2 s cycle:
 *
 * | state                  | pattern                                   |
 * | ---------------------- | ----------------------------------------- |
 * | idle                   | off                                       |
 * | stored                 | 1 short blink (emergency on the bus)      |
 * | delivered              | 2 short blinks (emergency at dispatch)    |
 * | acknowledged           | steady on (emergency acknowledged)        |
 * | incident-stored        | 1 long blink                              |
 * | incident-delivered     | 2 long blinks                             |
 * | incident-acknowledged  | on, with one short dark dip               |
 * | registered             | a flurry of 5 fast blinks (a press taken) |
 * | fault                  | 3 short blinks (could not be stored)      |
 */
export const LED_PATTERNS: Readonly<Record<LedState, LedPattern>> = {
  idle: [{ on: false, ms: LED_CYCLE_MS }],
  stored: blinks(1),
  delivered: blinks(2),
  acknowledged: [{ on: true, ms: LED_CYCLE_MS }],
  'incident-stored': blinks(1, LED_LONG_BLINK_MS),
  'incident-delivered': blinks(2, LED_LONG_BLINK_MS, 300),
  'incident-acknowledged': [
    { on: true, ms: LED_CYCLE_MS - 300 },
    { on: false, ms: 300 },
  ],
  registered: blinks(5, LED_FLURRY_MS, LED_FLURRY_MS),
  fault: blinks(3),
};

export function isSteady(pattern: LedPattern): boolean {
  return pattern.every((s) => s.on === pattern[0]?.on);
}

/**
 * Plays LED_PATTERNS on one output through `write`. Timers are unref'd: a
 * blinking LED must never be what keeps the agent's process alive.
 */
export class LedBlinker {
  private current: LedState = 'idle';
  private timer: NodeJS.Timeout | undefined;
  private lit: boolean | undefined;
  private stopped = false;

  constructor(
    private readonly write: (on: boolean) => void,
    private readonly log?: Logger,
  ) {}

  get state(): LedState {
    return this.current;
  }

  /**
   * Start the pattern for `state` from its first step (so a change is seen at
   * once). Showing the state already shown keeps its rhythm instead of
   * restarting it, as callers may refresh the LED often.
   */
  show(state: LedState): void {
    if (this.stopped) return;
    if (state === this.current && (this.timer !== undefined || this.lit !== undefined)) return;
    this.current = state;
    this.clearTimer();
    const pattern = LED_PATTERNS[state];
    if (isSteady(pattern)) {
      this.set(pattern[0]?.on ?? false);
      return;
    }
    this.play(pattern, 0);
  }

  /** Stop blinking and leave the LED dark; later show() calls are ignored. */
  stop(): void {
    this.clearTimer();
    this.set(false);
    this.stopped = true;
  }

  private play(pattern: LedPattern, index: number): void {
    const step = pattern[index];
    if (!step) return;
    this.set(step.on);
    this.timer = setTimeout(() => this.play(pattern, (index + 1) % pattern.length), step.ms);
    this.timer.unref();
  }

  private set(on: boolean): void {
    if (this.stopped || this.lit === on) return;
    try {
      this.write(on);
      this.lit = on;
    } catch (err) {
      // A failed write must not stop the pattern: the next step tries again.
      this.lit = undefined;
      this.log?.warn({ event: 'panel.led.write-failed', on, state: this.current, err: (err as Error).message }, 'LED write failed');
    }
  }

  private clearTimer(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
