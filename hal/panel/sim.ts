// The panel without hardware: a Unix control socket through which another
// process (`busguard sim press`, a test, the demo) presses the buttons and
// reads the LED back. Only what a test needs to drive the agent is added to
// the Panel interface; the agent cannot tell this from a real button.
//
// Protocol: newline-delimited JSON, one request per line, one reply per line,
// replies in request order on each connection.
//   {"cmd":"press","holdMs":800,"input":"panic"}  -> {"ok":true,"outcomes":[...]} after the release
//   {"cmd":"double","pressMs":120,"gapMs":150}     -> {"ok":true,"outcomes":[...]} after the second release
//   {"cmd":"led"}                                  -> {"ok":true,"state":"stored"}
//   anything else                                  -> {"ok":false,"error":"..."}
// `outcomes` says what the agent made of the presses (PressOutcome: an alarm
// raised and its id, a repeat, or why nothing was raised), so whoever
// pressed learns it without reading the agent's log.

import { chmod, lstat, mkdir, unlink } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { dirname } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { z } from 'zod';
import { ButtonListeners } from './button-edges.ts';
import type { SimPanelConfig } from './config.ts';
import { type ButtonEvent, type ButtonInput, LED_STATES, type LedState, type Panel, type PressOutcome } from './types.ts';

export const SIM_MAX_MS = 60_000;
export const SIM_DEFAULT_PRESS_MS = 120;
export const SIM_DEFAULT_GAP_MS = 150;
/** A request longer than this without a newline is refused (and the connection closed): nobody types that. */
export const SIM_MAX_LINE_BYTES = 4_096;

const durationMs = (() => {
  const error = `expected a whole number of milliseconds from 1 to ${SIM_MAX_MS}`;
  return z.number({ error }).int({ error }).min(1, { error }).max(SIM_MAX_MS, { error });
})();

const SIM_COMMANDS = ['press', 'double', 'led'] as const;

export const SimRequestSchema = z.discriminatedUnion('cmd', [
  z
    .object({
      cmd: z.literal('press'),
      holdMs: durationMs,
      input: z.enum(['panic', 'incident'], { error: 'expected "panic" or "incident"' }).default('panic'),
    })
    .strict(),
  z
    .object({
      cmd: z.literal('double'),
      pressMs: durationMs.default(SIM_DEFAULT_PRESS_MS),
      gapMs: durationMs.default(SIM_DEFAULT_GAP_MS),
    })
    .strict(),
  z.object({ cmd: z.literal('led') }).strict(),
]);
export type SimRequest = z.output<typeof SimRequestSchema>;
export type SimRequestInput = z.input<typeof SimRequestSchema>;

export const PressOutcomeSchema = z.object({
  input: z.enum(['panic', 'incident']),
  result: z.enum(['raised', 'repeat', 'ignored']),
  kind: z.enum(['emergency', 'incident']).optional(),
  alarmId: z.string().optional(),
  detail: z.string(),
});

export const SimReplySchema = z.union([
  z.object({ ok: z.literal(true), state: z.enum(LED_STATES).optional(), outcomes: z.array(PressOutcomeSchema).optional() }),
  z.object({ ok: z.literal(false), error: z.string() }),
]);
export type SimReply = z.output<typeof SimReplySchema>;

const EXAMPLE = '{"cmd":"press","holdMs":800}';

/** Parse one request line; the error is what the client is told. */
export function parseSimRequest(line: string): { ok: true; request: SimRequest } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    return { ok: false, error: `not JSON (${(err as Error).message}): send one JSON object per line, e.g. ${EXAMPLE}` };
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { ok: false, error: `expected a JSON object such as ${EXAMPLE} (got ${JSON.stringify(raw)})` };
  }
  const cmd = (raw as Record<string, unknown>).cmd;
  if (!SIM_COMMANDS.includes(cmd as (typeof SIM_COMMANDS)[number])) {
    return {
      ok: false,
      error: `${cmd === undefined ? 'missing "cmd"' : `unknown cmd ${JSON.stringify(cmd)}`}; expected one of ${SIM_COMMANDS.map((c) => `"${c}"`).join(', ')}`,
    };
  }
  const result = SimRequestSchema.safeParse(raw);
  if (result.success) return { ok: true, request: result.data };
  const problems = result.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') return `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
    const key = issue.path.join('.');
    const value = (raw as Record<string, unknown>)[String(issue.path[0])];
    return `${key}: ${issue.message}${value === undefined ? ' (missing)' : ` (got ${JSON.stringify(value)})`}`;
  });
  return { ok: false, error: `bad "${String(cmd)}" request: ${problems.join('; ')}` };
}

