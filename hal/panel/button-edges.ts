// Shared by the panel drivers: fanning button edges out to listeners, and
// turning a bouncy contact into clean press/release edges.

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ButtonEvent, ButtonInput } from './types.ts';

export class ButtonListeners {
  private readonly listeners: ((event: ButtonEvent) => void)[] = [];

  constructor(
    private readonly driver: string,
    private readonly log?: Logger,
  ) {}

  add(listener: (event: ButtonEvent) => void): void {
    this.listeners.push(listener);
  }

  clear(): void {
    this.listeners.length = 0;
  }

  emit(event: ButtonEvent): void {
    this.log?.debug({ event: 'panel.button', driver: this.driver, input: event.input, pressed: event.pressed, atMs: event.atMs }, 'button edge');
    for (const listener of this.listeners) {
      // A throwing listener must not stop the others or unwind into the
      // driver's I/O callback (which could leave the hardware half-handled).
      try {
        listener(event);
      } catch (err) {
        this.log?.error({ event: 'panel.listener-failed', driver: this.driver, input: event.input, err: (err as Error).message }, 'button listener threw');
      }
    }
  }
}

/**
 * Emits an edge only once the contact has stayed in its new state for
 * settleMs, and never twice in the same direction. The edge is stamped with
 * the time the contact first moved, so a hold is measured from the moment
 * the driver pressed, not from when the bouncing stopped.
 */
export class EdgeDebouncer {
  private stable: boolean;
  private pending: boolean;
  private movedAtMs: number | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly input: ButtonInput,
    private readonly settleMs: number,
    private readonly emit: (event: ButtonEvent) => void,
    initiallyPressed = false,
  ) {
    this.stable = initiallyPressed;
    this.pending = initiallyPressed;
  }

  /** The contact was seen pressed (true) or released (false). */
  edge(pressed: boolean, atMs: number = performance.now()): void {
    this.pending = pressed;
    this.movedAtMs ??= atMs;
    if (this.settleMs <= 0) {
      this.settle();
      return;
    }
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.settle(), this.settleMs);
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private settle(): void {
    this.timer = undefined;
    const atMs = this.movedAtMs ?? performance.now();
    this.movedAtMs = undefined;
    if (this.pending === this.stable) return;
    this.stable = this.pending;
    this.emit({ input: this.input, pressed: this.stable, atMs });
  }
}
