// The camera driver table and the `cameras[]` config: a camera names its
// driver (VC0706 when it does not, so older configs keep working), only that
// driver's keys are accepted, and a mistake is refused with the key to fix,
// as the agent prints it (common/config-file.ts).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CAMERA_DRIVERS, CameraConfigSchema, openCamera } from '../../hal/camera/drivers.ts';
import { CameraError } from '../../hal/camera/types.ts';
import { cameraConfigProblems, parseCameras } from '../helpers/camera-config.ts';

describe('cameras[] config', () => {
  it('a camera without "driver" is a VC0706 with the defaults it always had', () => {
    const [cam] = parseCameras([{ name: 'cabin', port: '/dev/ttyUSB1' }]);
    expect(cam).toEqual({
      driver: 'vc0706',
      name: 'cabin',
      port: '/dev/ttyUSB1',
      baudRate: 38400,
      transferBaudRate: 115200,
      serial: 0,
      imageSize: '640x480',
      timeoutMs: 1000,
    });
  });

  it('refuses an unknown driver, naming the key and the drivers there are', () => {
    const [p, ...rest] = cameraConfigProblems([{ name: 'cabin', driver: 'vc0707', port: '/dev/ttyUSB1' }]);
    expect(rest).toEqual([]);
    expect(p).toMatch(/^key "cameras\.0\.driver" = "vc0707": unknown camera driver; expected one of "vc0706"/);
    for (const name of Object.keys(CAMERA_DRIVERS)) expect(p).toContain(`"${name}"`);
  });

  it("validates a VC0706's own keys: a missing port, a rate it does not know, a key of another driver", () => {
    expect(cameraConfigProblems([{ name: 'cabin', driver: 'vc0706' }])).toEqual(['key "cameras.0.port" missing: expected string']);
    const [rate] = cameraConfigProblems([{ name: 'cabin', port: '/dev/ttyUSB1', transferBaudRate: 230400 }]);
    expect(rate).toMatch(/^key "cameras\.0\.transferBaudRate" = 230400: .*9600, 19200, 38400, 57600, 115200/);
    expect(cameraConfigProblems([{ name: 'cabin', port: '/dev/ttyUSB1', source: 'v4l2src' }])).toEqual([
      'unknown key "cameras.0.source": not an option (see docs/configuration.md)',
    ]);
  });

  it('refuses a bad name and duplicate names, whatever the driver', () => {
    expect(cameraConfigProblems([{ name: 'cabin camera', port: '/dev/ttyUSB1' }])[0]).toMatch(/^key "cameras\.0\.name" = "cabin camera": letters, digits/);
    expect(cameraConfigProblems([{ name: 'a', port: '/dev/x' }, { name: 'a', port: '/dev/y' }])).toEqual(['key "cameras" = [{"name":"a","port":"/dev/x"},{"name":"a","port":"/dev/y"}]: camera names must be unique']);
  });

  it('a camera entry that is not an object is refused as such', () => {
    expect(cameraConfigProblems(['cabin'])).toEqual(['key "cameras.0" = "cabin": expected object']);
  });
});

describe('openCamera', () => {
  let dir: string | null = null;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
    dir = null;
  });

  it("opens a VC0706 through the table: a port that is not there is an 'io' CameraError naming it", async () => {
    dir = mkdtempSync(join(tmpdir(), 'cam-drivers-'));
    const port = join(dir, 'ttyNone');
    const cfg = CameraConfigSchema.parse({ name: 'cabin', port });
    const err = await openCamera(cfg).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CameraError);
    expect(err).toMatchObject({ kind: 'io', detail: { path: port, command: 'open' } });
    expect((err as Error).message).toMatch(/cannot open the port .*check that the camera is plugged in/);
  });
});
