// gps-agreement: how far each NMEA reader agrees with gpsd on the GPS corpus
// (68 receivers, test/fixtures/gps-corpus): per reader the three figures of
// hal/gps/conformance.ts, summed over all captures:
//   *_matched_pct  share of gpsd's distinct 2D/3D positions the reader reports
//   *_invented     positions the reader reports that gpsd never does
//   *_time_pct     share of gpsd's timed fixes the reader has at the same
//                  time with the same position and 2D/3D mode
// Readers:
//   busguard     hal/gps/replay.ts (the live reader's parser and assembler)
//   nmea_simple  nmea-simple's parseNmeaSentence, through the adapter below
//   gps          GPS.js's GPS.Parse, through the adapter below
//
// The npm adapters do what a user of each library naturally does: feed
// every line, and take a position from each GGA, RMC, GLL or GNS whose
// status or quality says "valid" and that has a latitude and longitude.
// The mode is the last GSA's 2D/3D when one was seen, else 3D for a GGA or
// GNS with an altitude and 2D otherwise. The time is the sentence's own
// date and time for RMC (and ZDA's date), and for the time-only sentences
// (GGA, GLL, GNS) their time of day on the last date the library reported:
// both libraries would otherwise stamp them with the computer's date.
//
// What the npm parsers get wrong against gpsd, on this corpus:
// - no reporting cycle: every GGA/GLL/RMC position is a fix, so positions
//   gpsd overwrites within a cycle before reporting are reported (a 5-decimal
//   GGA and a 4-decimal GLL of the same second), and so are GGAs with
//   quality 1 but no satellites (gpsd: no fix below 3) and a demo-mode
//   receiver's simulated fixes: 124 invented positions;
// - the '$$' prefix (ST Teseo) and junk before '$' are refused (nmea-simple
//   checksums them; GPS.js takes '$$GNGSA' for a sentence "NGSA");
// - nmea-simple drops RMC milliseconds written with three decimals, and
//   takes Quectel's $PQGSA for an unknown proprietary sentence; GPS.js
//   throws on a GGA with one field more or less than it expects and on a
//   NMEA 2.0 VTG without unit letters;
// - 2D/3D only from GSA, so an RMC that opens a cycle is 2D where gpsd keeps
//   3D; GGA positions with quality 0 that gpsd still reports (it goes by
//   satellites and altitude) are dropped; proprietary positions ($PERC) unknown.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import GPS from 'gps';
import { type Packet, parseNmeaSentence } from 'nmea-simple';
import { type Agreement, type ReportedFix, agreement, gpsfakeFeed, matchedPct, parseChk, sumAgreements, timePct } from '../../hal/gps/conformance.ts';
import { replayNmea } from '../../hal/gps/replay.ts';
import { CORPUS_DIR, corpusLogs } from '../../test/helpers/corpus.ts';

type Reader = (log: string) => ReportedFix[];

/** Date part (UTC midnight, ms) of a library's Date, or null when it has none. */
function midnightOf(d: Date | null | undefined): number | null {
  if (!d || Number.isNaN(d.getTime())) return null;
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
}

/** Time of day (ms since midnight) of a library's Date. */
function timeOfDayOf(d: Date): number {
  return ((d.getUTCHours() * 60 + d.getUTCMinutes()) * 60 + d.getUTCSeconds()) * 1000 + d.getUTCMilliseconds();
}

