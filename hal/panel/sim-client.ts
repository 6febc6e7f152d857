// The other end of the sim panel's control socket (see sim.ts for the
// protocol): what `busguard sim press/led`, the demo and tests run, usually
// in another process than the agent. One connection per request.

import { connect } from 'node:net';
import { SIM_DEFAULT_GAP_MS, SIM_DEFAULT_PRESS_MS, type SimRequestInput, SimReplySchema } from './sim.ts';
import type { ButtonInput, LedState, PressOutcome } from './types.ts';

export interface SimClientOptions {
  /** How long to wait for the reply beyond the time the press itself takes. Default 5000 ms. */
  replyMarginMs?: number;
}

const DEFAULT_MARGIN_MS = 5_000;

/**
 * Hold a button for holdMs; resolves once the agent has seen the release,
 * with what it made of the press (empty from an agent too old to say).
 */
export async function simPress(
  socket: string,
  press: { holdMs: number; input?: ButtonInput },
  opts: SimClientOptions = {},
): Promise<PressOutcome[]> {
  const request: SimRequestInput = { cmd: 'press', holdMs: press.holdMs, ...(press.input ? { input: press.input } : {}) };
  return (await simRequest(socket, request, finite(press.holdMs) + (opts.replyMarginMs ?? DEFAULT_MARGIN_MS))).outcomes ?? [];
}

/** Two short presses of the panic button; resolves after the second release, with what the agent made of them. */
export async function simDouble(
  socket: string,
  double: { pressMs?: number; gapMs?: number } = {},
  opts: SimClientOptions = {},
): Promise<PressOutcome[]> {
  const request: SimRequestInput = { cmd: 'double', ...double };
  const takesMs = 2 * finite(double.pressMs ?? SIM_DEFAULT_PRESS_MS) + finite(double.gapMs ?? SIM_DEFAULT_GAP_MS);
  return (await simRequest(socket, request, takesMs + (opts.replyMarginMs ?? DEFAULT_MARGIN_MS))).outcomes ?? [];
}

/** The state the agent last showed on the LED. */
export async function simLed(socket: string, opts: SimClientOptions = {}): Promise<LedState> {
  const reply = await simRequest(socket, { cmd: 'led' }, opts.replyMarginMs ?? DEFAULT_MARGIN_MS);
  if (!reply.state) throw new Error(`sim panel socket ${socket}: the reply to {"cmd":"led"} carries no state; is the agent the same busguard version?`);
  return reply.state;
}

/** Send one request line and resolve with the successful reply; anything else rejects with what to do. */
type SimOk = { ok: true; state?: LedState | undefined; outcomes?: PressOutcome[] | undefined };

export function simRequest(socket: string, request: SimRequestInput, timeoutMs: number): Promise<SimOk> {
  const line = JSON.stringify(request);
  return new Promise((resolve, reject) => {
    const conn = connect(socket);
    let settled = false;
    let buffered = '';
    const finish = (err: Error | undefined, value?: SimOk): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      conn.destroy();
      if (err) reject(err);
      else if (value) resolve(value);
    };
    const timer = setTimeout(
      () => finish(new Error(`sim panel socket ${socket}: no reply to ${line} within ${timeoutMs} ms; the agent may be stuck: check its log`)),
      timeoutMs,
    );

    conn.setEncoding('utf8');
    conn.once('connect', () => conn.write(`${line}\n`));
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      const text = buffered.slice(0, nl);
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch {
        finish(new Error(`sim panel socket ${socket}: the reply to ${line} is not JSON (${text.slice(0, 200)}); is this a busguard agent's panel.socket?`));
        return;
      }
      const reply = SimReplySchema.safeParse(raw);
      if (!reply.success) {
        finish(new Error(`sim panel socket ${socket}: unexpected reply to ${line}: ${text.slice(0, 200)}; is the agent the same busguard version?`));
      } else if (!reply.data.ok) {
        finish(new Error(`sim panel refused ${line}: ${reply.data.error}`));
      } else {
        finish(undefined, reply.data);
      }
    });
    conn.on('error', (err: NodeJS.ErrnoException) => finish(connectError(socket, err)));
    conn.on('close', () =>
      finish(new Error(`sim panel socket ${socket}: the agent closed the connection without replying to ${line}; check the agent's log`)),
    );
  });
}

function connectError(socket: string, err: NodeJS.ErrnoException): Error {
  const start = `start "busguard agent" with panel.driver "sim" and panel.socket set to this path`;
  switch (err.code) {
    case 'ENOENT':
      return new Error(`sim panel socket ${socket}: nobody listening (ENOENT); ${start}`);
    case 'ECONNREFUSED':
      return new Error(`sim panel socket ${socket}: nobody listening (ECONNREFUSED: the socket file was left by an agent that stopped); ${start}`);
    case 'EACCES':
    case 'EPERM':
      return new Error(`sim panel socket ${socket}: permission denied (${err.code}); run this as the user the agent runs as`);
    case 'ENOTSOCK':
      return new Error(`sim panel socket ${socket}: the path is not a socket (ENOTSOCK); give the agent's panel.socket`);
    default:
      return new Error(`sim panel socket ${socket}: connection failed (${err.code ?? err.message}); check that the agent is running with panel.socket set to this path`);
  }
}

function finite(ms: number): number {
  return Number.isFinite(ms) && ms > 0 ? ms : 0;
}
