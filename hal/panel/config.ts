// The `panel` section of the agent config: which driver runs the panic
// button and LED, and how it reaches the hardware. One strict object per
// driver, so a key meant for another driver (or a typo) is refused with its
// path instead of being silently ignored on a bus.

import { z } from 'zod';

const nonNegativeInt = z.number().int().min(0);

/**
 * One GPIO line, in either of the forms a technician can read off a board.
 * Kernels from 6.6 on number sysfs GPIOs from the chip's base (512 on a
 * Raspberry Pi), so "GPIO17" on the header is sysfs 529 there and 17 on older
 * kernels: naming the chip label and the offset on it survives kernel updates,
 * an absolute number is for boards whose numbering is known.
 */
export type GpioLine = { gpio: number; activeLow: boolean } | { chip: string; offset: number; activeLow: boolean };

function gpioLineSchema(activeLowDefault: boolean) {
  // One object with both forms' keys, then checked, rather than z.union: a
  // union of two strict objects reports a mistake as "does not match any
  // accepted form" on the whole line, where this names the key to fix.
  return z
    .object({
      /** Absolute sysfs GPIO number (what /sys/class/gpio/export takes). */
      gpio: nonNegativeInt.optional(),
      /** gpiochip label, e.g. "pinctrl-bcm2835" (the `label` file in each gpiochip folder of /sys/class/gpio). */
      chip: z.string().min(1).optional(),
      /** Line number on that chip (the header's BCM number on a Raspberry Pi). */
      offset: nonNegativeInt.optional(),
      /** True when the line reads 0 while active (a button to ground with a pull-up). */
      activeLow: z.boolean().default(activeLowDefault),
    })
    .strict()
    .superRefine((line, ctx) => {
      if (line.gpio !== undefined) {
        for (const key of ['chip', 'offset'] as const) {
          if (line[key] !== undefined) {
            ctx.addIssue({
              code: 'custom',
              path: [key],
              message: `give either "gpio" (an absolute sysfs number) or "chip" with "offset", not both (gpio is ${line.gpio})`,
            });
          }
        }
        return;
      }
      if (line.chip === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['chip'],
          message: 'missing: give "chip" (the gpiochip label, e.g. "pinctrl-bcm2835") with "offset", or an absolute "gpio" number',
        });
      }
      if (line.offset === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['offset'],
          message: 'missing: give "offset" (the line number on the chip, e.g. 17 for header GPIO17 on a Raspberry Pi) with "chip", or an absolute "gpio" number',
        });
      }
    })
    .transform((line): GpioLine => {
      if (line.gpio !== undefined) return { gpio: line.gpio, activeLow: line.activeLow };
      // superRefine has refused anything else, so both are present here.
      return { chip: line.chip ?? '', offset: line.offset ?? 0, activeLow: line.activeLow };
    });
}

/** Buttons are wired to ground with a pull-up, hence active-low by default; LEDs are driven active-high. */
const buttonLine = gpioLineSchema(true);
const ledLine = gpioLineSchema(false);

// sun_path in struct sockaddr_un is 108 bytes including the terminating NUL.
const UNIX_SOCKET_PATH_MAX = 107;

const debounceMs = z.number().int().min(0).max(1_000).default(20);

const firmataPin = z.union([nonNegativeInt, z.string().min(1)], {
  error: 'expected a pin number (e.g. 2) or a pin name (e.g. "A0")',
});

const firmataButton = z
  .object({
    pin: firmataPin,
    /** Enable the board's internal pull-up; the button then pulls the pin to ground when pressed. */
    pullup: z.boolean().default(true),
  })
  .strict();

export const SimPanelConfigSchema = z
  .object({
    driver: z.literal('sim'),
    /** Path of the Unix control socket that `busguard sim press/led` talks to. */
    socket: z
      .string()
      .min(1)
      .refine((p) => Buffer.byteLength(p) <= UNIX_SOCKET_PATH_MAX, {
        message: `Unix socket paths are limited to ${UNIX_SOCKET_PATH_MAX} bytes; choose a shorter path`,
      }),
  })
  .strict();

export const OnoffPanelConfigSchema = z
  .object({
    driver: z.literal('onoff'),
    button: buttonLine,
    /** Optional second input for non-emergency incidents (alarm.incidentPattern "second-input"). */
    incidentButton: buttonLine.optional(),
    led: ledLine.optional(),
    /**
     * Where the gpiochip* folders are read to turn chip + offset into a number.
     * onoff itself always uses /sys/class/gpio; this only moves the lookup
     * (tests point it at a fake tree).
     */
    sysfsRoot: z.string().min(1).default('/sys/class/gpio'),
    debounceMs,
  })
  .strict();

export const JohnnyFivePanelConfigSchema = z
  .object({
    driver: z.literal('johnny-five'),
    /** Serial port of a board running StandardFirmata, e.g. /dev/ttyACM0. */
    port: z.string().min(1),
    baudRate: z.number().int().positive().default(57_600),
    button: firmataButton,
    incidentButton: firmataButton.optional(),
    led: z.object({ pin: firmataPin }).strict().optional(),
    debounceMs,
  })
  .strict();

export const PanelConfigSchema = z.discriminatedUnion('driver', [
  SimPanelConfigSchema,
  OnoffPanelConfigSchema,
  JohnnyFivePanelConfigSchema,
]);

export type PanelConfig = z.output<typeof PanelConfigSchema>;
export type SimPanelConfig = z.output<typeof SimPanelConfigSchema>;
export type OnoffPanelConfig = z.output<typeof OnoffPanelConfigSchema>;
export type JohnnyFivePanelConfig = z.output<typeof JohnnyFivePanelConfigSchema>;
export type PanelDriverName = PanelConfig['driver'];