class PanelClosedError extends Error {}

export class SimPanel implements Panel {
  readonly driver = 'sim';
  private readonly listeners: ButtonListeners;
  private readonly connections = new Set<Socket>();
  private readonly sleeps = new Set<{ timer: NodeJS.Timeout; reject: (err: Error) => void }>();
  private readonly held = new Set<ButtonInput>();
  /** Requests under way, each collecting what the agent reports of its presses. */
  private readonly collectors = new Set<{ input: ButtonInput; outcomes: PressOutcome[] }>();
  private led: LedState = 'idle';
  private closed = false;
  private socketIno: number | undefined;

  private constructor(
    private readonly server: Server,
    /** Path of the control socket. */
    readonly socket: string,
    private readonly log?: Logger,
  ) {
    this.listeners = new ButtonListeners('sim', log);
  }

  /** Listen on config.socket, replacing a stale socket file left by an agent that died. */
  static async open(config: SimPanelConfig, log?: Logger): Promise<SimPanel> {
    const path = config.socket;
    const fail = (what: string, err: unknown): Error =>
      new Error(`sim panel socket ${path}: ${what} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); check panel.socket and the permissions of ${dirname(path)}`);

    try {
      await mkdir(dirname(path), { recursive: true });
    } catch (err) {
      throw fail(`cannot create the folder ${dirname(path)}`, err);
    }
    await removeStaleSocket(path);

    const server = createServer();
    const panel = new SimPanel(server, path, log);
    server.on('connection', (conn) => panel.serve(conn));
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(fail('cannot listen', err)));
      server.listen(path, () => resolve());
    });
    server.on('error', (err) => log?.error({ event: 'panel.sim.server-error', socket: path, err: err.message }, 'sim panel socket error'));
    try {
      // The socket presses the panic button: only the agent's own user may use it.
      await chmod(path, 0o600);
      panel.socketIno = (await lstat(path)).ino;
    } catch (err) {
      await panel.close();
      throw fail('cannot restrict permissions', err);
    }
    log?.info({ event: 'panel.sim.listening', socket: path }, 'sim panel listening');
    return panel;
  }

  onButton(listener: (event: ButtonEvent) => void): void {
    this.listeners.add(listener);
  }

  setLed(state: LedState): void {
    if (state !== this.led) this.log?.debug({ event: 'panel.led', driver: 'sim', state }, 'LED state');
    this.led = state;
  }

  ledState(): LedState {
    return this.led;
  }

  report(outcome: PressOutcome): void {
    for (const c of this.collectors) if (c.input === outcome.input) c.outcomes.push(outcome);
  }

  /** Stop listening, end every connection, cancel presses in progress and remove the socket file. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const sleep of this.sleeps) {
      clearTimeout(sleep.timer);
      sleep.reject(new PanelClosedError('the agent closed its panel before the press finished'));
    }
    this.sleeps.clear();
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const conn of this.connections) conn.destroy();
    await stopped;
    this.listeners.clear();
    try {
      // Only our own socket: another agent may have taken the path over since.
      if ((await lstat(this.socket)).ino === this.socketIno) await unlink(this.socket);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        this.log?.warn({ event: 'panel.sim.unlink-failed', socket: this.socket, err: (err as Error).message }, 'could not remove the sim panel socket');
      }
    }
    this.log?.info({ event: 'panel.sim.closed', socket: this.socket }, 'sim panel closed');
  }

  private serve(conn: Socket): void {
    if (this.closed) {
      conn.destroy();
      return;
    }
    this.connections.add(conn);
    conn.setEncoding('utf8');
    let buffered = '';
    // Requests on one connection are answered in order, one at a time.
    let queue = Promise.resolve();
    const reply = (r: SimReply): void => {
      if (conn.writable) conn.write(`${JSON.stringify(r)}\n`);
    };
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (line === '') continue;
        queue = queue.then(async () => reply(await this.handle(line)));
      }
      if (Buffer.byteLength(buffered) > SIM_MAX_LINE_BYTES) {
        buffered = '';
        const error = `request longer than ${SIM_MAX_LINE_BYTES} bytes without a newline; send one JSON object per line, e.g. ${EXAMPLE}`;
        this.log?.warn({ event: 'panel.sim.bad-request', error }, 'sim panel request refused');
        queue = queue.then(() => {
          reply({ ok: false, error });
          conn.end();
        });
      }
    });
    // A client that goes away mid-press is normal (Ctrl-C on `busguard sim press`); the press still completes.
    conn.on('error', (err) => this.log?.debug({ event: 'panel.sim.client-error', err: err.message }, 'sim client connection error'));
    conn.on('close', () => this.connections.delete(conn));
  }

  private async handle(line: string): Promise<SimReply> {
    const parsed = parseSimRequest(line);
    if (!parsed.ok) {
      this.log?.warn({ event: 'panel.sim.bad-request', request: line.slice(0, 200), error: parsed.error }, 'sim panel request refused');
      return { ok: false, error: parsed.error };
    }
    const { request } = parsed;
    this.log?.debug({ event: 'panel.sim.request', ...request }, 'sim panel request');
    try {
      switch (request.cmd) {
        case 'press':
          return { ok: true, outcomes: await this.collect(request.input, () => this.press(request.input, request.holdMs)) };
        case 'double':
          return { ok: true, outcomes: await this.collect('panic', () => this.double(request.pressMs, request.gapMs)) };
        case 'led':
          return { ok: true, state: this.led };
      }
    } catch (err) {
      return { ok: false, error: (err as Error).message };
    }
  }

  /** What the agent reports while `act` presses: it answers within the edge that decides (the hold timer, or the release). */
  private async collect(input: ButtonInput, act: () => Promise<void>): Promise<PressOutcome[]> {
    const c = { input, outcomes: [] as PressOutcome[] };
    this.collectors.add(c);
    try {
      await act();
      await new Promise((r) => setImmediate(r));
      return c.outcomes;
    } finally {
      this.collectors.delete(c);
    }
  }

  private async press(input: ButtonInput, holdMs: number): Promise<void> {
    await this.holding(input, async () => {
      const downAt = this.edge(input, true);
      await this.sleepUntil(downAt + holdMs);
      this.edge(input, false);
    });
  }

  private async double(pressMs: number, gapMs: number): Promise<void> {
    await this.holding('panic', async () => {
      const firstDown = this.edge('panic', true);
      await this.sleepUntil(firstDown + pressMs);
      const firstUp = this.edge('panic', false);
      await this.sleepUntil(firstUp + gapMs);
      const secondDown = this.edge('panic', true);
      await this.sleepUntil(secondDown + pressMs);
      this.edge('panic', false);
    });
  }

  /** One simulated finger per input: overlapping presses would produce down, down, up, up. */
  private async holding(input: ButtonInput, act: () => Promise<void>): Promise<void> {
    if (this.closed) throw new PanelClosedError('the sim panel is closed');
    if (this.held.has(input)) {
      throw new Error(`the ${input} input is already held by another sim request; wait until it is released`);
    }
    this.held.add(input);
    try {
      await act();
    } finally {
      this.held.delete(input);
    }
  }

  private edge(input: ButtonInput, pressed: boolean): number {
    const atMs = performance.now();
    this.listeners.emit({ input, pressed, atMs });
    return atMs;
  }

  /**
   * Wait until performance.now() >= deadline. setTimeout may fire up to a
   * millisecond early against performance.now(), and a hold reported as 499.6
   * ms for a 500 ms press would fall under the agent's threshold.
   */
  private async sleepUntil(deadlineMs: number): Promise<void> {
    for (let left = deadlineMs - performance.now(); left > 0; left = deadlineMs - performance.now()) {
      await new Promise<void>((resolve, reject) => {
        const sleep = {
          timer: setTimeout(() => {
            this.sleeps.delete(sleep);
            resolve();
          }, Math.ceil(left)),
          reject,
        };
        this.sleeps.add(sleep);
      });
    }
  }
}

/**
 * A socket file left by an agent that died is removed; one that still answers
 * belongs to a running agent and is not ours to take; anything else at the
 * path is not a socket we made and is left alone.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new Error(`sim panel socket ${path}: cannot inspect the path (${(err as NodeJS.ErrnoException).code}); check panel.socket`);
  }
  if (!isSocket) {
    throw new Error(`sim panel socket ${path}: the path exists and is not a socket; not removing it: choose another panel.socket or remove the file`);
  }
  const probe = await new Promise<'live' | 'stale' | NodeJS.ErrnoException>((resolve) => {
    const conn = connect(path);
    conn.once('connect', () => {
      conn.destroy();
      resolve('live');
    });
    conn.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' ? 'stale' : err));
  });
  if (probe === 'live') {
    throw new Error(`sim panel socket ${path}: another process is already listening on it (another agent?); stop it or choose another panel.socket`);
  }
  if (probe !== 'stale') {
    throw new Error(`sim panel socket ${path}: cannot tell whether the socket file is stale (${probe.code ?? probe.message}); check its owner and permissions, or choose another panel.socket`);
  }
  await unlink(path);
}
