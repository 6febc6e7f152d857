// The sentences busguard knows, as gpsd's NMEA driver lists them: for each,
// how many fields it needs, whether it continues a reporting cycle, and its
// rule (fix-sentences.ts, other-sentences.ts). Sentences gpsd lists without
// decoding them (RMB, XTE, $PUBX ...) behave exactly like unknown ones and
// are left out, except $PGRMC, which must not be read as an RMC. New
// receiver sentences are a rule plus one line here.

import type { ParsedSentence } from './nmea.ts';
import * as fix from './fix-sentences.ts';
import * as other from './other-sentences.ts';
import type { Apply } from './sentence-kit.ts';

const { gga, rmc, gll, gns, gsa, gsv, vtg, zda } = fix;
const {
  onlineOnly,
  gbs,
  gst,
  grs,
  bwc,
  dbt,
  dpt,
  hdg,
  hdm,
  hdt,
  rot,
  mwd,
  mwv,
  xdr,
  attitude,
  pashr,
  percAveragedPosition,
  percTime,
  percStatus,
  percVersion,
  pgrme,
  pgrmf,
  pgrmv,
  pgrmz,
  pgrmt,
  pmgnst,
  psrfepe,
  psti030,
  psti032,
  psti033,
  psti035,
  psti036,
  pgpsp,
  pstmAntenna,
  ptnlrba,
  ptnlrnm,
  ptnta,
  snrstat,
  pqtmver,
  oscillator,
} = other;

export interface SentenceRule {
  /** A three-letter formatter (any talker), or a whole proprietary address ('PGRME'). */
  name: string;
  /** The first data field must be this too ($PERC,GPppr; $PSTI,030), or null. */
  subtype: string | null;
  /** Fewest fields, address included, for the sentence to be read at all. */
  minFields: number;
  /** Continues a cycle after its time-stamped sentences (GLL on Garmin 48 and Magellan Triton). */
  continuesCycle: boolean;
  /** The rule; null for a sentence that is recognised but deliberately ignored. */
  apply: Apply | null;
  /** 1-based position in the table: its identity for the cycle-end bookkeeping. */
  tag: number;
}

type RuleSpec = [name: string, subtype: string | null, minFields: number, continuesCycle: boolean, apply: Apply | null];

