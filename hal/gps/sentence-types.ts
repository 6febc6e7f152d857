// The sentences the NMEA parser (nmea.ts) hands out: a checksum-verified
// sentence with its fields in place, decoded further for the sentences the
// fix assembler reads field by field (the typed sentences), or the reason
// there is none.

import type { NmeaFields, UtcDate } from './nmea-fields.ts';

export interface SentenceBase {
  /**
   * The sentence's fields as gpsd numbers them: 0 is the address as sent
   * ('GPGGA', 'PGRME', 'PSTI'), then every data field up to the '*'. A field
   * past the end reads as empty. Read in place: fields.text(i) for a string.
   */
  fields: NmeaFields;
  /** The address as sent: 'GPGGA', 'PGRME', 'PSTI'. */
  address: string;
  /** Two-letter talker ('GP', 'GN', 'BD', Quectel's 'PQ' in $PQGSA); 'P' for other proprietary sentences. */
  talker: string;
  /** 'GGA', 'RMC' ...; for a proprietary sentence the address after the 'P' ('GRME', 'STI'). */
  formatter: string;
}

/** UTC time of day of a sentence: the raw hhmmss and its fraction, as gpsd keeps them. */
export interface TimeOfDay {
  /** hh*10000 + mm*100 + ss, not range-checked; -1 when the field is empty or malformed. */
  hhmmss: number;
  /** Fraction of the second, nanoseconds. */
  nanos: number;
  /** Milliseconds since UTC midnight, or null when the time is missing or out of range. */
  timeOfDayMs: number | null;
}

export interface RmcSentence extends SentenceBase, TimeOfDay {
  type: 'RMC';
  /** 'A' data valid; 'V' warning, and anything else a receiver puts there, as gpsd reads it. */
  status: 'A' | 'V';
  /** NMEA 2.3+ FAA mode indicator (A, D, E, F, M, N, P, R, S), null before 2.3. */
  mode: string | null;
  lat: number | null;
  lon: number | null;
  speedMps: number | null;
  /** Course over ground as sent, degrees true. */
  trackDeg: number | null;
  date: UtcDate | null;
}

export interface GgaSentence extends SentenceBase, TimeOfDay {
  type: 'GGA';
  lat: number | null;
  lon: number | null;
  /** 0 invalid, 1 GPS, 2 DGPS, 3 PPS, 4 RTK, 5 float RTK, 6 dead reckoning, 7 manual, 8 simulator; -1 when empty. */
  quality: number;
  /** Satellites in use; null when empty. */
  sats: number | null;
  hdop: number | null;
  /** Antenna altitude above mean sea level, metres. */
  altM: number | null;
  /** Geoid height above the WGS84 ellipsoid, metres. */
  geoidSepM: number | null;
}

export interface GllSentence extends SentenceBase, TimeOfDay {
  type: 'GLL';
  lat: number | null;
  lon: number | null;
  /** 'A' valid, 'V' invalid, '' when the receiver (Garmin 65) sends none. */
  status: string;
  /** FAA mode indicator, NMEA 2.3+. */
  mode: string | null;
}

export interface GnsSentence extends SentenceBase, TimeOfDay {
  type: 'GNS';
  lat: number | null;
  lon: number | null;
  /** One FAA mode letter per constellation (GPS, GLONASS, Galileo, BeiDou, QZSS, NavIC). */
  modes: string;
  sats: number | null;
  hdop: number | null;
  altM: number | null;
  geoidSepM: number | null;
  /** NMEA 4.1 navigational status: S safe, C caution, U unsafe, V not valid; '' when absent. */
  navStatus: string;
}

export interface GsaSentence extends SentenceBase {
  type: 'GSA';
  /** 1 no fix, 2 2D, 3 3D; null when the field holds something else (Antaris 'E'). */
  fixMode: 1 | 2 | 3 | null;
  pdop: number | null;
  hdop: number | null;
  vdop: number | null;
}

export interface VtgSentence extends SentenceBase {
  type: 'VTG';
  trackDeg: number | null;
  magneticTrackDeg: number | null;
  speedMps: number | null;
  /** FAA mode indicator, NMEA 2.3+. */
  mode: string | null;
}

export interface ZdaSentence extends SentenceBase, TimeOfDay {
  type: 'ZDA';
  day: number;
  month: number;
  /** Four digits: ZDA is the one sentence that carries the century. */
  year: number;
}

/** Any other sentence: satellites in view, headings, proprietary status... Its fields are still there for the rules that need them. */
export interface OtherSentence extends SentenceBase {
  type: 'other';
}

/** An AIS report (!AIVDM, !AIVDO, $AIVDM): ships' transponders, mixed into some receivers' output. */
export interface AisSentence extends SentenceBase {
  type: 'AIS';
}

/**
 * The sentences the parser decodes into fields of their own (sentence-decoders.ts),
 * for the rules that read them (sentence-rules.ts has one entry for each).
 * A new one is an interface above, a member here, a decoder, a rule and its
 * entry in the table; the table does not compile until it has the entry.
 */
export type TypedSentence = RmcSentence | GgaSentence | GllSentence | GnsSentence | GsaSentence | VtgSentence | ZdaSentence;

export type ParsedSentence = TypedSentence | OtherSentence | AisSentence;

/** The typed sentences by their type ('GGA' → GgaSentence). */
export type TypedSentences = { [S in TypedSentence as S['type']]: S };

/** The formatters of the typed sentences: 'RMC', 'GGA', … */
export type TypedFormatter = keyof TypedSentences;

export interface NmeaError {
  /** What failed, on which input, and what to check. */
  error: string;
  /** 'checksum' is counted apart: many of them at once usually mean a wrong baud rate or a noisy line. */
  kind: 'checksum' | 'framing' | 'field';
}
