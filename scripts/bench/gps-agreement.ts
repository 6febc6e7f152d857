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

/** Tracks what a user of a library keeps between sentences: the last GSA mode and the last date. */
class UserState {
  gsaMode: 2 | 3 | null = null;
  date: number | null = null;

  fix(lat: number, lon: number, mode: number, time: Date | null, timeOnly: boolean): ReportedFix {
    let t: Date | null = null;
    if (time && !Number.isNaN(time.getTime())) {
      if (!timeOnly) t = time;
      else if (this.date !== null) t = new Date(this.date + timeOfDayOf(time));
    }
    return { lat, lon, mode: this.gsaMode ?? mode, time: t };
  }
}

const nmeaSimpleReader: Reader = (log) => {
  const user = new UserState();
  const out: ReportedFix[] = [];
  for (const line of lines(log)) {
    let p: Packet;
    try {
      p = parseNmeaSentence(line);
    } catch {
      continue; // refused: bad or missing checksum, unknown sentence, '$$' prefix
    }
    switch (p.sentenceId) {
      case 'GSA':
        user.gsaMode = p.fixMode === '3D' ? 3 : p.fixMode === '2D' ? 2 : null;
        break;
      case 'ZDA':
        user.date = midnightOf(p.datetime);
        break;
      case 'RMC':
        user.date = midnightOf(p.datetime) ?? user.date;
        if (p.status === 'valid') out.push(user.fix(p.latitude, p.longitude, 2, p.datetime, false));
        break;
      case 'GGA':
        if (p.fixType !== 'none') out.push(user.fix(p.latitude, p.longitude, Number.isNaN(p.altitudeMeters) ? 2 : 3, p.time, true));
        break;
      case 'GLL':
        if (p.status === 'valid') out.push(user.fix(p.latitude, p.longitude, 2, p.time, true));
        break;
      case 'GNS':
        if (p.modeIndicator !== '' && !p.modeIndicator.startsWith('N')) {
          out.push(user.fix(p.latitude, p.longitude, Number.isNaN(p.altitudeMeters) ? 2 : 3, p.time, true));
        }
        break;
      default:
        break;
    }
  }
  return out.filter((f) => Number.isFinite(f.lat) && Number.isFinite(f.lon));
};

const gpsReader: Reader = (log) => {
  const user = new UserState();
  const out: ReportedFix[] = [];
  for (const line of lines(log)) {
    let p: ReturnType<typeof GPS.Parse>;
    try {
      p = GPS.Parse(line);
    } catch {
      continue; // a sentence shape it refuses (field count, talker)
    }
    if (!p || !p.valid) continue; // unknown sentence or bad checksum
    switch (p.type) {
      case 'GSA':
        user.gsaMode = p.fix === '3D' ? 3 : p.fix === '2D' ? 2 : null;
        break;
      case 'ZDA':
        user.date = midnightOf(p.time);
        break;
      case 'RMC':
        user.date = midnightOf(p.time) ?? user.date;
        if (p.status === 'active' && p.lat !== null && p.lon !== null) out.push(user.fix(p.lat, p.lon, 2, p.time, false));
        break;
      case 'GGA':
        if (p.quality !== null && p.lat !== null && p.lon !== null) out.push(user.fix(p.lat, p.lon, p.alt === null ? 2 : 3, p.time, true));
        break;
      case 'GLL':
        if (p.status === 'active' && p.lat !== null && p.lon !== null) out.push(user.fix(p.lat, p.lon, 2, p.time, true));
        break;
      case 'GNS':
        if (p.mode !== '' && !p.mode.startsWith('N') && p.lat !== null && p.lon !== null) {
          out.push(user.fix(p.lat, p.lon, p.alt === null ? 2 : 3, p.time, true));
        }
        break;
      default:
        break;
    }
  }
  return out;
};

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
