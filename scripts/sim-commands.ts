// `busguard sim ...`: play driver against a running agent's sim panel, or be
// the GPS receiver on a serial port.

import { loadAgentConfig } from '../firmware/config.ts';
import { simDouble, simLed, simPress } from '../hal/panel/sim-client.ts';
import type { PressOutcome } from '../hal/panel/types.ts';
import { SimGpsReceiver } from '../hal/gps/route-sim.ts';

function socketFrom(opts: { socket?: string; config?: string }): string {
  if (opts.socket) return opts.socket;
  if (!opts.config) throw new Error('say which agent: --socket PATH (its panel.socket) or --config AGENT.json');
  const config = loadAgentConfig(opts.config);
  if (config.panel.driver !== 'sim') {
    throw new Error(`agent config ${opts.config} uses panel.driver "${config.panel.driver}", not "sim": there is no sim button to press`);
  }
  return config.panel.socket;
}

/** Exit codes of `busguard sim press`: 0 an alarm, incident or repeat was raised; 3 the agent raised nothing (it says why). */
export const SIM_PRESS_EXIT = { raised: 0, nothing: 3 } as const;

/**
 * Press, then say what the agent made of it (its alarm id, a repeat of an
 * open one, or why nothing was raised) and what the LED shows.
 */
export async function simPressCommand(opts: { hold: number; pattern: string; input: string; socket?: string; config?: string }): Promise<number> {
  const socket = socketFrom(opts);
  if (opts.input !== 'panic' && opts.input !== 'incident') throw new Error(`--input must be "panic" or "incident" (got "${opts.input}")`);
  let outcomes: PressOutcome[];
  if (opts.pattern === 'double') {
    outcomes = await simDouble(socket, {});
    process.stdout.write('pressed panic twice (double press)\n');
  } else if (opts.pattern === 'hold') {
    outcomes = await simPress(socket, { holdMs: opts.hold, input: opts.input });
    process.stdout.write(`held ${opts.input} for ${opts.hold} ms\n`);
  } else {
    throw new Error(`--pattern must be "hold" or "double" (got "${opts.pattern}")`);
  }
  // The first short press of a double is reported too; what counts is the last word on the press.
  const raised = outcomes.filter((o) => o.result !== 'ignored');
  const shown = raised.length ? raised : outcomes.slice(-1);
  for (const o of shown) process.stdout.write(`${o.detail}\n`);
  if (outcomes.length === 0) process.stdout.write('the agent did not say what it made of the press (an older agent?): see its log\n');
  process.stdout.write(`LED: ${await simLed(socket)}\n`);
  return raised.length > 0 || outcomes.length === 0 ? SIM_PRESS_EXIT.raised : SIM_PRESS_EXIT.nothing;
}

export async function simLedCommand(opts: { socket?: string; config?: string }): Promise<void> {
  process.stdout.write(`${await simLed(socketFrom(opts))}\n`);
}

export async function simGpsCommand(opts: { port: string; baud: number; rate: number; fix: boolean }): Promise<void> {
  if (!(opts.rate > 0 && opts.rate <= 20)) throw new Error(`--rate must be between 0 and 20 fixes per second (got ${opts.rate})`);
  const sim = new SimGpsReceiver({ path: opts.port, baudRate: opts.baud, rateHz: opts.rate, fixValid: opts.fix });
  await sim.start();
  process.stdout.write(`writing NMEA to ${opts.port} at ${opts.baud} baud, ${opts.rate} Hz; Ctrl-C to stop\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await sim.stop();
}
