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
 * What the LED tells the driver. Each state has a pattern of its own, all
 * discreet (see led-patterns.ts, and the driver's card in docs/DRIVER.md):
 * an emergency blinks short, an incident blinks long, so the driver can tell
 * which was taken; `registered` is a brief flurry shown once when a press
 * was taken that the steady pattern would not show (a press repeated while
 * an alarm is open, an incident while an emergency is showing).
 */
export type LedState =
  | 'idle'
  | 'stored'
  | 'delivered'
  | 'acknowledged'
  | 'incident-stored'
  | 'incident-delivered'
  | 'incident-acknowledged'
  | 'registered'
  | 'fault';
export const LED_STATES = [
  'idle',
  'stored',
  'delivered',
  'acknowledged',
  'incident-stored',
  'incident-delivered',
  'incident-acknowledged',
  'registered',
  'fault',
] as const satisfies readonly LedState[];

/**
 * What the agent made of one press, for a panel that can tell whoever
 * pressed (the sim panel puts it in its reply to `busguard sim press`; a real
 * button has only its LED).
 */
export interface PressOutcome {
  input: ButtonInput;
  /** raised: a new alarm or incident; repeat: a press of one already open, sent as a repeat; ignored: nothing raised. */
  result: 'raised' | 'repeat' | 'ignored';
  kind?: 'emergency' | 'incident';
  alarmId?: string;
  /** One sentence: what happened, or why nothing did. */
  detail: string;
}

export interface Panel {
  /** Driver name as chosen in config: 'sim' | 'onoff' | 'johnny-five'. */
  readonly driver: string;
  /** Register a listener for button edges (already debounced by the driver). */
  onButton(listener: (event: ButtonEvent) => void): void;
  /** Show a state on the LED; real drivers run the blink pattern themselves. */
  setLed(state: LedState): void;
  /** The state last shown. */
  ledState(): LedState;
  /** Optional: be told what a press did (see PressOutcome). */
  report?(outcome: PressOutcome): void;
  /** Release the hardware (unexport GPIO, close serial port, close socket). */
  close(): Promise<void>;
}
