// The one table of the sentences busguard knows, as gpsd's NMEA driver lists
// them: for each, how many fields it needs, whether it continues a
// reporting cycle, and its rule (fix-sentences.ts, satellite-sentences.ts,
// other-sentences.ts); for a typed sentence also its decoder
// (sentence-decoders.ts), which the parser (nmea.ts) takes from here.
// Sentences gpsd lists without decoding them (RMB, XTE, $PUBX ...) behave
// exactly like unknown ones and are left out, except $PGRMC, which must not
// be read as an RMC. A new receiver sentence is a rule plus one entry here.
//
// The table is checked by the compiler: every typed sentence
// (sentence-types.ts) must have an entry under its own formatter, with a
// decoder that makes that sentence and a rule that reads it; a rule for
// another sentence, a missing entry or a name given twice does not compile.
// The assembler looks up a typed sentence's rule by its type, so the rule
// gets the decoded fields without a cast.

import type { NmeaFields } from './nmea-fields.ts';
import type { OtherSentence, SentenceBase, TypedFormatter, TypedSentence, TypedSentences } from './sentence-types.ts';
import * as decoders from './sentence-decoders.ts';
import * as fix from './fix-sentences.ts';
import * as satellites from './satellite-sentences.ts';
import * as other from './other-sentences.ts';
import type { Apply } from './sentence-kit.ts';

const { decodeGga, decodeGll, decodeGns, decodeGsa, decodeRmc, decodeVtg, decodeZda } = decoders;
const { gga, rmc, gll, gns, vtg, zda } = fix;
const { gsa, gsv } = satellites;
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

/** A sentence's entry. S is the sentence its rule reads. */
export interface SentenceRule<S extends SentenceBase = OtherSentence> {
  /** Fewest fields, address included, for the sentence to be read at all. */
  readonly minFields: number;
  /** Continues a cycle after its time-stamped sentences (GLL on Garmin 48 and Magellan Triton). */
  readonly continuesCycle: boolean;
  /** The rule; null for a sentence that is recognised but deliberately ignored. */
  readonly apply: Apply<S> | null;
  /** Position in the table, from 1: its identity for the cycle-end bookkeeping. */
  readonly tag: number;
}

/** The parser's decoder for a typed sentence: its fields read once, when it is parsed. */
export type Decoder<S extends TypedSentence> = (fields: NmeaFields, address: string) => S;

/** A typed sentence's entry: its decoder, and a rule that reads what the decoder made. */
export interface TypedRule<S extends TypedSentence> extends SentenceRule<S> {
  readonly apply: Apply<S>;
  readonly decode: Decoder<S>;
}

/** A proprietary address whose first data field says what it is ($PERC,GPppr; $PSTI,030): an entry per subtype. */
interface BySubtype {
  readonly subtypes: Readonly<Record<string, SentenceRule>>;
}

/** What an entry must be: a typed sentence's entry under its own formatter; a rule, or rules by subtype, for any other name. */
type Checked<T> = { readonly [K in keyof T]: K extends TypedFormatter ? TypedRule<TypedSentences[K]> : SentenceRule | BySubtype };

/** The table, checked entry by entry against its key. */
function table<T extends Checked<T>>(entries: T): T {
  return entries;
}

// Tags are handed out in the order the entries are written.
let tags = 0;

function rule(minFields: number, apply: Apply | null, continuesCycle = false): SentenceRule {
  return { minFields, continuesCycle, apply, tag: ++tags };
}

function typed<S extends TypedSentence>(minFields: number, decode: Decoder<S>, apply: Apply<S>, continuesCycle = false): TypedRule<S> {
  return { minFields, continuesCycle, apply, decode, tag: ++tags };
}

function bySubtype(subtypes: Record<string, SentenceRule>): BySubtype {
  return { subtypes };
}

/** The sentence comes after the time-stamped ones of its cycle and ends it (GLL on Garmin 48 and Magellan Triton). */
const CONTINUES_CYCLE = true;

/**
 * Keyed by a three-letter formatter (any talker: 'GGA') or a whole address
 * ('PGRME'); a whole address is matched first. In gpsd's order.
 */
