// The VC0706 driver against the simulated camera through a real serial line (a
// socat pseudo-terminal pair): the bytes, the pictures, the image size and
// baud rate commands, and what happens when the camera goes quiet, babbles,
// cuts its JPEG short, stalls, or is unplugged. Every failure must come back
// as a CameraError of the right kind within a bounded time, and the next
// snapshot after the fault must work, with the frame buffer resumed.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it } from 'vitest';
import { SimVc0706, type SimFault, type SimVc0706Options, jpegDimensions } from '../../hal/camera/sim.ts';
import {
  CameraError,
  type CameraErrorKind,
  FBUF_CTRL,
  VC0706_CMD,
  Vc0706Camera,
  type Vc0706Options,
  findReply,
  jpegEnd,
} from '../../hal/camera/vc0706.ts';
import { openPtyPair, type PtyPair } from '../helpers/pty.ts';

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

let dir: string | null = null;
let pty: PtyPair | null = null;
let sim: SimVc0706 | null = null;
let cam: Vc0706Camera | null = null;

afterEach(async () => {
  await cam?.close();
  await sim?.stop();
  await pty?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
  cam = sim = pty = dir = null;
});

/** A pty pair, the sim on its device end, the driver on the other. Short timeouts: the line is a pty. */
async function rig(o: { sim?: Partial<SimVc0706Options>; cam?: Partial<Vc0706Options> } = {}): Promise<{ sim: SimVc0706; cam: Vc0706Camera; pty: PtyPair }> {
  dir = mkdtempSync(join(tmpdir(), 'cam-vc0706-'));
  pty = await openPtyPair(dir);
  sim = new SimVc0706({ path: pty.a, peer: pty.b, images: Object.values(JPEG), bootMs: 50, ...o.sim });
  await sim.start();
  cam = await Vc0706Camera.open({ path: pty.b, timeoutMs: 250, maxDrainMs: 200, ...o.cam });
  return { sim, cam, pty };
}

async function failure(p: Promise<unknown>): Promise<{ err: CameraError; ms: number }> {
  const t0 = performance.now();
  try {
    await p;
  } catch (err) {
    if (!(err instanceof CameraError)) throw err;
    return { err, ms: performance.now() - t0 };
  }
  throw new Error('expected a CameraError, the call succeeded');
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

  it('sets the image size, reads it back, and the next picture has that size', async () => {
    const { cam, sim } = await rig();
    expect(await cam.getImageSize()).toBe('320x240');
    await cam.setImageSize('160x120');
    expect(sim.imageSize).toBe('160x120');
    expect(await cam.getImageSize()).toBe('160x120');
    const small = await cam.snapshot();
    expect(jpegDimensions(small)).toEqual({ width: 160, height: 120 });
    expect(small.equals(JPEG['160x120'])).toBe(true);

    await cam.setImageSize('640x480', { reset: true });
    expect(sim.count(VC0706_CMD.RESET)).toBe(1);
    expect(jpegDimensions(await cam.snapshot())).toEqual({ width: 640, height: 480 });
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
    const { err, ms } = await failure(cam.version());
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
    const { cam, sim } = await rig({ sim: { slowBaud: 1200, images: frames } });
    sim.setFault(fault);
    const { err, ms } = await failure(cam.snapshot({ chunkSize: 1024, chunkRetries: 1, chunkTimeoutMs: 300 }));
    expect(err.kind).toBe(kind);
    expect(err.detail.path).toBe(pty?.b);
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
    const { cam, sim, pty } = await rig({ sim: { pace: true, imageSize: '640x480' } }); // ~4.7 s on the wire at 38400
    const pending = failure(cam.snapshot());
    await new Promise((r) => setTimeout(r, 300));
    await pty.stop();
    const { err, ms } = await pending;
    expect(err.kind).toBe('io');
    expect(err.message).toContain(pty.b);
    expect(ms).toBeLessThan(1500);

    const unplugged = await failure(cam.version()); // the port is gone: reopening fails at once
    expect(unplugged.err.kind).toBe('io');
    expect(unplugged.err.message).toMatch(/cannot open the port .*check that the camera is plugged in/);
    expect(unplugged.ms).toBeLessThan(500);

    await sim.stop();
    const replugged = await openPtyPair(dir as string);
    const sim2 = new SimVc0706({ path: replugged.a, peer: replugged.b, images: Object.values(JPEG) });
    await sim2.start();
    ptyHandle(replugged, sim2);
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

/** Hand a replugged pair and its sim to afterEach. */
function ptyHandle(p: PtyPair, s: SimVc0706): void {
  pty = p;
  sim = s;
}
