// The typed sentences' decoders: the fields the fix rules read, read once
// when the sentence is parsed (nmea.ts hands every checksum-verified sentence
// whose formatter has a decoder in the sentence table to it). Field content
// never rejects a sentence: what cannot be read is null, -1 or '' as each
// field says (sentence-types.ts), and the rules go by gpsd's reading of it.
//
// Each decoder is one object literal, so the fields every typed sentence has
// (its address, time of day, position) are listed again in each: measured
// with `npm run bench -- gps-parse`, the literals parse 2.4-2.9 times as
// fast as the faster peer, classes sharing a base constructor 1.6-1.9 times
// and object spreads of a shared part 0.7 times (target 2). The rules for
// reading those fields live once, in nmea-fields.ts.

import * as fieldRules from './nmea-fields.ts';
import type { NmeaFields } from './nmea-fields.ts';
import type { GgaSentence, GllSentence, GnsSentence, GsaSentence, RmcSentence, VtgSentence, ZdaSentence } from './sentence-types.ts';

// Local references for the per-sentence path (see nmea.ts on tsx's getter-based imports).
const { KNOTS_TO_MPS, timeOfDayMs } = fieldRules;

function oneChar(f: NmeaFields, i: number): string | null {
  return f.isEmpty(i) ? null : String.fromCharCode(f.code(i));
}

function letter(f: NmeaFields, i: number): string {
  return f.isEmpty(i) ? '' : String.fromCharCode(f.code(i));
}

// RMC (NMEA 0183 v2.0, v2.3 adds 12 = mode, v4.1 adds 13 = nav status):
// 1 time, 2 status, 3 lat, 4 N/S, 5 lon, 6 E/W, 7 speed kn, 8 course true,
// 9 date ddmmyy, 10 magvar, 11 magvar E/W.
export function decodeRmc(f: NmeaFields, address: string): RmcSentence {
  const six = f.hhmmss(1);
  const nanos = f.nanos(1);
  const pos = f.latLon(3);
  const knots = f.num(7);
  return {
    type: 'RMC',
    talker: address.slice(0, 2),
    formatter: 'RMC',
    address,
    fields: f,
    hhmmss: six,
    nanos,
    timeOfDayMs: timeOfDayMs(six, nanos),
    status: f.code(2) === 65 ? 'A' : 'V',
    mode: oneChar(f, 12),
    lat: pos?.lat ?? null,
    lon: pos?.lon ?? null,
    speedMps: Number.isNaN(knots) ? null : knots * KNOTS_TO_MPS,
    trackDeg: f.optionalNum(8),
    date: f.ddmmyy(9),
  };
}

// GGA: 1 time, 2 lat, 3 N/S, 4 lon, 5 E/W, 6 quality, 7 sats in use,
// 8 hdop, 9 altitude MSL, 10 'M', 11 geoid separation, 12 'M', 13 DGPS age, 14 station.
export function decodeGga(f: NmeaFields, address: string): GgaSentence {
  const six = f.hhmmss(1);
  const nanos = f.nanos(1);
  const pos = f.latLon(2);
  return {
    type: 'GGA',
    talker: address.slice(0, 2),
    formatter: 'GGA',
    address,
    fields: f,
    hhmmss: six,
    nanos,
    timeOfDayMs: timeOfDayMs(six, nanos),
    lat: pos?.lat ?? null,
    lon: pos?.lon ?? null,
    quality: f.isEmpty(6) ? -1 : f.int(6),
    sats: f.isEmpty(7) ? null : f.int(7),
    hdop: f.optionalNum(8),
    altM: f.optionalNum(9),
    geoidSepM: f.optionalNum(11),
  };
}

// GLL: 1 lat, 2 N/S, 3 lon, 4 E/W, 5 time, 6 status, 7 FAA mode (NMEA 2.3+).
export function decodeGll(f: NmeaFields, address: string): GllSentence {
  const six = f.hhmmss(5);
  const nanos = f.nanos(5);
  const pos = f.latLon(1);
  return {
    type: 'GLL',
    talker: address.slice(0, 2),
    formatter: 'GLL',
    address,
    fields: f,
    hhmmss: six,
    nanos,
    timeOfDayMs: timeOfDayMs(six, nanos),
    lat: pos?.lat ?? null,
    lon: pos?.lon ?? null,
    status: letter(f, 6),
    mode: oneChar(f, 7),
  };
}

// GNS: 1 time, 2 lat, 3 N/S, 4 lon, 5 E/W, 6 mode letters, 7 sats, 8 hdop,
// 9 altitude MSL, 10 geoid separation, 11 DGPS age, 12 station, 13 nav status (4.1+).
export function decodeGns(f: NmeaFields, address: string): GnsSentence {
  const six = f.hhmmss(1);
  const nanos = f.nanos(1);
  const pos = f.latLon(2);
  return {
    type: 'GNS',
    talker: address.slice(0, 2),
    formatter: 'GNS',
    address,
    fields: f,
    hhmmss: six,
    nanos,
    timeOfDayMs: timeOfDayMs(six, nanos),
    lat: pos?.lat ?? null,
    lon: pos?.lon ?? null,
    modes: f.text(6),
    sats: f.isEmpty(7) ? null : f.int(7),
    hdop: f.optionalNum(8),
    altM: f.optionalNum(9),
    geoidSepM: f.optionalNum(10),
    navStatus: letter(f, 13),
  };
}

// GSA: 1 selection (M/A), 2 mode (1/2/3), 3-14 PRNs used (more on some
// receivers), then PDOP, HDOP, VDOP, and from NMEA 4.10 the system id.
export function decodeGsa(f: NmeaFields, address: string): GsaSentence {
  const mode = f.int(2);
  return {
    type: 'GSA',
    talker: address.slice(0, 2),
    formatter: 'GSA',
    address,
    fields: f,
    fixMode: mode === 1 || mode === 2 || mode === 3 ? mode : null,
    pdop: f.optionalNum(15),
    hdop: f.optionalNum(16),
    vdop: f.optionalNum(17),
  };
}

// VTG: 1 course true, 2 'T', 3 course magnetic, 4 'M', 5 speed kn, 6 'N',
// 7 speed km/h, 8 'K', 9 FAA mode (NMEA 2.3+).
export function decodeVtg(f: NmeaFields, address: string): VtgSentence {
  const knots = f.num(5);
  return {
    type: 'VTG',
    talker: address.slice(0, 2),
    formatter: 'VTG',
    address,
    fields: f,
    trackDeg: f.optionalNum(1),
    magneticTrackDeg: f.optionalNum(3),
    speedMps: Number.isNaN(knots) ? null : knots * KNOTS_TO_MPS,
    mode: oneChar(f, 9),
  };
}

// ZDA: 1 time, 2 day, 3 month, 4 year (four digits), 5-6 local zone.
export function decodeZda(f: NmeaFields, address: string): ZdaSentence {
  const six = f.hhmmss(1);
  const nanos = f.nanos(1);
  return {
    type: 'ZDA',
    talker: address.slice(0, 2),
    formatter: 'ZDA',
    address,
    fields: f,
    hhmmss: six,
    nanos,
    timeOfDayMs: timeOfDayMs(six, nanos),
    day: f.int(2),
    month: f.int(3),
    year: f.int(4),
  };
}
