// The VC0706 driver against the simulated camera through a real serial line (a
// socat pseudo-terminal pair): the bytes, the pictures, the image size and
// baud rate commands, and what happens when the camera goes quiet, babbles,
// cuts its JPEG short, stalls, or is unplugged. Every failure must come back
// as a CameraError of the right kind within a bounded time, and the next
// snapshot after the fault must work, with the frame buffer resumed.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { SerialPort } from 'serialport';
import { describe, expect, it } from 'vitest';
import { BOOT_TEXT, SimVc0706, type SimFault, type SimVc0706Options, jpegDimensions } from '../../hal/camera/sim.ts';
import { jpegEnd } from '../../hal/camera/jpeg.ts';
import type { CameraErrorKind } from '../../hal/camera/types.ts';
import { Vc0706Camera, type Vc0706Options } from '../../hal/camera/vc0706.ts';
import { FBUF_CTRL, IMAGE_SIZE_CODES, VC0706_CMD, encodeCommand, findReply } from '../../hal/camera/vc0706-codec.ts';
import { until } from '../../scripts/lib/until.ts';
import { cameraFailure } from '../helpers/camera-failure.ts';
import { closeAfterTest } from '../helpers/close-after-test.ts';
import type { PtyPair } from '../helpers/pty.ts';
import { type SerialLine, serialLineForTest } from '../helpers/serial-pair.ts';

const FIXTURES = new URL('../fixtures/camera/', import.meta.url);
const JPEG = {
  '160x120': readFileSync(new URL('testsrc-160x120.jpg', FIXTURES)),
  '320x240': readFileSync(new URL('testsrc-320x240.jpg', FIXTURES)),
  '640x480': readFileSync(new URL('testsrc-640x480.jpg', FIXTURES)),
};

const b = (...bytes: number[]) => Buffer.from(bytes);

/** The same picture with a comment segment naming it: frames that differ, to tell a fresh one from a stale one. */
function numbered(jpeg: Buffer, n: number): Buffer {
  const text = Buffer.from(`frame ${n}`);
  const com = Buffer.concat([b(0xff, 0xfe, 0x00, text.length + 2), text]);
  return Buffer.concat([jpeg.subarray(0, 2), com, jpeg.subarray(2)]);
}

describe('VC0706 reply parser', () => {
  const VERSION_REPLY = Buffer.concat([b(0x76, 0x00, 0x11, 0x00, 0x0b), Buffer.from('VC0703 1.00')]);

  it('finds a reply behind boot text and line noise', () => {
    const buf = Buffer.concat([Buffer.from('User-defined sensor\r\n525\r\nInit end\r\n'), b(0x00, 0xff, 0x76, 0x13), VERSION_REPLY, b(0x99)]);
    const r = findReply(buf, 0, 0x11);
    expect(r).not.toBeNull();
    expect(r).not.toBe('partial');
    if (r && r !== 'partial') {
      expect(r.data.toString()).toBe('VC0703 1.00');
      expect(r.status).toBe(0);
      expect(buf.subarray(r.end)).toEqual(b(0x99));
    }
  });

  it('waits for the rest of a reply that has begun', () => {
    expect(findReply(VERSION_REPLY.subarray(0, 2), 0, 0x11)).toBe('partial');
    expect(findReply(VERSION_REPLY.subarray(0, 9), 0, 0x11)).toBe('partial');
    expect(findReply(b(0x12, 0x34), 0, 0x11)).toBeNull();
  });

  it('skips replies to other commands and from cameras with another serial number', () => {
    const buf = Buffer.concat([b(0x76, 0x00, 0x36, 0x00, 0x00), b(0x76, 0x01, 0x34, 0x00, 0x04, 1, 2, 3, 4), b(0x76, 0x00, 0x34, 0x00, 0x04, 0, 0, 0x23, 0x63)]);
    const r = findReply(buf, 0, 0x34);
    expect(r !== null && r !== 'partial' && r.data.readUInt32BE(0)).toBe(0x2363);
    expect(findReply(buf, 0, 0x11)).toBeNull();
  });

  it('does not take a false start (impossible status or length) for a reply', () => {
    const buf = Buffer.concat([b(0x76, 0x00, 0x36, 0x09, 0x00), b(0x76, 0x00, 0x36, 0x00, 0x40), b(0x76, 0x00, 0x36, 0x04, 0x00)]);
    const r = findReply(buf, 0, 0x36);
    expect(r !== null && r !== 'partial' && [r.start, r.status]).toEqual([10, 4]);
  });

  it('knows a whole JPEG from a cut one, tolerating zero padding after FF D9', () => {
    const jpeg = JPEG['160x120'];
    expect(jpegEnd(jpeg)).toBe(jpeg.length);
    expect(jpegEnd(Buffer.concat([jpeg, Buffer.alloc(7)]))).toBe(jpeg.length);
    expect(jpegEnd(jpeg.subarray(0, 3000))).toBeNull();
    expect(jpegEnd(Buffer.concat([jpeg.subarray(0, 3000), Buffer.alloc(7)]))).toBeNull();
  });
});

