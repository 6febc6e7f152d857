// A receiver capture played through busguard's GPS reader offline: the same
// parser and fix assembler the live serial reader uses, so what comes out is
// what the bus would have sent. Used by `busguard gps replay` and by the
// corpus test that holds busguard against gpsd.

import { FixAssembler } from './fix-assembler.ts';
import { type ParsedSentence, parseSentence } from './nmea.ts';
import type { GpsFix } from './types.ts';

/** gpsd's regression logs say when they were recorded; gpsd then trusts receiver dates as sent. */
const CAPTURE_DATE = '# Date: ';

/**
 * What a capture held, for telling a technician why it gave no fix. Every
 * line other than a blank one or a '#' comment is exactly one of valid,
 * checksumFailed or notNmea.
 */
export interface ReplayStats {
  /** Characters (bytes, read as latin1) in the capture. */
  bytes: number;
  /** Lines other than blank ones and '#' comments. */
  lines: number;
  comments: number;
  /** Lines that parsed as a checksummed sentence (NMEA, or an AIS report). */
  valid: number;
  /** Lines with a missing or wrong *hh checksum. */
  checksumFailed: number;
  /** Lines that were no NMEA sentence: no '$', a talker gpsd does not know, binary bytes, over 130 characters. */
  notNmea: number;
  /** Valid sentences by formatter ('RMC', 'GSV', 'GRME' for $PGRME, 'VDM' for AIS). */
  types: Map<string, number>;
  /** Position sentences (GGA, RMC, GLL, GNS) that said the receiver had a fix. */
  positionsWithFix: number;
  /** The other position sentences, by what they said instead ('RMC with status V'...). */
  positionsWithout: Map<string, number>;
}

export function emptyReplayStats(): ReplayStats {
  return { bytes: 0, lines: 0, comments: 0, valid: 0, checksumFailed: 0, notNmea: 0, types: new Map(), positionsWithFix: 0, positionsWithout: new Map() };
}

/**
 * Every fix the reader reports for a capture (raw bytes or latin1 text),
 * in order. Lines starting with '#' are comments (a '# Date: ' one marks the
 * capture as dated, see FixAssembler.markCaptureDated); lines that are not a
 * valid sentence are skipped as the live reader skips them. A last line
 * without its line end is read too: a capture file may simply lack the final
 * newline. With opts.stats, what the capture held is counted into it.
 */
export function replayNmea(text: string | Buffer, opts: { now?: () => number; stats?: ReplayStats } = {}): GpsFix[] {
  const s = typeof text === 'string' ? text : text.toString('latin1');
  const stats = opts.stats;
  if (stats) stats.bytes += s.length;
  const assembler = new FixAssembler(opts);
  const fixes: GpsFix[] = [];
  let from = 0;
  while (from < s.length) {
    let to = s.indexOf('\n', from);
    if (to < 0) to = s.length;
    const line = s.slice(from, to);
    from = to + 1;
    if (line.charCodeAt(0) === 35) {
      if (stats) stats.comments++;
      if (line.startsWith(CAPTURE_DATE)) assembler.markCaptureDated();
      continue;
    }
    if (line === '' || line === '\r') continue;
    const r = parseSentence(line);
    if (stats) count(stats, r);
    if ('error' in r) continue;
    for (const f of assembler.push(r)) fixes.push(f);
  }
  return fixes;
}

function count(stats: ReplayStats, r: ReturnType<typeof parseSentence>): void {
  stats.lines++;
  if ('error' in r) {
    if (r.kind === 'checksum') stats.checksumFailed++;
    else stats.notNmea++;
    return;
  }
  stats.valid++;
  stats.types.set(r.formatter, (stats.types.get(r.formatter) ?? 0) + 1);
  const without = noFixReason(r);
  if (without === undefined) return; // not a position sentence
  if (without === null) stats.positionsWithFix++;
  else stats.positionsWithout.set(without, (stats.positionsWithout.get(without) ?? 0) + 1);
}

/**
 * For a position sentence, null when it says the receiver has a fix, or
 * what it says instead, by the fields gpsd goes by (fix-sentences.ts);
 * undefined for other sentences.
 */