// In gpsd's order (which only matters between entries of the same address).
const SPECS: RuleSpec[] = [
  ['PGLOR', null, 2, false, onlineOnly],
  ['PERC', 'FWsts', 6, false, onlineOnly],
  ['PERC', 'GPavp', 6, false, percAveragedPosition],
  ['PERC', 'GPctr', 6, false, onlineOnly],
  ['PERC', 'GPdbg', 19, false, onlineOnly],
  ['PERC', 'GPppf', 5, false, oscillator],
  ['PERC', 'GPppr', 6, false, percTime],
  ['PERC', 'GPreh', 2, false, onlineOnly],
  ['PERC', 'GPsts', 4, false, percStatus],
  ['PERC', 'GPver', 4, false, percVersion],
  ['PGRMC', null, 0, false, null],
  ['PGRME', null, 7, false, pgrme],
  ['PGRMF', null, 15, false, pgrmf],
  ['PGRMM', null, 2, false, onlineOnly],
  ['PGRMT', null, 10, false, pgrmt],
  ['PGRMV', null, 4, false, pgrmv],
  ['PGRMZ', null, 4, false, pgrmz],
  ['ACCURACY', null, 1, true, onlineOnly],
  ['BWC', null, 12, false, bwc],
  ['DBT', null, 7, false, dbt],
  ['DPT', null, 4, false, dpt],
  ['DTM', null, 2, false, onlineOnly],
  ['GBS', null, 7, false, gbs],
  ['GGA', null, 13, false, gga],
  ['GLL', null, 7, true, gll],
  ['GNS', null, 13, false, gns],
  ['GRS', null, 4, false, grs],
  ['GSA', null, 18, false, gsa],
  ['GST', null, 8, false, gst],
  ['GSV', null, 4, false, gsv],
  ['GYOACC', null, 14, false, attitude],
  ['INFO', null, 14, false, onlineOnly],
  ['HDG', null, 0, false, hdg],
  ['HDM', null, 3, false, hdm],
  ['HDT', null, 1, false, hdt],
  ['MTW', null, 3, false, onlineOnly],
  ['MWD', null, 0, false, mwd],
  ['MWV', null, 0, false, mwv],
  ['PASHR', null, 3, false, pashr],
  ['PAIR001', null, 3, false, onlineOnly],
  ['PAIR010', null, 5, false, onlineOnly],
  ['PDTINFO', null, 6, false, onlineOnly],
  ['PGPSP', null, 18, false, pgpsp],
  ['PMGNST', null, 8, false, pmgnst],
  ['PMTK001', null, 3, false, onlineOnly],
  ['PMTK424', null, 3, false, onlineOnly],
  ['PMTK705', null, 4, false, onlineOnly],
  ['PQTMCFGEINSMSGERROR', null, 1, false, onlineOnly],
  ['PQTMCFGEINSMSGOK', null, 1, false, onlineOnly],
  ['PQTMCFGORIENTATIONERROR', null, 1, false, onlineOnly],
  ['PQTMCFGORIENTATIONOK', null, 1, false, onlineOnly],
  ['PQTMCFGWHEELTICKERROR', null, 1, false, onlineOnly],
  ['PQTMCFGWHEELTICKOK', null, 1, false, onlineOnly],
  ['PQTMGPS', null, 14, false, onlineOnly],
  ['PQTMIMU', null, 10, false, onlineOnly],
  ['PQTMINS', null, 11, false, onlineOnly],
  ['PQTMQMPTERROR', null, 1, false, onlineOnly],
  ['PQTMVER', null, 4, false, pqtmver],
  ['PQVERNO', null, 5, false, onlineOnly],
  ['PRHS ', null, 2, false, onlineOnly],
  ['PSRFEPE', null, 7, false, psrfepe],
  ['PSTI', '030', 16, false, psti030],
  ['PSTI', '032', 16, false, psti032],
  ['PSTI', '033', 27, false, psti033],
  ['PSTI', '035', 8, false, psti035],
  ['PSTI', '036', 2, false, psti036],
  ['PSTMCPU', null, 4, false, onlineOnly],
  ['PSTMANTENNASTATUS', null, 4, false, pstmAntenna],
  ['PSTMVER', null, 1, false, onlineOnly],
  ['PTNLRBA', null, 2, false, ptnlrba],
  ['PTNLRNM', null, 1, false, ptnlrnm],
  ['PTNLRTP', null, 3, false, onlineOnly],
  ['PTNLRXO', null, 2, false, onlineOnly],
  ['PTNTA', null, 8, false, ptnta],
  ['PTNTHTM', null, 9, false, attitude],
  ['RMC', null, 8, false, rmc],
  ['ROT', null, 3, false, rot],
  ['SNRSTAT', null, 5, false, snrstat],
  ['THS', null, 0, false, onlineOnly],
  ['TXT', null, 5, false, onlineOnly],
  ['VTG', null, 5, false, vtg],
  ['XDR', null, 5, false, xdr],
  ['ZDA', null, 4, false, zda],
];

export const RULES: readonly SentenceRule[] = SPECS.map(([name, subtype, minFields, continuesCycle, apply], i) => ({
  name,
  subtype,
  minFields,
  continuesCycle,
  apply,
  tag: i + 1,
}));

/** Rules by three-letter formatter, by whole address, and by address then subtype ($PERC, $PSTI). */
const BY_FORMATTER = new Map<string, SentenceRule>();
const BY_ADDRESS = new Map<string, SentenceRule>();
const BY_SUBTYPE = new Map<string, Map<string, SentenceRule>>();
for (const rule of RULES) {
  if (rule.subtype !== null) {
    const bySubtype = BY_SUBTYPE.get(rule.name) ?? new Map<string, SentenceRule>();
    if (!bySubtype.has(rule.subtype)) bySubtype.set(rule.subtype, rule);
    BY_SUBTYPE.set(rule.name, bySubtype);
  } else if (rule.name.length === 3) BY_FORMATTER.set(rule.name, rule);
  else if (!BY_ADDRESS.has(rule.name)) BY_ADDRESS.set(rule.name, rule);
}
/** Addresses already looked up (bounded: line noise with a valid checksum could invent many). */
const RESOLVED = new Map<string, SentenceRule | null>();
const RESOLVED_MAX = 512;

/**
 * The rule for a sentence, or null for one gpsd does not know. A whole
 * address is matched first ($PGRMC before RMC), then a three-letter
 * formatter after any two-letter talker.
 */
export function ruleFor(s: ParsedSentence): SentenceRule | null {
  const address = s.address;
  const known = RESOLVED.get(address);
  if (known !== undefined) return known;
  const bySubtype = BY_SUBTYPE.get(address);
  if (bySubtype) return bySubtype.get(s.fields.text(1)) ?? null;
  const rule = BY_ADDRESS.get(address) ?? (address.length === 5 ? BY_FORMATTER.get(address.slice(2)) : undefined) ?? null;
  if (RESOLVED.size < RESOLVED_MAX) RESOLVED.set(address, rule);
  return rule;
}
