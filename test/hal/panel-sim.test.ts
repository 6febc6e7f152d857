import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { openPanel } from '../../hal/panel/drivers.ts';
import { SimPanel, parseSimRequest } from '../../hal/panel/sim.ts';
import { simDouble, simLed, simPress, simRequest } from '../../hal/panel/sim-client.ts';
import type { ButtonEvent, Panel } from '../../hal/panel/types.ts';

const dir = mkdtempSync(join(tmpdir(), 'panel-sim-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let panel: Panel | undefined;
afterEach(async () => {
  await panel?.close();
  panel = undefined;
});

function rawRequest(socket: string, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = connect(socket);
    let got = '';
    c.setEncoding('utf8');
    c.on('connect', () => c.write(line));
    c.on('data', (d: string) => {
      got += d;
      if (got.includes('\n')) {
        c.destroy();
        resolve(got.trim());
      }
    });
    c.on('error', reject);
  });
}

describe('sim panel over its control socket', () => {
  it('reports a press as down and up edges a hold apart, from another connection', async () => {
    const socket = join(dir, 'a.sock');
    panel = await openPanel({ driver: 'sim', socket });
    const events: ButtonEvent[] = [];
    panel.onButton((e) => events.push(e));
    await simPress(socket, { holdMs: 300 });
    expect(events.map((e) => [e.input, e.pressed])).toEqual([
      ['panic', true],
      ['panic', false],
    ]);
    const held = (events[1]?.atMs ?? 0) - (events[0]?.atMs ?? 0);
    expect(held).toBeGreaterThanOrEqual(300);
  });

  it('plays a double press and a press of the second input', async () => {
    const socket = join(dir, 'b.sock');
    panel = await openPanel({ driver: 'sim', socket });
    const events: ButtonEvent[] = [];
    panel.onButton((e) => events.push(e));
    await simDouble(socket, { pressMs: 50, gapMs: 80 });
    await simPress(socket, { holdMs: 20, input: 'incident' });
    expect(events.map((e) => `${e.input}:${e.pressed ? 'down' : 'up'}`)).toEqual([
      'panic:down',
      'panic:up',
      'panic:down',
      'panic:up',
      'incident:down',
      'incident:up',
    ]);
  });

  it('reads back the LED state the agent set', async () => {
    const socket = join(dir, 'c.sock');
    panel = await openPanel({ driver: 'sim', socket });
    expect(await simLed(socket)).toBe('idle');
    panel.setLed('delivered');
    expect(await simLed(socket)).toBe('delivered');
  });

  it('refuses bad requests with a reason and keeps serving', async () => {
    const socket = join(dir, 'd.sock');
    panel = await openPanel({ driver: 'sim', socket });
    expect(JSON.parse(await rawRequest(socket, 'hello\n'))).toMatchObject({ ok: false, error: expect.stringContaining('not JSON') });
    expect(JSON.parse(await rawRequest(socket, '{"cmd":"jump"}\n'))).toMatchObject({ ok: false, error: expect.stringContaining('unknown cmd "jump"') });
    expect(JSON.parse(await rawRequest(socket, '{"cmd":"press","holdMs":-3}\n'))).toMatchObject({
      ok: false,
      error: expect.stringContaining('holdMs'),
    });
    expect(JSON.parse(await rawRequest(socket, `${'x'.repeat(5000)}`))).toMatchObject({ ok: false, error: expect.stringContaining('longer than') });
    await expect(simRequest(socket, { cmd: 'press', holdMs: 10, input: 'elbow' as 'panic' }, 2000)).rejects.toThrow(/input/);
    expect(await simLed(socket)).toBe('idle');
  });

  it('parses requests with defaults', () => {
    expect(parseSimRequest('{"cmd":"double"}')).toEqual({ ok: true, request: { cmd: 'double', pressMs: 120, gapMs: 150 } });
    expect(parseSimRequest('[1]')).toMatchObject({ ok: false });
  });

  it('replaces a stale socket file, refuses a live one and a non-socket', async () => {
    const socket = join(dir, 'e.sock');
    const first = await SimPanel.open({ driver: 'sim', socket });
    await expect(SimPanel.open({ driver: 'sim', socket })).rejects.toThrow(/already listening/);
    await first.close();
    // A file that is not a socket is never removed.
    const plain = join(dir, 'plain');
    writeFileSync(plain, 'keep me');
    await expect(SimPanel.open({ driver: 'sim', socket: plain })).rejects.toThrow(/not a socket/);
    panel = await SimPanel.open({ driver: 'sim', socket });
    expect(await simLed(socket)).toBe('idle');
  });

  it('tells the client how to fix a missing agent', async () => {
    await expect(simLed(join(dir, 'nobody.sock'))).rejects.toThrow(/nobody listening \(ENOENT\); start "busguard agent"/);
  });
});
