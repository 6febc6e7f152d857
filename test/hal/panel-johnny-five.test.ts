import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { PanelConfigSchema, type JohnnyFivePanelConfig } from '../../hal/panel/config.ts';
import { type FirmataIo, JohnnyFivePanel } from '../../hal/panel/johnny-five.ts';
import type { ButtonEvent } from '../../hal/panel/types.ts';
import { closeAfterTest } from '../helpers/close-after-test.ts';

const require = createRequire(import.meta.url);
const { Firmata: MockFirmata } = require('mock-firmata') as { Firmata: new () => FirmataIo & Record<string, unknown> };

// As johnny-five's own tests do: a mock-firmata board, with digitalRead and
// digitalWrite captured so the test can play the pins.
function mockBoard() {
  const io = new MockFirmata();
  const readers = new Map<number, (value: number) => void>();
  const writes: [number, number][] = [];
  const modes: [number, number][] = [];
  io.digitalRead = (pin: number, cb: (v: number) => void) => readers.set(pin, cb);
  io.digitalWrite = (pin: number, v: number) => writes.push([pin, v]);
  io.pinMode = (pin: number, mode: number) => modes.push([pin, mode]);
  return { io, readers, writes, modes };
}

function config(extra: Record<string, unknown> = {}): JohnnyFivePanelConfig {
  return PanelConfigSchema.parse({ driver: 'johnny-five', port: '/dev/ttyACM0', button: { pin: 2 }, led: { pin: 13 }, debounceMs: 0, ...extra }) as JohnnyFivePanelConfig;
}

/** The panel on `board`, up, closed after the test. */
async function open(board: ReturnType<typeof mockBoard>, extra: Record<string, unknown> = {}): Promise<JohnnyFivePanel> {
  const opening = JohnnyFivePanel.open(config(extra), undefined, { io: board.io, readyTimeoutMs: 2000 });
  board.io.emit('connect');
  board.io.emit('ready');
  return closeAfterTest(await opening);
}

const settle = () => new Promise((r) => setTimeout(r, 30)); // johnny-five debounces button edges by 7 ms

describe('johnny-five panel (mock-firmata)', () => {
  it('reads a pulled-up button: pin low is pressed, high is released', async () => {
    const board = mockBoard();
    const panel = await open(board);
    // The pull-up was enabled on the button pin (INPUT then HIGH).
    expect(board.writes).toContainEqual([2, 1]);
    const events: ButtonEvent[] = [];
    panel.onButton((e) => events.push(e));
    const pin2 = board.readers.get(2);
    expect(pin2).toBeDefined();
    pin2?.(0);
    await settle();
    pin2?.(1);
    await settle();
    expect(events.map((e) => [e.input, e.pressed])).toEqual([
      ['panic', true],
      ['panic', false],
    ]);
  });

  it('reads the second input as the incident button', async () => {
    const board = mockBoard();
    const panel = await open(board, { incidentButton: { pin: 3 } });
    const events: ButtonEvent[] = [];
    panel.onButton((e) => events.push(e));
    board.readers.get(3)?.(0);
    await settle();
    expect(events).toMatchObject([{ input: 'incident', pressed: true }]);
  });

  it('drives the LED pin with the state pattern', async () => {
    const board = mockBoard();
    const panel = await open(board);
    board.writes.length = 0;
    panel.setLed('acknowledged');
    expect(panel.ledState()).toBe('acknowledged');
    expect(board.writes.filter(([pin]) => pin === 13).at(-1)).toEqual([13, 1]);
    panel.setLed('idle');
    expect(board.writes.filter(([pin]) => pin === 13).at(-1)).toEqual([13, 0]);
  });

  it('a board that never answers is refused with the port and what to check', async () => {
    const board = mockBoard();
    await expect(JohnnyFivePanel.open(config(), undefined, { io: board.io, readyTimeoutMs: 200 })).rejects.toThrow(
      /did not come up \(no Firmata answer within 200 ms\); check panel\.port, panel\.baudRate/,
    );
  });

  it('a missing serial port is refused with its path', async () => {
    await expect(JohnnyFivePanel.open(config({ port: '/dev/ttyBUSGUARD-none' }), undefined, { readyTimeoutMs: 3000 })).rejects.toThrow(
      /\/dev\/ttyBUSGUARD-none at 57600 baud did not come up/,
    );
  });
});
