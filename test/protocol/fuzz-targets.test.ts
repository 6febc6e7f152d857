// Hostile input as a standing test: every target of `npm run fuzz`
// (scripts/fuzz-targets.ts: each uplink kind at dispatch, each downlink kind
// on the bus, evidence file topics, NMEA, VC0706 replies and JPEG frames, both
// config files, the footage CLI's times) driven a few hundred times in the
// suite; cases the fuzzer found are kept below as regression tests.

import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { parseWhen } from '../../dispatch/footage.ts';
import { fuzzTargets } from '../../scripts/fuzz-targets.ts';

describe('fuzz targets', () => {
  const bed = fuzzTargets();
  afterAll(() => bed.close());

  for (const target of bed.targets) {
    it(`${target.name}: 300 generated inputs, contract kept`, () => {
      fc.assert(fc.property(target.input, (input) => target.check(input)), { numRuns: 300 });
    });
  }

  it('found by the fuzzer: a span no Date can hold is a bad --from, not a crash', () => {
    expect(parseWhen('-99999999999999999999h')).toBeNull();
    expect(parseWhen('+99999999999h')).toBeNull();
    expect(parseWhen('-1h', 0)).toBe(-3_600_000);
  });
});
