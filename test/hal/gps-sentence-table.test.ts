// The one sentence table (hal/gps/sentence-rules.ts): each typed sentence's
// decoder makes that sentence, its rule is found by its type, and every
// entry has its own tag. What the rules do is tested through the assembler
// and the gpsd corpus.

import { describe, expect, it } from 'vitest';
import { hex2, nmeaChecksum, parseSentence } from '../../hal/gps/nmea.ts';
import { RULE_COUNT, TYPED_DECODERS, ruleFor, typedRule } from '../../hal/gps/sentence-rules.ts';

function line(body: string): string {
  return `$${body}*${hex2(nmeaChecksum(body))}\r\n`;
}

describe('the sentence table', () => {
  it('decodes each typed formatter into its own sentence type, after any talker', () => {
    expect(TYPED_DECODERS.map((d) => d.formatter).sort()).toEqual(['GGA', 'GLL', 'GNS', 'GSA', 'RMC', 'VTG', 'ZDA']);
    for (const { formatter } of TYPED_DECODERS) {
      for (const talker of ['GP', 'GN', 'BD']) {
        const s = parseSentence(line(`${talker}${formatter},${','.repeat(20)}`));
        expect(s).toMatchObject({ type: formatter, talker, formatter });
      }
    }
  });

  it('lets a whole address in the table win over a typed formatter ($PGRMC is no RMC)', () => {
    expect(TYPED_DECODERS.find((d) => d.formatter === 'RMC')?.shadowedBy).toEqual(['PGRMC']);
    const s = parseSentence(line('PGRMC,A,218.8,100'));
    expect(s).toMatchObject({ type: 'other', address: 'PGRMC' });
    if (!('error' in s) && s.type === 'other') expect(ruleFor(s)).toMatchObject({ apply: null });
  });

  it('gives every entry its own tag, typed and subtyped ones included', () => {
    const tags = new Set<number>();
    for (const { formatter } of TYPED_DECODERS) {
      const s = parseSentence(line(`GP${formatter},${','.repeat(20)}`));
      if ('error' in s || s.type === 'other' || s.type === 'AIS') throw new Error(`${formatter} not typed`);
      tags.add(typedRule(s.type).tag);
    }
    for (const body of ['PERC,GPppr,1,2,3,4', 'PERC,GPsts,1,2,3', 'PSTI,030,1,2', 'PGRME,1,M,2,M,3,M', 'GPGSV,1,1,00', 'GPGBS,1,2,3,4,5,6']) {
      const s = parseSentence(line(body));
      if ('error' in s || s.type !== 'other') throw new Error(`${body} not other`);
      const rule = ruleFor(s);
      expect(rule, body).not.toBeNull();
      tags.add(rule!.tag);
    }
    expect(tags.size).toBe(TYPED_DECODERS.length + 6);
    for (const t of tags) {
      expect(t).toBeGreaterThanOrEqual(1);
      expect(t).toBeLessThanOrEqual(RULE_COUNT);
    }
  });
});
