// The driver's panel: the panic button (plus an optional second input for
// non-emergency incidents) and the discreet status LED. One interface, one
// implementation per kind of hardware (see drivers.ts for the table).

/** Which physical input changed. `incident` exists only when a second input is wired. */
export type ButtonInput = 'panic' | 'incident';

export interface ButtonEvent {
  input: ButtonInput;
  pressed: boolean;
  /** Monotonic milliseconds (performance.now()) at which the edge was seen. */
  atMs: number;
}

/**
 * What the LED tells the driver. Patterns are discreet (see led-patterns.ts):
 * idle = off, stored = one short blink every 2 s, delivered = two short blinks,
 * acknowledged = steady on, fault = three short blinks.
 */
export type LedState = 'idle' | 'stored' | 'delivered' | 'acknowledged' | 'fault';
export const LED_STATES: readonly LedState[] = ['idle', 'stored', 'delivered', 'acknowledged', 'fault'];

export interface Panel {
  /** Driver name as chosen in config: 'sim' | 'onoff' | 'johnny-five'. */
  readonly driver: string;
  /** Register a listener for button edges (already debounced by the driver). */
  onButton(listener: (event: ButtonEvent) => void): void;
  /** Show a state on the LED; real drivers run the blink pattern themselves. */
  setLed(state: LedState): void;
  /** The state last shown. */
  ledState(): LedState;
  /** Release the hardware (unexport GPIO, close serial port, close socket). */
  close(): Promise<void>;
}
