// Turning button edges into the driver's intent. An emergency needs the panic
// button held for holdMs (transit covert alarms use ~500 ms) so a bump with a
// knee or a bag raises nothing. The second pattern, a double press or a hold
// on a second input, raises a non-emergency incident. Silent: nothing here
// makes a sound, by design, so an attacker does not notice.

import { EventEmitter } from 'node:events';
import type { ButtonEvent } from '../hal/panel/types.ts';

export interface PressPatternOptions {
  holdMs: number;
  incidentPattern: 'double' | 'second-input';
  doublePressWindowMs: number;
}

export interface PressPatternEvents {
  /** The hold was confirmed at `atMs` (monotonic): raise an emergency now. */
  emergency: [heldMs: number, atMs: number];
  incident: [heldMs: number, atMs: number];
  /** A press too short to mean anything (or the first of a possible double). */
  short: [input: ButtonEvent['input'], heldMs: number];
  /** A press of an input this configuration does not use (the second input with incidentPattern "double"). */
  ignored: [input: ButtonEvent['input'], reason: string];
}

interface InputState {
  downAtMs: number | null;
  holdTimer: NodeJS.Timeout | null;
  confirmed: boolean;
}

export class PressPattern extends EventEmitter<PressPatternEvents> {
  private readonly panic: InputState = { downAtMs: null, holdTimer: null, confirmed: false };
  private readonly second: InputState = { downAtMs: null, holdTimer: null, confirmed: false };
  /** When the last short panic press was released, awaiting a second one. */
  private firstShortReleaseMs: number | null = null;

  constructor(private readonly o: PressPatternOptions) {
    super();
  }

  handle(e: ButtonEvent): void {
    if (e.input === 'incident') {
      if (this.o.incidentPattern !== 'second-input') {
        if (!e.pressed) {
          this.emit('ignored', 'incident', 'this bus takes incidents as a double press of the panic button (alarm.incidentPattern "double"); its second input is not used');
        }
        return;
      }
      this.track(this.second, e, (held, at) => this.emit('incident', held, at));
      return;
    }
    if (e.pressed) {
      this.track(this.panic, e, (held, at) => {
        this.firstShortReleaseMs = null;
        this.emit('emergency', held, at);
      });
      return;
    }
    const wasShort = this.panic.downAtMs !== null && !this.panic.confirmed;
    const downAt = this.panic.downAtMs;
    this.track(this.panic, e, () => {});
    if (!wasShort || downAt === null) return;
    const held = Math.max(0, e.atMs - downAt);
    if (this.o.incidentPattern === 'double') {
      const first = this.firstShortReleaseMs;
      if (first !== null && downAt - first <= this.o.doublePressWindowMs) {
        this.firstShortReleaseMs = null;
        this.emit('incident', 0, e.atMs);
        return;
      }
      this.firstShortReleaseMs = e.atMs;
    }
    this.emit('short', 'panic', held);
  }

  dispose(): void {
    for (const s of [this.panic, this.second]) if (s.holdTimer) clearTimeout(s.holdTimer);
  }

  /** Shared hold logic: a timer started on the press fires if still held after holdMs. */
  private track(s: InputState, e: ButtonEvent, onHold: (heldMs: number, atMs: number) => void): void {
    if (e.pressed) {
      if (s.downAtMs !== null) return; // repeated "down" from a bouncing contact
      s.downAtMs = e.atMs;
      s.confirmed = false;
      s.holdTimer = setTimeout(() => {
        s.holdTimer = null;
        s.confirmed = true;
        onHold(this.o.holdMs, performance.now());
      }, this.o.holdMs);
      return;
    }
    if (s.holdTimer) clearTimeout(s.holdTimer);
    s.holdTimer = null;
    s.downAtMs = null;
  }
}
