import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FixAssembler } from '../../hal/gps/fix-assembler.ts';
import { type ParsedSentence, hex2, nmeaChecksum, parseSentence } from '../../hal/gps/nmea.ts';
import type { GpsFix } from '../../hal/gps/types.ts';

import { CORPUS } from '../helpers/corpus.ts';

function s(body: string): ParsedSentence {
  const r = parseSentence(`$${body}*${hex2(nmeaChecksum(body))}`);
  if ('error' in r) throw new Error(r.error);
  return r;
}

// One cycle of a receiver near Xi'an's Bell Tower, 12:00:01 UTC on 2024-05-20.
const RMC_A = 'GPRMC,120001.00,A,3415.660000,N,10856.544000,E,15.552,90.00,200524,,,A';
const GGA_1 = 'GPGGA,120001.00,3415.660000,N,10856.544000,E,1,09,0.9,405.0,M,-28.0,M,,';
const RMC_NEXT = 'GPRMC,120002.00,A,3415.660000,N,10856.553000,E,15.552,90.00,200524,,,A';

/** An assembler whose clock the test sets. */
function assembler(): { asm: FixAssembler; clock: { now: number } } {
  const clock = { now: 1000 };
  return { asm: new FixAssembler({ now: () => clock.now }), clock };
}

describe('FixAssembler', () => {
  it('merges RMC and GGA of one cycle into one fix as soon as both are in', () => {
    const { asm } = assembler();
    expect(asm.push(s(RMC_A))).toEqual([]);
    const [fix, ...more] = asm.push(s(GGA_1));
    expect(more).toEqual([]);
    expect(fix).toEqual<GpsFix>({
      valid: true,
      lat: 34 + 15.66 / 60,
      lon: 108 + 56.544 / 60,
      altM: 405.0,
      speedMps: 15.552 * (1852 / 3600),
      trackDeg: 90,
      time: new Date('2024-05-20T12:00:01.000Z'),
      sats: 9,
      hdop: 0.9,
      receivedAtMs: 1000,
    });
  });

  it('does not depend on the order of RMC and GGA in the cycle', () => {
    const { asm } = assembler();
    expect(asm.push(s(GGA_1))).toEqual([]);
    expect(asm.push(s(RMC_A))).toHaveLength(1);
  });

  it('ignores other sentences between them', () => {
    const { asm } = assembler();
    asm.push(s(RMC_A));
    expect(asm.push(s('GPGSA,A,3,01,02,03,,,,,,,,,,1.5,0.9,1.2'))).toEqual([]);
    expect(asm.push(s(GGA_1))).toHaveLength(1);
  });

  it('emits a lone sentence when the next cycle begins, stamped with its own arrival', () => {
    const { asm, clock } = assembler();
    expect(asm.push(s(RMC_A))).toEqual([]);
    clock.now = 2000;
    const [fix] = asm.push(s(RMC_NEXT));
    expect(fix).toMatchObject({ time: new Date('2024-05-20T12:00:01.000Z'), altM: null, sats: null, hdop: null, receivedAtMs: 1000 });
    expect(asm.flush()).toMatchObject({ time: new Date('2024-05-20T12:00:02.000Z'), receivedAtMs: 2000 });
    expect(asm.flush()).toBeNull();
  });

  it('makes one fix of a cycle that repeats a sentence (GNRMC and GPRMC), the first one winning', () => {
    const { asm } = assembler();
    asm.push(s(RMC_A));
    asm.push(s(GGA_1));
    expect(asm.push(s(RMC_A.replace('GPRMC', 'GNRMC').replace('3415.66', '3415.99')))).toEqual([]);
    expect(asm.flush()).toBeNull();
  });

  it("flags RMC 'V' as invalid but still gives the position", () => {
    const { asm } = assembler();
    asm.push(s(RMC_A.replace(',A,3415', ',V,3415').replace(/,A$/, ',N')));
    const [fix] = asm.push(s(GGA_1.replace(',E,1,09', ',E,0,00')));
    expect(fix).toMatchObject({ valid: false, lat: 34 + 15.66 / 60 });
  });

  it('flags GGA quality 0 as invalid even when RMC says A', () => {
    const { asm } = assembler();
    asm.push(s(RMC_A));
    expect(asm.push(s(GGA_1.replace(',E,1,09', ',E,0,09')))[0]?.valid).toBe(false);
  });

  it("flags RMC mode 'N' (NMEA 2.3: data not valid) as invalid", () => {
    const { asm } = assembler();
    asm.push(s(RMC_A.replace(/,A$/, ',N')));
    expect(asm.flush()?.valid).toBe(false);
  });

  it('makes no fix from a cycle without a position', () => {
    const { asm } = assembler();
    asm.push(s('GPRMC,120001.00,V,,,,,,,200524,,,N'));
    expect(asm.push(s('GPGGA,120001.00,,,,,0,00,,,M,,M,,'))).toEqual([]);
    expect(asm.flush()).toBeNull();
  });

  it('takes altitude, satellites and hdop from GGA; a GGA-only cycle has no time (the date is only in RMC)', () => {
    const { asm } = assembler();
    asm.push(s(GGA_1));
    const fix = asm.flush();
    expect(fix).toMatchObject({ valid: true, altM: 405.0, sats: 9, hdop: 0.9, time: null, speedMps: null, trackDeg: null });
  });

  it('turns a Trimble RTK capture into one fix per epoch, matching the sentences', () => {
    const { asm } = assembler();
    const fixes: GpsFix[] = [];
    const lines = readFileSync(new URL('nmea-fuzzy-cases.log', CORPUS), 'latin1').split('\n');
    for (const line of lines) {
      const r = parseSentence(line);
      if (!('error' in r)) fixes.push(...asm.push(r));
    }
    const last = asm.flush();
    if (last) fixes.push(last);
    expect(fixes).toHaveLength(14); // 14 GGA+RMC pairs, one epoch each
    expect(fixes.every((f) => f.valid && f.altM !== null && f.time !== null && f.sats !== null)).toBe(true);
    expect(fixes[0]).toMatchObject({ time: new Date('2020-03-18T13:28:20.600Z'), altM: 278.02, sats: 9 });
    expect(fixes[0]?.lat).toBeCloseTo(41.574970205, 8); // gpsd's TPV for this epoch
    expect(fixes[0]?.lon).toBeCloseTo(-93.750558641, 8);
  });
});
