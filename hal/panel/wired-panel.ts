// What the panels wired to a real button and LED (onoff, johnny-five) share:
// the listeners of the buttons' edges and the LED state last asked for,
// shown by a blinker when the panel has an LED.

import type { Logger } from 'pino';
import { ButtonListeners } from './button-edges.ts';
import type { LedBlinker } from './led-patterns.ts';
import type { ButtonEvent, LedState } from './types.ts';

export abstract class WiredPanel {
  protected readonly listeners: ButtonListeners;
  /** Set by the driver once its LED is open; none when the panel has no LED. */
  protected blinker: LedBlinker | null = null;
  protected closed = false;
  private shown: LedState = 'idle';

  protected constructor(driver: string, log?: Logger) {
    this.listeners = new ButtonListeners(driver, log);
  }

  onButton(listener: (event: ButtonEvent) => void): void {
    this.listeners.add(listener);
  }

  setLed(state: LedState): void {
    this.shown = state;
    this.blinker?.show(state);
  }

  ledState(): LedState {
    return this.shown;
  }
}