/** A pty pair, the sim on its device end, the driver on the other, all closed after the test. Short timeouts: the line is a pty. */
async function rig(o: { sim?: Partial<SimVc0706Options>; cam?: Partial<Vc0706Options> } = {}): Promise<{ sim: SimVc0706; cam: Vc0706Camera; pty: PtyPair; line: SerialLine }> {
  const line = await serialLineForTest('cam-vc0706-');
  const { pty } = line;
  const sim = closeAfterTest(new SimVc0706({ path: pty.a, peer: pty.b, images: Object.values(JPEG), bootMs: 50, ...o.sim }));
  await sim.start();
  const cam = closeAfterTest(await Vc0706Camera.open({ path: pty.b, timeoutMs: 250, maxDrainMs: 200, ...o.cam }));
  return { sim, cam, pty, line };
}

describe('VC0706 camera on a serial line', () => {
  it('reads the version', async () => {
    const { cam, sim } = await rig();
    expect(await cam.version()).toBe('VC0703 1.00');
    expect(sim.commands.map((c) => [c.cmd, c.args.length])).toEqual([[0x11, 0]]);
  });

  it('takes a snapshot that equals the served JPEG byte for byte: freeze, length, read, resume', async () => {
    const { cam, sim } = await rig();
    const img = await cam.snapshot();
    expect(img.equals(JPEG['320x240'])).toBe(true);
    const names = sim.commands.map((c) => `${c.name}${c.cmd === VC0706_CMD.FBUF_CTRL ? `:${c.args[0]}` : ''}`);
    expect(names).toEqual(['FBUF_CTRL:0', 'GET_FBUF_LEN', 'READ_FBUF', 'READ_FBUF', 'READ_FBUF', 'FBUF_CTRL:3']);
    expect(sim.frozen).toBe(false);
    expect(cam.lastSnapshot).toMatchObject({ bytes: JPEG['320x240'].length, chunks: 3, retries: 0, baudRate: 38400 });
  });

  it.each([128, 1024, 4096, 65528])('reads the frame in chunks of %i bytes', async (chunkSize) => {
    const { cam, sim } = await rig({ sim: { imageSize: '640x480' } });
    const img = await cam.snapshot({ chunkSize });
    expect(img.equals(JPEG['640x480'])).toBe(true);
    expect(sim.count(VC0706_CMD.READ_FBUF)).toBe(Math.ceil(JPEG['640x480'].length / chunkSize));
  });

  it('refuses a chunk size that is not a multiple of 8', async () => {
    const { cam } = await rig();
    await expect(cam.snapshot({ chunkSize: 100 })).rejects.toThrow(RangeError);
  });

  // Was: written without a reset (or with one only on request), because the
  // sim applied a new size at once. The part applies it only at reset.
  it('sets the image size with the reset the part needs, and the next picture has that size', async () => {
    const { cam, sim } = await rig();
    expect(await cam.getImageSize()).toBe('320x240');
    expect(await cam.setImageSize('160x120')).toBe(true);
    expect(sim.imageSize).toBe('160x120');
    expect(await cam.getImageSize()).toBe('160x120');
    // Read, written, read back, reset; then a frame's header checked (freeze, length, read, resume).
    const names = sim.commands.map((c) => c.name);
    expect(names.slice(1, 5)).toEqual(['READ_DATA', 'WRITE_DATA', 'READ_DATA', 'RESET']);
    expect(names.slice(5, 7)).toEqual(['FBUF_CTRL', 'GET_FBUF_LEN']);
    const small = await cam.snapshot();
    expect(jpegDimensions(small)).toEqual({ width: 160, height: 120 });
    expect(small.equals(JPEG['160x120'])).toBe(true);

    // The same size again: the register is read, nothing written, no reset.
    expect(await cam.setImageSize('160x120')).toBe(false);
    expect([sim.count(VC0706_CMD.WRITE_DATA), sim.count(VC0706_CMD.RESET)]).toEqual([1, 1]);

    await cam.setImageSize('640x480');
    expect(sim.count(VC0706_CMD.RESET)).toBe(2);
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 640, height: 480 });
  });

  it('applies a new image size at the transfer rate it was at: the reset brings the camera back at 38400, the driver returns to 115200', async () => {
    const { cam, sim } = await rig({ cam: { transferBaudRate: 115200, timeoutMs: SLOW_OK } });
    await cam.setBaudRate(115200);
    await cam.setImageSize('640x480');
    expect(sim.count(VC0706_CMD.RESET)).toBe(1);
    expect([cam.baudRate, sim.baudRate]).toEqual([115200, 115200]);
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 640, height: 480 });
    expect(cam.lastSnapshot?.baudRate).toBe(115200);
  });

  it('changes the baud rate on both ends, and comes back to 38400 after a reset', async () => {
    const { cam, sim, pty } = await rig();
    await cam.setBaudRate(115200);
    expect([cam.baudRate, sim.baudRate]).toEqual([115200, 115200]);
    expect(execFileSync('stty', ['-F', pty.b, 'speed']).toString().trim()).toBe('115200');
    expect((await cam.snapshot()).equals(JPEG['320x240'])).toBe(true);

    await cam.reset(); // the camera reboots at its power-on rate and says "Init end" there
    expect([cam.baudRate, sim.baudRate]).toEqual([38400, 38400]);
    expect(await cam.version()).toBe('VC0703 1.00');
  });

  it('says which baud rate it tried when the camera talks at another', async () => {
    const { cam } = await rig({ sim: { baudRate: 115200 } });
    const { err, ms } = await cameraFailure(cam.version());
    expect(err.kind).toBe('timeout');
    expect(err.message).toMatch(/GEN_VERSION: no reply in 250 ms; .*talks at 38400 baud \[sent 56 00 11 00\]/);
    expect(ms).toBeLessThan(1000);
  });

  const faults: Array<[SimFault, CameraErrorKind]> = [
    ['silent', 'timeout'],
    ['garbage', 'garbled'],
    ['truncate', 'truncated'],
    ['slow', 'timeout'],
  ];
  it.each(faults)("fault '%s' gives a '%s' error in bounded time; the next snapshot works, the frame resumed", async (fault, kind) => {
    const frames = [0, 1, 2].map((n) => numbered(JPEG['320x240'], n));
    const { cam, sim, pty } = await rig({ sim: { slowBaud: 1200, images: frames } });
    sim.setFault(fault);
    const { err, ms } = await cameraFailure(cam.snapshot({ chunkSize: 1024, chunkRetries: 1, chunkTimeoutMs: 300 }));
    expect(err.kind).toBe(kind);
    expect(err.detail.path).toBe(pty.b);
    expect(err.message).toMatch(/check|try again|take another/);
    expect(ms).toBeLessThan(3000);

    sim.setFault(null);
    const img = await cam.snapshot();
    // The failed snapshot froze frame 0 (a camera without a working TX still
    // executes). Had that freeze not been resumed, this would be frame 0 again.
    expect(img.equals(frames[1] as Buffer)).toBe(true);
    expect(sim.frozen).toBe(false);
    const ctrl = sim.commands.filter((c) => c.cmd === VC0706_CMD.FBUF_CTRL).map((c) => c.args[0]);
    const freezes = ctrl.flatMap((a, i) => (a === FBUF_CTRL.STOP_CURRENT ? [i] : []));
    expect(freezes).toHaveLength(2);
    expect(ctrl.slice(freezes[0], freezes[1])).toContain(FBUF_CTRL.RESUME);
    expect(ctrl.at(-1)).toBe(FBUF_CTRL.RESUME);
  });

  it("gives an 'io' error, not a hang, when the camera is unplugged mid-snapshot, and works again once plugged back", async () => {
    const { cam, sim, pty, line } = await rig({ sim: { pace: true, imageSize: '640x480' } }); // ~4.7 s on the wire at 38400
    const pending = cameraFailure(cam.snapshot());
    await new Promise((r) => setTimeout(r, 300));
    await pty.stop();
    const { err, ms } = await pending;
    expect(err.kind).toBe('io');
    expect(err.message).toContain(pty.b);
    expect(ms).toBeLessThan(1500);

    const unplugged = await cameraFailure(cam.version()); // the port is gone: reopening fails at once
    expect(unplugged.err.kind).toBe('io');
    expect(unplugged.err.message).toMatch(/cannot open the port .*check that the camera is plugged in/);
    expect(unplugged.ms).toBeLessThan(500);

    await sim.stop();
    const replugged = await line.replug();
    const sim2 = closeAfterTest(new SimVc0706({ path: replugged.a, peer: replugged.b, images: Object.values(JPEG) }));
    await sim2.start();
    expect((await cam.snapshot()).equals(JPEG['320x240'])).toBe(true);
  });

  it('paces its output like a UART, so a snapshot at 115200 baud takes at least bytes × 10 / baud', async () => {
    const { cam } = await rig({ sim: { pace: true, baudRate: 115200, imageSize: '160x120' }, cam: { baudRate: 115200 } });
    const img = await cam.snapshot();
    expect(img.equals(JPEG['160x120'])).toBe(true);
    const s = cam.lastSnapshot;
    expect(s?.floorMs).toBeCloseTo((JPEG['160x120'].length * 10 * 1000) / 115200, 3);
    expect(s?.ms).toBeGreaterThanOrEqual(s?.floorMs ?? Infinity);
    expect(s?.ms).toBeLessThan((s?.floorMs ?? 0) * 3 + 500);
  });
});

