// Turning a configured GPIO line into the absolute number the sysfs
// interface (/sys/class/gpio/export) takes. Since Linux 6.6 the kernel hands
// out sysfs numbers dynamically from 512 upwards, so on a Raspberry Pi the
// header's GPIO17 became 529 and every "gpio: 17" in the field stopped
// working. Naming the chip by its label and the line by its offset keeps a
// config valid across kernels; an absolute number is checked against the
// chips present so the error says what went wrong instead of EINVAL.

import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GpioLine } from './config.ts';

export interface GpioChip {
  /** Folder name, e.g. "gpiochip512". */
  name: string;
  /** Contents of `label`, e.g. "pinctrl-bcm2835". */
  label: string;
  /** First sysfs number of the chip. */
  base: number;
  /** Number of lines; offsets run from 0 to ngpio - 1. */
  ngpio: number;
}

export interface ResolveGpioOptions {
  /** Folder holding the gpiochip* entries, normally /sys/class/gpio. */
  sysfsRoot: string;
  /** Config key of the line, used in errors, e.g. "panel.button". */
  key: string;
}

/**
 * The GPIO chips the kernel exposes under sysfsRoot, lowest base first.
 * Throws when the folder cannot be read; folders whose files cannot be read
 * or parsed are left out (a chip being unbound while we look is not our error).
 */
export function listGpioChips(sysfsRoot: string): GpioChip[] {
  let names: string[];
  try {
    names = readdirSync(sysfsRoot);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new Error(
      `cannot list GPIO chips under ${sysfsRoot} (${code}); this needs a Linux board with the GPIO sysfs interface (CONFIG_GPIO_SYSFS)`,
    );
  }
  const chips: GpioChip[] = [];
  for (const name of names) {
    if (!/^gpiochip\d+$/.test(name)) continue;
    try {
      const label = readFileSync(join(sysfsRoot, name, 'label'), 'utf8').trim();
      const base = Number.parseInt(readFileSync(join(sysfsRoot, name, 'base'), 'utf8').trim(), 10);
      const ngpio = Number.parseInt(readFileSync(join(sysfsRoot, name, 'ngpio'), 'utf8').trim(), 10);
      if (Number.isInteger(base) && Number.isInteger(ngpio)) chips.push({ name, label, base, ngpio });
    } catch {
      continue;
    }
  }
  return chips.sort((a, b) => a.base - b.base);
}

/** "pinctrl-bcm2835 base 512 ngpio 58, raspberrypi-exp-gpio base 570 ngpio 8" */
export function describeGpioChips(chips: readonly GpioChip[]): string {
  return chips.length ? chips.map((c) => `${c.label} base ${c.base} ngpio ${c.ngpio}`).join(', ') : 'none';
}

/** The absolute sysfs GPIO number for a configured line; throws an error naming the key and what to change. */
export function resolveGpioNumber(line: GpioLine, opts: ResolveGpioOptions): number {
  return 'gpio' in line ? checkAbsolute(line.gpio, opts) : fromChipOffset(line.chip, line.offset, opts);
}

function fromChipOffset(label: string, offset: number, { sysfsRoot, key }: ResolveGpioOptions): number {
  let chips: GpioChip[];
  try {
    chips = listGpioChips(sysfsRoot);
  } catch (err) {
    throw new Error(`${key}.chip "${label}" offset ${offset}: ${(err as Error).message}`);
  }
  const matching = chips.filter((c) => c.label === label);
  const found = `chips found: ${describeGpioChips(chips)}`;
  const [chip, ...others] = matching;
  if (!chip) {
    throw new Error(
      `GPIO chip "${label}" not found under ${sysfsRoot} (${found}); give ${key}.chip as one of those labels or an absolute ${key}.gpio number`,
    );
  }
  if (others.length) {
    throw new Error(
      `GPIO chip label "${label}" is used by ${matching.length} chips under ${sysfsRoot} (${matching.map((c) => `${c.name} base ${c.base}`).join(', ')}); the label does not say which one: give an absolute ${key}.gpio number instead`,
    );
  }
  if (offset >= chip.ngpio) {
    throw new Error(
      `${key}.offset ${offset} is beyond GPIO chip "${label}", which has ${chip.ngpio} lines (offsets 0 to ${chip.ngpio - 1}, sysfs ${chip.base} to ${chip.base + chip.ngpio - 1}); check the line number on the board's pinout`,
    );
  }
  return chip.base + offset;
}

function checkAbsolute(gpio: number, { sysfsRoot, key }: ResolveGpioOptions): number {
  let chips: GpioChip[];
  try {
    chips = listGpioChips(sysfsRoot);
  } catch {
    // Nothing to check against: the export itself will say whether the number exists.
    return gpio;
  }
  if (chips.length === 0 || chips.some((c) => gpio >= c.base && gpio < c.base + c.ngpio)) return gpio;

  // The usual cause: a number from a pinout (an offset) written where sysfs wants base + offset.
  const asOffset = chips.find((c) => gpio < c.ngpio);
  const hint = asOffset
    ? `if ${gpio} is the pin's number on ${asOffset.label}, give ${key}.gpio ${asOffset.base + gpio} (base ${asOffset.base} + ${gpio}) or ${key}.chip "${asOffset.label}" with ${key}.offset ${gpio}`
    : `give ${key}.chip as one of those labels with ${key}.offset`;
  throw new Error(
    `${key}.gpio ${gpio} is an absolute sysfs GPIO number, and no GPIO chip under ${sysfsRoot} covers it (chips found: ${describeGpioChips(chips)}); on kernels 6.6 and later sysfs numbers start at the chip's base, so the Raspberry Pi header's GPIO17 is 529 (base 512 + 17); ${hint}`,
  );
}
