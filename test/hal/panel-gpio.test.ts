import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PanelConfigSchema, type OnoffPanelConfig } from '../../hal/panel/config.ts';
import { resolveGpioNumber } from '../../hal/panel/gpio-number.ts';
import { type GpioClass, type GpioLike, OnoffPanel } from '../../hal/panel/onoff.ts';
import type { ButtonEvent } from '../../hal/panel/types.ts';
import { closeAfterTest } from '../helpers/close-after-test.ts';

// A Raspberry Pi 6.6 kernel's /sys/class/gpio, as far as the chip folders go.
const root = mkdtempSync(join(tmpdir(), 'sysfs-gpio-'));
function chip(name: string, label: string, base: number, ngpio: number): void {
  mkdirSync(join(root, name));
  writeFileSync(join(root, name, 'label'), `${label}\n`);
  writeFileSync(join(root, name, 'base'), `${base}\n`);
  writeFileSync(join(root, name, 'ngpio'), `${ngpio}\n`);
}
beforeAll(() => {
  chip('gpiochip512', 'pinctrl-bcm2835', 512, 58);
  chip('gpiochip570', 'raspberrypi-exp-gpio', 570, 8);
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('GPIO numbering', () => {
  const opts = { sysfsRoot: root, key: 'panel.button' };

  it('turns a chip label and offset into base + offset', () => {
    expect(resolveGpioNumber({ chip: 'pinctrl-bcm2835', offset: 17, activeLow: true }, opts)).toBe(529);
    expect(resolveGpioNumber({ chip: 'raspberrypi-exp-gpio', offset: 2, activeLow: true }, opts)).toBe(572);
  });

  it('accepts an absolute number a chip covers', () => {
    expect(resolveGpioNumber({ gpio: 529, activeLow: true }, opts)).toBe(529);
  });

  it('explains a pre-6.6 number and offers both correct forms', () => {
    expect(() => resolveGpioNumber({ gpio: 17, activeLow: true }, opts)).toThrow(
      /panel\.button\.gpio 17 is an absolute sysfs GPIO number.*pinctrl-bcm2835 base 512.*give panel\.button\.gpio 529 \(base 512 \+ 17\) or panel\.button\.chip "pinctrl-bcm2835" with panel\.button\.offset 17/,
    );
  });

  it('names the chips found when the label is wrong, and the range when the offset is', () => {
    expect(() => resolveGpioNumber({ chip: 'gpio-mockup', offset: 1, activeLow: true }, opts)).toThrow(/"gpio-mockup" not found.*pinctrl-bcm2835 base 512 ngpio 58/);
    expect(() => resolveGpioNumber({ chip: 'pinctrl-bcm2835', offset: 60, activeLow: true }, opts)).toThrow(/offsets 0 to 57, sysfs 512 to 569/);
  });

  it('says when there is no GPIO sysfs at all', () => {
    expect(() => resolveGpioNumber({ chip: 'pinctrl-bcm2835', offset: 17, activeLow: true }, { ...opts, sysfsRoot: join(root, 'none') })).toThrow(
      /cannot list GPIO chips.*CONFIG_GPIO_SYSFS/,
    );
  });

  it('config refuses both forms at once, or half of one, naming the key', () => {
    const bad = PanelConfigSchema.safeParse({ driver: 'onoff', button: { gpio: 529, chip: 'x' } });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['button', 'chip']);
    const half = PanelConfigSchema.safeParse({ driver: 'onoff', button: { chip: 'pinctrl-bcm2835' } });
    expect(half.error?.issues.map((i) => i.path.join('.'))).toEqual(['button.offset']);
  });
});

// onoff needs /sys/class/gpio with real lines, which this machine does not
// have: the driver's own logic (numbering, active-low, debouncing, LED
// pattern, release) is exercised against a stand-in for onoff's Gpio class.
interface FakeLine {
  number: number;
  direction: string;
  edge: string | undefined;
  activeLow: boolean | undefined;
  value: 0 | 1;
  writes: (0 | 1)[];
  watcher?: (err: Error | null | undefined, value: 0 | 1) => void;
  unexported: boolean;
}

function fakeOnoff(failOn?: { number: number; code: string }) {
  const lines: FakeLine[] = [];
  class FakeGpio implements GpioLike {
    static accessible = true;
    private readonly line: FakeLine;
    constructor(number: number, direction: string, edge?: string, options?: { activeLow?: boolean }) {
      if (failOn?.number === number) throw Object.assign(new Error(`${failOn.code}: export`), { code: failOn.code });
      this.line = { number, direction, edge, activeLow: options?.activeLow, value: 0, writes: [], unexported: false };
      lines.push(this.line);
    }
    readSync(): 0 | 1 {
      return this.line.value;
    }
    writeSync(v: 0 | 1): void {
      this.line.writes.push(v);
    }
    watch(cb: FakeLine['watcher']): void {
      this.line.watcher = cb;
    }
    unwatchAll(): void {
      this.line.watcher = undefined;
    }
    unexport(): void {
      this.line.unexported = true;
    }
  }
  return { Gpio: FakeGpio as unknown as GpioClass, lines };
}

function onoffConfig(extra: Record<string, unknown> = {}): OnoffPanelConfig {
  return PanelConfigSchema.parse({
    driver: 'onoff',
    button: { chip: 'pinctrl-bcm2835', offset: 17 },
    led: { gpio: 539 },
    sysfsRoot: root,
    debounceMs: 15,
    ...extra,
  }) as OnoffPanelConfig;
}

describe('onoff panel', () => {

  it('exports the resolved lines with active-low in the kernel and reports debounced edges', async () => {
    const fake = fakeOnoff();
    const panel = closeAfterTest(await OnoffPanel.open(onoffConfig(), undefined, { Gpio: fake.Gpio }));
    const [button, led] = fake.lines;
    expect(button).toMatchObject({ number: 529, direction: 'in', edge: 'both', activeLow: true });
    expect(led).toMatchObject({ number: 539, direction: 'low', activeLow: false });
    const events: ButtonEvent[] = [];
    panel.onButton((e) => events.push(e));
    // Contact bounce: down/up/down within the settle time is one press.
    button?.watcher?.(null, 1);
    button?.watcher?.(null, 0);
    button?.watcher?.(null, 1);
    await new Promise((r) => setTimeout(r, 40));
    button?.watcher?.(null, 0);
    await new Promise((r) => setTimeout(r, 40));
    expect(events.map((e) => e.pressed)).toEqual([true, false]);
    // A watch error is logged, not thrown into the driver.
    expect(() => button?.watcher?.(new Error('EIO'), 0)).not.toThrow();
  });

  it('blinks the LED and releases every line on close', async () => {
    const fake = fakeOnoff();
    const panel = closeAfterTest(await OnoffPanel.open(onoffConfig(), undefined, { Gpio: fake.Gpio }));
    panel.setLed('acknowledged');
    expect(panel.ledState()).toBe('acknowledged');
    expect(fake.lines[1]?.writes.at(-1)).toBe(1);
    panel.setLed('stored');
    expect(fake.lines[1]?.writes.at(-1)).toBe(1); // first blink of the pattern starts at once
    await panel.close();
    expect(fake.lines.every((l) => l.unexported)).toBe(true);
    expect(fake.lines[1]?.writes.at(-1)).toBe(0);
  });

  it('a button reading pressed at start does not count until released', async () => {
    const fake = fakeOnoff();
    const Stuck = class extends (fake.Gpio as unknown as new (...a: unknown[]) => GpioLike) {
      override readSync(): 0 | 1 {
        return 1;
      }
    };
    Object.assign(Stuck, { accessible: true });
    const panel = closeAfterTest(await OnoffPanel.open(onoffConfig({ debounceMs: 0 }), undefined, { Gpio: Stuck as unknown as GpioClass }));
    const events: ButtonEvent[] = [];
    panel.onButton((e) => events.push(e));
    fake.lines[0]?.watcher?.(null, 1);
    expect(events).toEqual([]);
    fake.lines[0]?.watcher?.(null, 0);
    expect(events.map((e) => e.pressed)).toEqual([false]);
  });

  it('says which key, number and form failed to export, and releases what it had', async () => {
    const fake = fakeOnoff({ number: 539, code: 'EBUSY' });
    await expect(OnoffPanel.open(onoffConfig(), undefined, { Gpio: fake.Gpio })).rejects.toThrow(
      'panel.led: cannot export gpio 539 (absolute number) via /sys/class/gpio (EBUSY): the line is in use by another driver or process',
    );
    expect(fake.lines[0]?.unexported).toBe(true);
    const einval = fakeOnoff({ number: 529, code: 'EINVAL' });
    await expect(OnoffPanel.open(onoffConfig(), undefined, { Gpio: einval.Gpio })).rejects.toThrow(
      /panel\.button: cannot export gpio 529 \(chip "pinctrl-bcm2835" offset 17\).*EINVAL.*chip base/,
    );
  });

  it('on this machine, the real onoff says there is no GPIO and what to use instead', async () => {
    const { Gpio } = (await import('onoff')) as unknown as { Gpio: GpioClass };
    if (Gpio.accessible) return; // a machine with real GPIO: nothing to refuse
    await expect(OnoffPanel.open(onoffConfig())).rejects.toThrow(/no usable GPIO sysfs interface.*use panel\.driver "sim" or "johnny-five"/);
  });
});