// ─────────────── the part's own behaviour: rates, power, image size ───────────────

/** A pino logger whose records land in an array, to read what the driver said. */
function capture(): { log: Logger; records: Array<Record<string, unknown>>; events: (name: string) => Array<Record<string, unknown>> } {
  const records: Array<Record<string, unknown>> = [];
  const log = pino({ level: 'debug' }, { write: (line: string) => void records.push(JSON.parse(line) as Record<string, unknown>) });
  return { log, records, events: (name) => records.filter((r) => r.event === name) };
}

/** A bare serial client on the driver's end, for bytes the driver would never send (a size written without a reset). */
async function rawPort(path: string, baudRate = 38400): Promise<{ rx: () => Buffer; send: (frame: Buffer) => Promise<void>; baud: (rate: number) => Promise<void>; close: () => Promise<void> }> {
  const port = new SerialPort({ path, baudRate, autoOpen: false });
  let rx = Buffer.alloc(0);
  port.on('data', (d: Buffer) => {
    rx = Buffer.concat([rx, d]);
  });
  await new Promise<void>((resolve, reject) => port.open((err) => (err ? reject(err) : resolve())));
  return {
    rx: () => rx,
    send: (frame) => {
      rx = Buffer.alloc(0);
      return new Promise<void>((resolve, reject) => port.write(frame, (err) => (err ? reject(err) : port.drain(() => resolve()))));
    },
    baud: (rate) => new Promise<void>((resolve, reject) => port.update({ baudRate: rate }, (err) => (err ? reject(err) : resolve()))),
    close: () => new Promise<void>((resolve) => port.close(() => resolve())),
  };
}

