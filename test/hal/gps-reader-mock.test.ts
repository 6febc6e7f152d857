// The NMEA reader's line handling, through serialport's mock binding: what
// arrives on the wire in which pieces is the test's to choose, and a
// pseudo-terminal would add nothing (its timing is covered by gps-serial and
// gps-reader tests on socat pairs).

import { MockBinding, type MockPortBinding } from '@serialport/binding-mock';
import type { BindingInterface, OpenOptions } from '@serialport/bindings-interface';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NmeaReader } from '../../hal/gps/reader.ts';
import type { GpsFix } from '../../hal/gps/types.ts';
import { nmeaFor } from '../../hal/gps/route-sim.ts';
import { until } from '../../scripts/lib/until.ts';

const PATH = '/dev/ttyMOCK-GPS';

describe('NMEA reader over the mock binding', () => {
  let opened: MockPortBinding[];
  let reader: NmeaReader;
  let fixes: GpsFix[];

  beforeEach(() => {
    MockBinding.reset();
    MockBinding.createPort(PATH, { echo: false, record: false });
    opened = [];
    // The mock binding, remembering the port it opens so the test can feed it.
    const binding: BindingInterface<MockPortBinding> = {
      ...MockBinding,
      list: () => MockBinding.list(),
      open: async (o: OpenOptions) => {
        const p = await MockBinding.open(o);
        opened.push(p);
        return p;
      },
    };
    reader = new NmeaReader({ path: PATH, baudRate: 9600, autoBaud: false, binding });
    fixes = [];
    reader.on('fix', (f) => fixes.push(f));
    reader.start();
  });
  afterEach(async () => {
    await reader.close();
  });

  const feed = async (text: string | Buffer) => {
    await until(() => opened[0]?.isOpen, 2000, 'the port open');
    opened[0]!.emitData(typeof text === 'string' ? Buffer.from(text, 'latin1') : text);
  };

  it('a sentence split across reads, a bad checksum, binary junk, an over-long line and a $$ prefix: one fix per good cycle, the rest counted', async () => {
    const pos = { lat: 34.26, lon: 108.94, altM: 405, speedMps: 8, trackDeg: 90 };
    const [rmc, gga] = nmeaFor(pos, new Date('2026-11-22T10:00:00Z'));
    const [rmc2, gga2] = nmeaFor({ ...pos, lat: 34.261 }, new Date('2026-11-22T10:00:01Z'));
    await feed(rmc.slice(0, 20));
    await feed(rmc.slice(20) + gga);
    await feed(Buffer.from([0x00, 0xff, 0x13, 0x0d, 0x0a]));
    await feed(`$GPGGA,${'9'.repeat(300)}*00\r\n`);
    await feed(rmc2.replace(/\*[0-9A-F]{2}/, '*00')); // bad checksum
    await feed(`$${gga2}`); // $$ prefix, as an ST Teseo sends
    await until(() => fixes.some((f) => Math.abs(f.lat - 34.261) < 1e-9), 3000, 'a fix from the $$ sentence');
    expect(fixes.some((f) => Math.abs(f.lat - 34.26) < 1e-9 && f.valid)).toBe(true);
    const stats = reader.stats();
    expect(stats.checksumErrors).toBeGreaterThanOrEqual(1);
    expect(stats.overlongLines).toBeGreaterThanOrEqual(1);
  });
});
