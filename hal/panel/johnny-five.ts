// Panic button, optional incident button and status LED on an Arduino-class
// I/O board running StandardFirmata on a serial port, through johnny-five.
// The Firmata connection is opened on our own serialport (so the baud rate
// comes from config and errors name the port); tests hand in mock-firmata's
// board instead, as johnny-five's own tests do.

import { createRequire } from 'node:module';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { errText } from '../../common/errors.ts';
import { EdgeDebouncer } from './button-edges.ts';
import type { JohnnyFivePanelConfig } from './config.ts';
import { LedBlinker } from './led-patterns.ts';
import type { ButtonEvent, ButtonInput, Panel } from './types.ts';
import { WiredPanel } from './wired-panel.ts';

const require = createRequire(import.meta.url);

/** The part of a Firmata IO object (firmata-io or mock-firmata) this driver touches directly. */
export interface FirmataIo {
  name?: string;
  isReady?: boolean;
  transport?: { close?: (cb?: (err?: Error | null) => void) => void; isOpen?: boolean } | null;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
  emit(event: string, ...args: unknown[]): boolean;
}

interface FiveBoard {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  once(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
}
interface FiveButton {
  on(event: 'down' | 'up', listener: () => void): unknown;
  removeAllListeners(): unknown;
}
interface FiveLed {
  on(): unknown;
  off(): unknown;
  stop(): unknown;
}
interface Five {
  Board: (new (opts: Record<string, unknown>) => FiveBoard) & { purge?: () => void };
  Button: new (opts: Record<string, unknown>) => FiveButton;
  Led: new (opts: Record<string, unknown>) => FiveLed;
}

export interface JohnnyFiveDeps {
  /** A Firmata IO object to use instead of opening config.port (tests: mock-firmata). */
  io?: FirmataIo;
  /** How long to wait for the board to answer. Default 10 s (a Leonardo needs ~8 s after a reset). */
  readyTimeoutMs?: number;
}

const DEFAULT_READY_TIMEOUT_MS = 10_000;

function openFirmata(config: JohnnyFivePanelConfig, readyTimeoutMs: number): FirmataIo {
  const { SerialPort } = require('serialport') as typeof import('serialport');
  const { Firmata } = require('firmata-io') as { Firmata: new (transport: unknown, opts: Record<string, unknown>) => FirmataIo };
  const port = new SerialPort({ path: config.port, baudRate: config.baudRate, autoOpen: true });
  return new Firmata(port, { reportVersionTimeout: Math.min(5_000, readyTimeoutMs) });
}

export class JohnnyFivePanel extends WiredPanel implements Panel {
  readonly driver = 'johnny-five';
  private readonly buttons: { button: FiveButton; debouncer: EdgeDebouncer }[] = [];
  private led: FiveLed | null = null;
  private lostListener: ((...args: unknown[]) => void) | null = null;

  private constructor(
    private readonly io: FirmataIo,
    private readonly ownsIo: boolean,
    private readonly log?: Logger,
  ) {
    super('johnny-five', log);
  }

  static async open(config: JohnnyFivePanelConfig, log?: Logger, deps: JohnnyFiveDeps = {}): Promise<JohnnyFivePanel> {
    const readyTimeoutMs = deps.readyTimeoutMs ?? DEFAULT_READY_TIMEOUT_MS;
    const five = require('johnny-five') as Five;
    const ownsIo = !deps.io;
    const io = deps.io ?? openFirmata(config, readyTimeoutMs);
    const panel = new JohnnyFivePanel(io, ownsIo, log);
    const where = deps.io ? `Firmata IO "${io.name ?? 'unknown'}"` : `${config.port} at ${config.baudRate} baud`;

    // Register for errors before the board exists: a missing port fails at once, before "ready".
    let board: FiveBoard;
    try {
      board = await new Promise<FiveBoard>((resolve, reject) => {
        let b: FiveBoard | undefined;
        const fail = (err: unknown): void => {
          cleanup();
          const msg = errText(err);
          reject(new Error(`panel.driver "johnny-five": the I/O board on ${where} did not come up (${msg}); check panel.port, panel.baudRate and that the board runs StandardFirmata`));
        };
        const timer = setTimeout(() => fail(new Error(`no Firmata answer within ${readyTimeoutMs} ms`)), readyTimeoutMs);
        const onIoError = (err: unknown): void => fail(err);
        const cleanup = (): void => {
          clearTimeout(timer);
          io.removeListener('error', onIoError);
          b?.removeListener('error', onIoError);
        };
        io.on('error', onIoError);
        b = new five.Board({ io, repl: false, debug: false, sigint: false, timeout: readyTimeoutMs });
        b.on('error', onIoError);
        b.once('ready', () => {
          cleanup();
          resolve(b as FiveBoard);
        });
      });
    } catch (err) {
      await panel.releaseIo();
      throw err;
    }

    try {
      panel.addButton(five, board, 'panic', config.button, config.debounceMs);
      if (config.incidentButton) panel.addButton(five, board, 'incident', config.incidentButton, config.debounceMs);
      if (config.led) {
        const led = new five.Led({ pin: config.led.pin, board });
        panel.led = led;
        panel.blinker = new LedBlinker((on) => (on ? led.on() : led.off()), log);
      }
    } catch (err) {
      await panel.close();
      throw new Error(`panel.driver "johnny-five": cannot set up the pins on ${where} (${(err as Error).message}); check panel.button.pin and panel.led.pin against the board`);
    }

    // A board unplugged while running: say so loudly; the agent shows the fault on what it still can.
    panel.lostListener = (err: unknown) =>
      log?.error({ event: 'panel.johnny-five.lost', where, err: err == null ? 'closed' : errText(err) }, 'I/O board connection lost: the panic button is not read');
    io.on('close', panel.lostListener);
    io.on('error', panel.lostListener);
    log?.info({ event: 'panel.johnny-five.open', where, button: config.button.pin, led: config.led?.pin ?? null }, 'Firmata panel open');
    return panel;
  }

  private addButton(five: Five, board: FiveBoard, input: ButtonInput, cfg: JohnnyFivePanelConfig['button'], debounceMs: number): void {
    // isPullup makes johnny-five invert the reading: pressed (pin to ground) is "down".
    const button = new five.Button({ pin: cfg.pin, isPullup: cfg.pullup, board });
    const debouncer = new EdgeDebouncer(input, debounceMs, (e: ButtonEvent) => this.listeners.emit(e));
    button.on('down', () => debouncer.edge(true, performance.now()));
    button.on('up', () => debouncer.edge(false, performance.now()));
    this.buttons.push({ button, debouncer });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    for (const { button, debouncer } of this.buttons) {
      debouncer.stop();
      button.removeAllListeners();
    }
    this.blinker?.stop();
    this.led?.stop();
    if (this.lostListener) {
      this.io.removeListener('close', this.lostListener);
      this.io.removeListener('error', this.lostListener);
    }
    await this.releaseIo();
  }

  private async releaseIo(): Promise<void> {
    const transport = this.io.transport;
    if (!this.ownsIo || !transport?.close || transport.isOpen === false) return;
    await new Promise<void>((resolve) => transport.close?.(() => resolve()));
  }
}