/**
 * Reply timeout for the tests below, which measure no timing: the sim runs
 * stty for every chunk it hears, slow on a loaded machine.
 */
const SLOW_OK = 1000;

const WRITE_SIZE = (code: number) => encodeCommand(0, VC0706_CMD.WRITE_DATA, [0x04, 0x01, 0x00, 0x19, code]);
const ACK = (cmd: number) => b(0x76, 0x00, cmd, 0x00, 0x00);

/** Another writer on the driver's end (the driver's port closed) sets the image size without the reset the part needs. */
async function writeSizeWithoutReset(path: string, size: keyof typeof IMAGE_SIZE_CODES): Promise<void> {
  const raw = await rawPort(path);
  await raw.send(WRITE_SIZE(IMAGE_SIZE_CODES[size]));
  await until(() => raw.rx().includes(ACK(VC0706_CMD.WRITE_DATA)), 5000, 'WRITE_DATA acknowledged');
  await raw.close();
}

describe('the simulated VC0706 behaves like the part', () => {
  it('a written image size changes the register at once, but frames only after a RESET or a power cycle', async () => {
    const { cam: driver, sim, pty } = await rig(); // 320x240
    await driver.close();
    await writeSizeWithoutReset(pty.b, '640x480');
    expect([sim.imageSizeRegister, sim.imageSize]).toEqual(['640x480', '320x240']);

    let cam = closeAfterTest(await Vc0706Camera.open({ path: pty.b, timeoutMs: SLOW_OK, maxDrainMs: 200 }));
    expect(await cam.getImageSize()).toBe('640x480'); // READ_DATA returns the new code...
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 320, height: 240 }); // ...frames keep the old size
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 320, height: 240 });

    await sim.powerCycle(); // the driver's port stays open, at the camera's power-on rate
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 640, height: 480 });

    await cam.close();
    await writeSizeWithoutReset(pty.b, '160x120');
    cam = closeAfterTest(await Vc0706Camera.open({ path: pty.b, timeoutMs: SLOW_OK, maxDrainMs: 200 }));
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 640, height: 480 });
    await cam.reset();
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 160, height: 120 });
  });

  it('power cut behind a live port: deaf and mute while off; back at its power-on rate, unfrozen, SET_PORT forgotten, with its boot text', async () => {
    const { cam: driver, sim, pty } = await rig({ sim: { bootMs: 100 } });
    await driver.close();
    const raw = await rawPort(pty.b);
    await raw.send(encodeCommand(0, VC0706_CMD.SET_PORT, [0x01, 0x0d, 0xa6])); // 115200
    await until(() => raw.rx().includes(ACK(VC0706_CMD.SET_PORT)), 5000, 'SET_PORT acknowledged');
    await until(() => sim.baudRate === 115200, 5000, 'the sim at 115200');
    await raw.baud(115200);
    await raw.send(encodeCommand(0, VC0706_CMD.FBUF_CTRL, [FBUF_CTRL.STOP_CURRENT]));
    await until(() => raw.rx().includes(ACK(VC0706_CMD.FBUF_CTRL)), 5000, 'the freeze acknowledged at 115200');
    expect(sim.frozen).toBe(true);

    sim.powerOff();
    expect([sim.poweredOn, sim.frozen]).toEqual([false, false]);
    const heard = sim.commands.length;
    await raw.send(encodeCommand(0, VC0706_CMD.GEN_VERSION));
    // A bounded look for an answer that must not come (a live camera answers in a few ms).
    await expect(until(() => raw.rx().length > 0, 300, 'any byte from a camera without power')).rejects.toThrow(/timed out after 300 ms/);
    expect(sim.commands.length).toBe(heard);

    await raw.baud(38400);
    await sim.powerOn();
    await until(() => raw.rx().toString('latin1').includes('Init end\r\n'), 5000, 'the boot text at 38400');
    expect(raw.rx().toString('latin1')).toBe(BOOT_TEXT);
    expect([sim.poweredOn, sim.baudRate, sim.frozen]).toEqual([true, 38400, false]);
    await raw.send(encodeCommand(0, VC0706_CMD.GEN_VERSION));
    await until(() => raw.rx().includes(Buffer.from('VC0703 1.00')), 5000, 'GEN_VERSION answered at the power-on rate');
    await raw.close();
  });

  it('a reply under way stops when the power goes, mid-picture', async () => {
    const { cam, sim } = await rig({ sim: { pace: true, baudRate: 115200 }, cam: { baudRate: 115200, transferBaudRate: 115200, timeoutMs: SLOW_OK } });
    const pending = cameraFailure(cam.snapshot({ chunkSize: 1024, chunkRetries: 0 }));
    // Polled often: the power must go while the second chunk is still on the wire.
    await until(() => sim.count(VC0706_CMD.READ_FBUF) >= 2, 5000, 'the second chunk under way', 10);
    sim.powerOff();
    const { err } = await pending;
    expect(['timeout', 'garbled']).toContain(err.kind);
    expect(err.message).toMatch(/READ_FBUF|FBUF_CTRL/);
    await sim.powerOn();
    const img = await cam.snapshot(); // its power-on rate is 38400: found there, set to 115200 again
    expect(img.equals(JPEG['320x240'])).toBe(true);
    expect([cam.baudRate, sim.baudRate]).toEqual([115200, 115200]);
  });
});

