// A receiver capture played through busguard's GPS reader offline: the same
// parser and fix assembler the live serial reader uses, so what comes out is
// what the bus would have sent. Used by `busguard gps replay` and by the
// corpus test that holds busguard against gpsd.

import { FixAssembler } from './fix-assembler.ts';
import { parseSentence } from './nmea.ts';
import type { GpsFix } from './types.ts';

/** gpsd's regression logs say when they were recorded; gpsd then trusts receiver dates as sent. */
const CAPTURE_DATE = '# Date: ';

/**
 * Every fix the reader reports for a capture (raw bytes or latin1 text),
 * in order. Lines starting with '#' are comments (a '# Date: ' one marks the
 * capture as dated, see FixAssembler.markCaptureDated); lines that are not a
 * valid sentence are skipped as the live reader skips them. A last line
 * without its line end is read too: a capture file may simply lack the final
 * newline.
 */
export function replayNmea(text: string | Buffer, opts: { now?: () => number } = {}): GpsFix[] {
  const s = typeof text === 'string' ? text : text.toString('latin1');
  const assembler = new FixAssembler(opts);
  const fixes: GpsFix[] = [];
  let from = 0;
  while (from < s.length) {
    let to = s.indexOf('\n', from);
    if (to < 0) to = s.length;
    const line = s.slice(from, to);
    from = to + 1;
    if (line.charCodeAt(0) === 35) {
      if (line.startsWith(CAPTURE_DATE)) assembler.markCaptureDated();
      continue;
    }
    if (line === '' || line === '\r') continue;
    const r = parseSentence(line);
    if ('error' in r) continue;
    for (const f of assembler.push(r)) fixes.push(f);
  }
  return fixes;
}