const SENTENCES = table({
  PGLOR: rule(2, onlineOnly),
  PERC: bySubtype({
    FWsts: rule(6, onlineOnly),
    GPavp: rule(6, percAveragedPosition),
    GPctr: rule(6, onlineOnly),
    GPdbg: rule(19, onlineOnly),
    GPppf: rule(5, oscillator),
    GPppr: rule(6, percTime),
    GPreh: rule(2, onlineOnly),
    GPsts: rule(4, percStatus),
    GPver: rule(4, percVersion),
  }),
  PGRMC: rule(0, null), // Garmin's configuration echo: known, so that it is not read as an RMC
  PGRME: rule(7, pgrme),
  PGRMF: rule(15, pgrmf),
  PGRMM: rule(2, onlineOnly),
  PGRMT: rule(10, pgrmt),
  PGRMV: rule(4, pgrmv),
  PGRMZ: rule(4, pgrmz),
  ACCURACY: rule(1, onlineOnly, CONTINUES_CYCLE),
  BWC: rule(12, bwc),
  DBT: rule(7, dbt),
  DPT: rule(4, dpt),
  DTM: rule(2, onlineOnly),
  GBS: rule(7, gbs),
  GGA: typed(13, decodeGga, gga),
  GLL: typed(7, decodeGll, gll, CONTINUES_CYCLE),
  GNS: typed(13, decodeGns, gns),
  GRS: rule(4, grs),
  GSA: typed(18, decodeGsa, gsa),
  GST: rule(8, gst),
  GSV: rule(4, gsv),
  GYOACC: rule(14, attitude),
  INFO: rule(14, onlineOnly),
  HDG: rule(0, hdg),
  HDM: rule(3, hdm),
  HDT: rule(1, hdt),
  MTW: rule(3, onlineOnly),
  MWD: rule(0, mwd),
  MWV: rule(0, mwv),
  PASHR: rule(3, pashr),
  PAIR001: rule(3, onlineOnly),
  PAIR010: rule(5, onlineOnly),
  PDTINFO: rule(6, onlineOnly),
  PGPSP: rule(18, pgpsp),
  PMGNST: rule(8, pmgnst),
  PMTK001: rule(3, onlineOnly),
  PMTK424: rule(3, onlineOnly),
  PMTK705: rule(4, onlineOnly),
  PQTMCFGEINSMSGERROR: rule(1, onlineOnly),
  PQTMCFGEINSMSGOK: rule(1, onlineOnly),
  PQTMCFGORIENTATIONERROR: rule(1, onlineOnly),
  PQTMCFGORIENTATIONOK: rule(1, onlineOnly),
  PQTMCFGWHEELTICKERROR: rule(1, onlineOnly),
  PQTMCFGWHEELTICKOK: rule(1, onlineOnly),
  PQTMGPS: rule(14, onlineOnly),
  PQTMIMU: rule(10, onlineOnly),
  PQTMINS: rule(11, onlineOnly),
  PQTMQMPTERROR: rule(1, onlineOnly),
  PQTMVER: rule(4, pqtmver),
  PQVERNO: rule(5, onlineOnly),
  'PRHS ': rule(2, onlineOnly),
  PSRFEPE: rule(7, psrfepe),
  PSTI: bySubtype({
    '030': rule(16, psti030),
    '032': rule(16, psti032),
    '033': rule(27, psti033),
    '035': rule(8, psti035),
    '036': rule(2, psti036),
  }),
  PSTMCPU: rule(4, onlineOnly),
  PSTMANTENNASTATUS: rule(4, pstmAntenna),
  PSTMVER: rule(1, onlineOnly),
  PTNLRBA: rule(2, ptnlrba),
  PTNLRNM: rule(1, ptnlrnm),
  PTNLRTP: rule(3, onlineOnly),
  PTNLRXO: rule(2, onlineOnly),
  PTNTA: rule(8, ptnta),
  PTNTHTM: rule(9, attitude),
  RMC: typed(8, decodeRmc, rmc),
  ROT: rule(3, rot),
  SNRSTAT: rule(5, snrstat),
  THS: rule(0, onlineOnly),
  TXT: rule(5, onlineOnly),
  VTG: typed(5, decodeVtg, vtg),
  XDR: rule(5, xdr),
  ZDA: typed(4, decodeZda, zda),
});

/** Every typed sentence has its entry: one missing from the table fails to compile here. */
const TYPED: { readonly [K in TypedFormatter]: TypedRule<TypedSentences[K]> } = SENTENCES;

/** How many tags the table hands out (the cycle-end bookkeeping sizes its array by it). */
export const RULE_COUNT = tags;

/** The rule of a typed sentence, by its type: the rule reads the sentence the parser decoded. */
export function typedRule<K extends TypedFormatter>(type: K): TypedRule<TypedSentences[K]> {
  return TYPED[type];
}

/** Names of whole addresses in the table ('PGRMC', 'PSTI'), not formatters. */
const WHOLE_ADDRESSES = Object.keys(SENTENCES).filter((name) => name.length !== 3);

/**
 * The typed sentences' decoders for the parser, by formatter, each with the
 * whole addresses in the table that end in that formatter and so are not
 * that sentence ($PGRMC is no RMC).
 */
export const TYPED_DECODERS: readonly { formatter: string; decode: Decoder<TypedSentence>; shadowedBy: readonly string[] }[] = Object.entries(SENTENCES).flatMap(
  ([formatter, entry]) => ('decode' in entry ? [{ formatter, decode: entry.decode, shadowedBy: WHOLE_ADDRESSES.filter((a) => a.length === 5 && a.endsWith(formatter)) }] : []),
);

/** Rules of the other sentences by three-letter formatter, by whole address, and by address then subtype ($PERC, $PSTI). */
const BY_FORMATTER = new Map<string, SentenceRule>();
const BY_ADDRESS = new Map<string, SentenceRule>();
const BY_SUBTYPE = new Map<string, Map<string, SentenceRule>>();
for (const [name, entry] of Object.entries(SENTENCES)) {
  if ('subtypes' in entry) BY_SUBTYPE.set(name, new Map(Object.entries(entry.subtypes)));
  else if ('decode' in entry) continue; // typed: the assembler finds its rule by the sentence's type
  else if (name.length === 3) BY_FORMATTER.set(name, entry);
  else BY_ADDRESS.set(name, entry);
}
/** Addresses already looked up (bounded: line noise with a valid checksum could invent many). */
const RESOLVED = new Map<string, SentenceRule | null>();
const RESOLVED_MAX = 512;

/**
 * The rule for a sentence the parser did not type, or null for one gpsd
 * does not know. A whole address is matched first ($PGRMC before RMC), then
 * a three-letter formatter after any two-letter talker.
 */
export function ruleFor(s: OtherSentence): SentenceRule | null {
  const address = s.address;
  const known = RESOLVED.get(address);
  if (known !== undefined) return known;
  const bySubtype = BY_SUBTYPE.get(address);
  if (bySubtype) return bySubtype.get(s.fields.text(1)) ?? null;
  const rule = BY_ADDRESS.get(address) ?? (address.length === 5 ? BY_FORMATTER.get(address.slice(2)) : undefined) ?? null;
  if (RESOLVED.size < RESOLVED_MAX) RESOLVED.set(address, rule);
  return rule;
}
