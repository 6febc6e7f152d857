// Panic button, optional incident button and status LED on Linux sysfs GPIO
// lines, through onoff. The configured line (chip label + offset, or an
// absolute number) is turned into the sysfs number first (gpio-number.ts), so
// every error says which key, which form and which number was tried.

import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { EdgeDebouncer } from './button-edges.ts';
import type { GpioLine, OnoffPanelConfig } from './config.ts';
import { resolveGpioNumber } from './gpio-number.ts';
import { LedBlinker } from './led-patterns.ts';
import type { ButtonEvent, ButtonInput, Panel } from './types.ts';
import { WiredPanel } from './wired-panel.ts';

type Bit = 0 | 1;

/** The part of onoff's Gpio class this driver uses. */
export interface GpioLike {
  readSync(): Bit;
  writeSync(value: Bit): void;
  watch(callback: (err: Error | null | undefined, value: Bit) => void): void;
  unwatchAll(): void;
  unexport(): void;
}

export interface GpioClass {
  new (
    gpio: number,
    direction: 'in' | 'out' | 'high' | 'low',
    edge?: 'none' | 'rising' | 'falling' | 'both',
    options?: { activeLow?: boolean; debounceTimeout?: number },
  ): GpioLike;
  readonly accessible: boolean;
}

export interface OnoffDeps {
  /** onoff's Gpio; replaced only by tests, which have no GPIO hardware. */
  Gpio?: GpioClass;
}

/** "gpio 529 (chip "pinctrl-bcm2835" offset 17)" or "gpio 529 (absolute)". */
function describeLine(line: GpioLine, number: number): string {
  return 'gpio' in line ? `gpio ${number} (absolute number)` : `gpio ${number} (chip "${line.chip}" offset ${line.offset})`;
}

async function loadOnoff(): Promise<GpioClass> {
  try {
    const mod = (await import('onoff')) as unknown as { Gpio?: GpioClass; default?: { Gpio?: GpioClass } };
    const Gpio = mod.Gpio ?? mod.default?.Gpio;
    if (!Gpio) throw new Error('the module has no Gpio export');
    return Gpio;
  } catch (err) {
    throw new Error(`panel.driver "onoff": cannot load the onoff module (${(err as Error).message}); run "npm ci" on the head unit`);
  }
}

export class OnoffPanel extends WiredPanel implements Panel {
  readonly driver = 'onoff';
  private readonly inputs: { key: string; gpio: GpioLike; debouncer: EdgeDebouncer }[] = [];
  private ledGpio: GpioLike | null = null;

  private constructor(private readonly log?: Logger) {
    super('onoff', log);
  }

  static async open(config: OnoffPanelConfig, log?: Logger, deps: OnoffDeps = {}): Promise<OnoffPanel> {
    const Gpio = deps.Gpio ?? (await loadOnoff());
    if (!Gpio.accessible) {
      throw new Error(
        `panel.driver "onoff": this machine has no usable GPIO sysfs interface (/sys/class/gpio missing or not writable by this user); on a head unit check CONFIG_GPIO_SYSFS and the gpio group, elsewhere use panel.driver "sim" or "johnny-five"`,
      );
    }
    const panel = new OnoffPanel(log);
    try {
      panel.addInput('panel.button', 'panic', config.button, config, Gpio);
      if (config.incidentButton) panel.addInput('panel.incidentButton', 'incident', config.incidentButton, config, Gpio);
      if (config.led) {
        const number = resolveGpioNumber(config.led, { sysfsRoot: config.sysfsRoot, key: 'panel.led' });
        const gpio = panel.export('panel.led', config.led, number, () => new Gpio(number, 'low', 'none', { activeLow: config.led?.activeLow ?? false }));
        panel.ledGpio = gpio;
        panel.blinker = new LedBlinker((on) => gpio.writeSync(on ? 1 : 0), log);
      }
    } catch (err) {
      await panel.close();
      throw err;
    }
    log?.info({ event: 'panel.onoff.open', inputs: panel.inputs.map((i) => i.key), led: Boolean(panel.ledGpio) }, 'GPIO panel open');
    return panel;
  }

  private addInput(key: string, input: ButtonInput, line: GpioLine, config: OnoffPanelConfig, Gpio: GpioClass): void {
    const number = resolveGpioNumber(line, { sysfsRoot: config.sysfsRoot, key });
    // onoff applies active_low in the kernel, so 1 always means pressed here.
    const gpio = this.export(key, line, number, () => new Gpio(number, 'in', 'both', { activeLow: line.activeLow }));
    let initial: Bit;
    try {
      initial = gpio.readSync();
    } catch (err) {
      throw new Error(`${key}: cannot read ${describeLine(line, number)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
    if (initial === 1) {
      // A button stuck down at boot (or activeLow set the wrong way) must not raise an alarm by itself.
      this.log?.warn({ event: 'panel.onoff.pressed-at-start', key, gpio: number, activeLow: line.activeLow }, `${key} reads pressed at start: waiting for a release before a press counts; check ${key}.activeLow if this persists`);
    }
    const debouncer = new EdgeDebouncer(input, config.debounceMs, (e: ButtonEvent) => this.listeners.emit(e), initial === 1);
    gpio.watch((err, value) => {
      if (err) {
        this.log?.error({ event: 'panel.onoff.watch-error', key, gpio: number, err: err.message }, 'GPIO watch error');
        return;
      }
      debouncer.edge(value === 1, performance.now());
    });
    this.inputs.push({ key, gpio, debouncer });
  }

  private export(key: string, line: GpioLine, number: number, make: () => GpioLike): GpioLike {
    try {
      return make();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      const why =
        code === 'EINVAL'
          ? 'the kernel has no such line; on kernels 6.6 and later sysfs numbers start at the chip base (e.g. 512 on a Raspberry Pi): give the chip label and offset instead'
          : code === 'EBUSY'
            ? 'the line is in use by another driver or process'
            : code === 'EACCES' || code === 'EPERM'
              ? 'permission denied: run the agent as a user in the gpio group'
              : 'export failed';
      throw new Error(`${key}: cannot export ${describeLine(line, number)} via /sys/class/gpio (${code}): ${why}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listeners.clear();
    for (const { key, gpio, debouncer } of this.inputs) {
      debouncer.stop();
      this.release(key, gpio);
    }
    this.blinker?.stop();
    if (this.ledGpio) {
      this.release('panel.led', this.ledGpio);
    }
  }

  private release(key: string, gpio: GpioLike): void {
    try {
      gpio.unwatchAll();
      gpio.unexport();
    } catch (err) {
      this.log?.warn({ event: 'panel.onoff.unexport-failed', key, err: (err as Error).message }, 'could not release a GPIO line');
    }
  }
}