/** The lines of a capture as a library user feeds them: comments dropped, line ends stripped. */
function lines(log: string): string[] {
  return log
    .split('\n')
    .map((l) => l.replace(/\r+$/, ''))
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/**
 * One sentence as a library reports it, in the terms the user's rules need:
 * a GSA's 2D/3D mode, a date (ZDA, RMC), a position the library calls valid
 * with whether it has an altitude, and the sentence's time.
 */
interface Said {
  type: 'GSA' | 'ZDA' | 'RMC' | 'GGA' | 'GLL' | 'GNS';
  gsaMode?: 2 | 3 | null;
  time?: Date | null;
  position?: { lat: number; lon: number; altitude: boolean } | null;
}

/**
 * What a user of a library does with its sentences, the same for both
 * libraries: keep the last GSA mode and the last date, and take each valid
 * position with the mode (GSA's, else 3D with an altitude) and the time (its
 * own for RMC; the time of day on the last date for GGA, GLL and GNS).
 */
function readWith(say: (line: string) => Said | null): Reader {
  return (log) => {
    let gsaMode: 2 | 3 | null = null;
    let date: number | null = null;
    const out: ReportedFix[] = [];
    for (const line of lines(log)) {
      const s = say(line);
      if (!s) continue;
      if (s.type === 'GSA') gsaMode = s.gsaMode ?? null;
      else if (s.type === 'ZDA') date = midnightOf(s.time);
      else if (s.type === 'RMC') date = midnightOf(s.time) ?? date;
      const pos = s.position;
      if (!pos || !Number.isFinite(pos.lat) || !Number.isFinite(pos.lon)) continue;
      const timeOnly = s.type !== 'RMC';
      let time: Date | null = null;
      if (s.time && !Number.isNaN(s.time.getTime())) {
        if (!timeOnly) time = s.time;
        else if (date !== null) time = new Date(date + timeOfDayOf(s.time));
      }
      out.push({ lat: pos.lat, lon: pos.lon, mode: gsaMode ?? (pos.altitude ? 3 : 2), time });
    }
    return out;
  };
}

/** nmea-simple's packets; a sentence it refuses (bad or missing checksum, unknown, '$$' prefix) says nothing. */
const nmeaSimpleReader = readWith((line) => {
  let p: Packet;
  try {
    p = parseNmeaSentence(line);
  } catch {
    return null;
  }
  const at = (lat: number, lon: number, altitude: number) => ({ lat, lon, altitude: !Number.isNaN(altitude) });
  switch (p.sentenceId) {
    case 'GSA':
      return { type: 'GSA', gsaMode: p.fixMode === '3D' ? 3 : p.fixMode === '2D' ? 2 : null };
    case 'ZDA':
      return { type: 'ZDA', time: p.datetime };
    case 'RMC':
      return { type: 'RMC', time: p.datetime, position: p.status === 'valid' ? at(p.latitude, p.longitude, Number.NaN) : null };
    case 'GGA':
      return { type: 'GGA', time: p.time, position: p.fixType !== 'none' ? at(p.latitude, p.longitude, p.altitudeMeters) : null };
    case 'GLL':
      return { type: 'GLL', time: p.time, position: p.status === 'valid' ? at(p.latitude, p.longitude, Number.NaN) : null };
    case 'GNS': {
      const valid = p.modeIndicator !== '' && !p.modeIndicator.startsWith('N');
      return { type: 'GNS', time: p.time, position: valid ? at(p.latitude, p.longitude, p.altitudeMeters) : null };
    }
    default:
      return null;
  }
});

/** GPS.js's parsed sentences; one it throws on (field count, talker), an unknown one or a bad checksum says nothing. */
const gpsReader = readWith((line) => {
  let p: ReturnType<typeof GPS.Parse>;
  try {
    p = GPS.Parse(line);
  } catch {
    return null;
  }
  if (!p || !p.valid) return null;
  const at = (valid: boolean, lat: number | null, lon: number | null, altitude: boolean) => (valid && lat !== null && lon !== null ? { lat, lon, altitude } : null);
  switch (p.type) {
    case 'GSA':
      return { type: 'GSA', gsaMode: p.fix === '3D' ? 3 : p.fix === '2D' ? 2 : null };
    case 'ZDA':
      return { type: 'ZDA', time: p.time };
    case 'RMC':
      return { type: 'RMC', time: p.time, position: at(p.status === 'active', p.lat, p.lon, false) };
    case 'GGA':
      return { type: 'GGA', time: p.time, position: at(p.quality !== null, p.lat, p.lon, p.alt !== null) };
    case 'GLL':
      return { type: 'GLL', time: p.time, position: at(p.status === 'active', p.lat, p.lon, false) };
    case 'GNS':
      return { type: 'GNS', time: p.time, position: at(p.mode !== '' && !p.mode.startsWith('N'), p.lat, p.lon, p.alt !== null) };
    default:
      return null;
  }
});

const READERS: Record<string, Reader> = {
  busguard: (log) => replayNmea(log),
  nmea_simple: nmeaSimpleReader,
  gps: gpsReader,
};

/** Every reader's figures on every capture of the corpus. */
export function corpusAgreement(dir = CORPUS_DIR): Record<string, { total: Agreement; perLog: Record<string, Agreement> }> {
  const result: Record<string, { total: Agreement; perLog: Record<string, Agreement> }> = {};
  for (const name of Object.keys(READERS)) result[name] = { total: sumAgreements([]), perLog: {} };
  for (const log of corpusLogs()) {
    const gpsd = parseChk(readFileSync(join(dir, `${log}.chk`), 'latin1'));
    const fed = gpsfakeFeed(readFileSync(join(dir, log), 'latin1'));
    for (const [name, read] of Object.entries(READERS)) {
      (result[name] as { perLog: Record<string, Agreement> }).perLog[log] = agreement(gpsd, read(fed));
    }
  }
  for (const r of Object.values(result)) r.total = sumAgreements(Object.values(r.perLog));
  return result;
}

export async function run(): Promise<Record<string, unknown>> {
  const all = corpusAgreement();
  const logs = corpusLogs().length;
  const out: Record<string, unknown> = { bench: 'gps-agreement', logs };
  for (const [name, { total, perLog }] of Object.entries(all)) {
    out[`${name}_matched_pct`] = matchedPct(total);
    out[`${name}_invented`] = total.invented;
    out[`${name}_time_pct`] = timePct(total);
    const agreeing = Object.values(perLog).filter((a) => a.matched === a.gpsdPositions && a.invented === 0 && a.timeAgreed === a.timed).length;
    out[`${name}_agreeing_logs`] = agreeing;
    process.stderr.write(
      `${name}: ${total.matched}/${total.gpsdPositions} positions, ${total.invented} invented, ${total.timeAgreed}/${total.timed} timed fixes; ${agreeing}/${logs} captures in full agreement\n`,
    );
  }
  return out;
}