function noFixReason(r: ParsedSentence): string | null | undefined {
  switch (r.type) {
    case 'RMC':
      if (r.status !== 'A') return 'RMC with status V';
      return r.lat === null || r.lon === null ? 'RMC without a position' : null;
    case 'GGA':
      if (r.quality <= 0) return 'GGA with quality 0';
      if (r.lat === null || r.lon === null) return 'GGA without a position';
      // gpsd: a GPS or combined GGA with fewer than three satellites is no fix.
      if ((r.sats ?? 0) < 3 && (r.talker === 'GP' || r.talker === 'GN')) return 'GGA with fewer than 3 satellites';
      return null;
    case 'GLL':
      if (r.status !== 'A' || r.mode === 'N') return 'GLL with status V';
      return r.lat === null || r.lon === null ? 'GLL without a position' : null;
    case 'GNS':
      if (r.modes === '' || r.modes.startsWith('N')) return 'GNS with mode N';
      if (r.navStatus === 'U' || r.navStatus === 'V') return `GNS with navigational status ${r.navStatus}`;
      return r.lat === null || r.lon === null ? 'GNS without a position' : null;
    default:
      return undefined;
  }
}

const plural = (n: number, one: string, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** "12 RMC with status V, 3 GGA with quality 0": a count map, largest first. */
function listCounts(m: Map<string, number>, max = 6): string {
  const sorted = [...m].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const shown = sorted.slice(0, max).map(([k, n]) => `${n} ${k}`);
  if (sorted.length > max) shown.push(`${sorted.length - max} other kinds`);
  return shown.join(', ');
}

/** "40 lines: 36 valid NMEA sentences, 2 failed their checksum, 2 not NMEA at all": what was read. */
export function describeRead(st: ReplayStats): string {
  const parts = [plural(st.valid, 'valid NMEA sentence'), `${st.checksumFailed} failed their checksum`, `${st.notNmea} not NMEA at all`];
  const comments = st.comments ? `; ${plural(st.comments, 'comment line')} skipped` : '';
  return `${plural(st.lines, 'line')} read: ${parts.join(', ')}${comments}`;
}

/**
 * Why a capture gave no 2D/3D fix, in the words a technician can act on. The
 * first that applies: nothing in the file, no sentence that passed its
 * checksum, no position sentence, position sentences that all said "no fix",
 * or position sentences that claimed a fix gpsd would still not report.
 */
export function whyNoFix(st: ReplayStats): string {
  if (st.bytes === 0) return 'the file is empty';
  if (st.lines === 0) return 'the file has no data, only comments and blank lines';
  if (st.valid === 0) {
    if (st.checksumFailed > 0) {
      const others = st.notNmea > 0 ? `, and the other ${plural(st.notNmea, 'line was', 'lines were')} not NMEA at all` : '';
      return (
        `no sentence passed its checksum (${st.checksumFailed} failed${others}): ` +
        `line noise or a wrong baud rate when it was captured, or the file was edited by hand`
      );
    }
    return (
      `no line is an NMEA sentence: binary data or another protocol; ` +
      `check that the receiver was in NMEA mode and the capture was read at its baud rate`
    );
  }
  const positions = st.positionsWithFix + [...st.positionsWithout.values()].reduce((a, b) => a + b, 0);
  if (positions === 0) {
    return `no position sentence (GGA, RMC, GLL, GNS) at all; the valid sentences were ${listCounts(st.types)}; the receiver may need its position sentences switched on`;
  }
  if (st.positionsWithFix === 0) {
    return (
      `every position sentence said there was no fix (${listCounts(st.positionsWithout)}): ` +
      `the receiver had no satellite lock when this was captured; check its antenna and its view of the sky, and give a cold start a few minutes`
    );
  }
  const others = st.positionsWithout.size ? `; the others: ${listCounts(st.positionsWithout)}` : '';
  return (
    `${plural(st.positionsWithFix, 'position sentence')} claimed a fix, but none made a 2D/3D fix as gpsd reads them ` +
    `(a GGA repeating the previous one's time, a position out of range, or a fix that cycle's other sentences marked void)${others}`
  );
}