describe('finding the camera at any of its rates, and again after it lost power', () => {
  it.each([57600, 9600])('finds a camera left at %i baud, says so, and moves it to the transfer rate', async (rate) => {
    const { log, events } = capture();
    const { cam, sim } = await rig({ sim: { baudRate: rate }, cam: { transferBaudRate: 115200, timeoutMs: SLOW_OK, log } });
    const c = await cam.connect();
    expect(c).toMatchObject({ foundAt: rate, baudRate: 115200, version: 'VC0703 1.00' });
    expect([cam.baudRate, sim.baudRate]).toEqual([115200, 115200]);
    const found = events('camera.found');
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ baudRate: rate, msg: `camera answers at ${rate} baud` });
    // The power-on rate first, then the transfer rate, then the rest.
    expect((found[0]?.tried as number[]).slice(0, 2)).toEqual([38400, 115200]);
    expect((await cam.snapshot()).equals(JPEG['320x240'])).toBe(true);
  });

  it('names every rate it tried, and what to check, when nothing answers', async () => {
    const { cam, sim } = await rig({ cam: { transferBaudRate: 115200, timeoutMs: SLOW_OK } });
    sim.setFault('silent'); // a broken TX wire: nothing at any rate
    const { err, ms } = await cameraFailure(cam.connect());
    expect(err.kind).toBe('timeout');
    expect(err.message).toContain('tried 38400 (silent), 115200 (silent), 9600 (silent), 19200 (silent), 57600 (silent) baud');
    expect(err.message).toMatch(/check the camera's power .* TX goes to the adapter's RX/);
    expect(err.message).toContain(`${SLOW_OK} ms each`);
    expect(ms).toBeLessThan(5 * SLOW_OK + 3000);
  });

  it('a camera that loses power behind a live port fails one snapshot, and the next finds it at its power-on rate and sets it up again', async () => {
    const frames = [0, 1, 2, 3, 4].map((n) => numbered(JPEG['320x240'], n));
    const { log, events } = capture();
    const { cam, sim } = await rig({ sim: { images: frames }, cam: { transferBaudRate: 115200, imageSize: '320x240', timeoutMs: SLOW_OK, log } });
    await cam.connect();
    const before = await cam.snapshot();
    expect(sim.baudRate).toBe(115200);

    await sim.powerCycle(); // back at 38400, SET_PORT forgotten; the driver still at 115200
    const { err } = await cameraFailure(cam.snapshot());
    // Silence, or its boot text heard at the wrong rate: noise.
    expect(['timeout', 'garbled']).toContain(err.kind);
    expect(err.message).toMatch(/FBUF_CTRL: .*check the (camera's power|baud rate)/);

    const opens = events('camera.port.open').length;
    const after = await cam.snapshot();
    expect(after.equals(sim.lastFrame as Buffer)).toBe(true); // a fresh frame, not one left over
    expect(after.equals(before)).toBe(false);
    expect([cam.baudRate, sim.baudRate]).toEqual([115200, 115200]);
    expect(events('camera.port.open')).toHaveLength(opens); // same port, never reopened
    expect(events('camera.rebooted')).toEqual([expect.objectContaining({ was: 115200, foundAt: 38400, baudRate: 115200 })]);
    expect(sim.count(VC0706_CMD.RESET)).toBe(0); // the size survived in the EEPROM: nothing to apply

    // Healthy again: a snapshot is its own commands and nothing more.
    const from = sim.commands.length;
    await cam.snapshot();
    expect(sim.commands.slice(from).map((c) => c.name)).toEqual(['FBUF_CTRL', 'GET_FBUF_LEN', 'READ_FBUF', 'READ_FBUF', 'READ_FBUF', 'FBUF_CTRL']);
  });

  it('applies at connect an image size another writer left pending without a reset', async () => {
    const { cam: driver, sim, pty } = await rig();
    await driver.close();
    await writeSizeWithoutReset(pty.b, '640x480');
    const { log, events } = capture();
    const cam = closeAfterTest(await Vc0706Camera.open({ path: pty.b, timeoutMs: SLOW_OK, maxDrainMs: 200, imageSize: '640x480', log }));
    await cam.connect();
    expect(events('camera.image-size.pending')).toEqual([expect.objectContaining({ size: '640x480', frame: '320x240' })]);
    expect(sim.count(VC0706_CMD.RESET)).toBe(1);
    expect(sim.count(VC0706_CMD.WRITE_DATA)).toBe(1); // only the raw one: the register already held it
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 640, height: 480 });
  });
});
