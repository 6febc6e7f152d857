// The rules for the sentences that carry a position, its course and speed,
// or its date: GGA, RMC, GLL, GNS, VTG and ZDA (GSA and GSV, the satellites,
// are in satellite-sentences.ts). They follow gpsd's NMEA driver
// (driver_nmea0183.c) rule for rule, quirks included, because which sentence
// may set the mode and when a time counts decide whether busguard reports
// the positions gpsd reports. Each reads its decoded sentence
// (sentence-decoders.ts) and the raw fields where gpsd tests them.

import type { GgaSentence, GllSentence, GnsSentence, RmcSentence, VtgSentence, ZdaSentence } from './sentence-types.ts';
import * as fixState from './fix-state.ts';
import * as kit from './sentence-kit.ts';
import type { Apply } from './sentence-kit.ts';

// Local references for the per-sentence path (see nmea.ts on tsx's getter-based imports).
const { MODE_2D, MODE_3D, MODE_NO_FIX, SET, STATUS, hasAltitude } = fixState;
const { A, N, P, V, f, c0, within, faaStatus, mergeDecodedTime, mergeFieldDate, noteDecodedTimeOfDay, forgetDate } = kit;

/** GGA quality as a fix status; -1 when the field is empty or unknown. */
function ggaStatus(quality: number): number {
  switch (quality) {
    case 0:
      return STATUS.UNK;
    case 1:
      return STATUS.GPS;
    case 2:
      return STATUS.DGPS;
    case 3:
      return STATUS.PPS_FIX;
    case 4:
      return STATUS.RTK_FIX;
    case 5:
      return STATUS.RTK_FLT;
    case 6:
      return STATUS.DR;
    case 7:
      return STATUS.TIME;
    case 8:
      return STATUS.SIM;
    default:
      return -1;
  }
}

export const gga: Apply<GgaSentence> = (s, st) => {
  const nd = st.newdata;
  const address = s.address;
  const time = f(s, 1);
  let mask = SET.ONLINE;
  const previousTalker = st.gga.talker;
  st.gga.talker = address.charCodeAt(1);
  const status = ggaStatus(s.quality);
  if (s.quality === 0 && time === '') {
    // Quectel's $GPGGA,,,,,,0,,,,,,,,*66: no time at all, so no date either,
    // and the cycle detector starts over. (gpsd also asks for a report here,
    // but the quality below replaces that request: it is not kept.)
    forgetDate(st);
    st.cycleEndReliable = false;
  }
  // gpsd replaces (not extends) the mask here: what was set before is dropped.
  if (status >= 0) {
    nd.status = status;
    mask = SET.STATUS;
  }
  // A GGA that repeats the previous GGA's time is stale (Trimble Placer 450
  // keeps sending its last fix after losing lock), unless the talker changed
  // (SiRFstarV sends GPGGA and GLGGA in one cycle).
  st.gga.stale = previousTalker !== 0 && previousTalker !== st.gga.talker ? false : time === st.gga.timestamp;
  if (st.gga.stale) {
    nd.status = STATUS.UNK;
    nd.mode = MODE_NO_FIX;
    mask |= SET.MODE | SET.STATUS;
  } else {
    st.gga.timestamp = time.length > 15 ? time.slice(0, 15) : time;
  }
  st.gga.satsUsed = s.sats ?? 0;
  if (mergeDecodedTime(st, s.hhmmss, s.nanos)) {
    noteDecodedTimeOfDay(st, s.hhmmss, s.nanos);
    if (st.date.year !== 0) mask |= SET.TIME;
  }
  if (s.lat !== null && s.lon !== null) {
    nd.lat = s.lat;
    nd.lon = s.lon;
    nd.mode = MODE_2D;
    mask |= SET.LATLON;
    nd.geoidSep = s.geoidSepM ?? NaN;
    // SiRF before 2.2 sends no altitude: 2D at most. With an altitude and
    // four satellites it is a 3D fix even before any GSA says so.
    if (!s.fields.isEmpty(9)) {
      nd.altMSL = s.altM ?? NaN;
      mask |= SET.ALTITUDE;
      if (st.gga.satsUsed >= 4) nd.mode = MODE_3D;
    }
    // A GPS or combined GGA with fewer than three satellites is no fix (bn-9015).
    if (st.gga.satsUsed < 3 && address.charCodeAt(0) === 71 && (address.charCodeAt(1) === P || address.charCodeAt(1) === N)) {
      nd.mode = MODE_NO_FIX;
    }
  } else {
    nd.mode = MODE_NO_FIX;
  }
  mask |= SET.MODE;
  // BT-451 sends 99.99 and Skytraq 0.00 for "no DOP".
  const hdop = s.hdop ?? NaN;
  if (within(0.01, hdop, 89.99)) {
    st.dop.hdop = hdop;
    mask |= SET.DOP;
  }
  return mask;
};

export const rmc: Apply<RmcSentence> = (s, st) => {
  const nd = st.newdata;
  const count = s.fields.count;
  let mask = SET.ONLINE;
  if (s.status !== 'A') {
    nd.mode = MODE_NO_FIX;
    if (s.fields.isEmpty(1) || s.fields.isEmpty(9)) {
      // Quectel's $GPRMC,,V,,,,,,,,,,N*53: report at once, the cycle detector has nothing to go by.
      forgetDate(st);
      st.cycleEndReliable = false;
      mask |= SET.REPORT | SET.TIME;
    }
    return mask | SET.STATUS | SET.MODE;
  }
  // MTK-3301 and RGM-3800 send bogus times with status V, so only an A time counts.
  if (count > 9 && !s.fields.isEmpty(9) && mergeDecodedTime(st, s.hhmmss, s.nanos) && mergeFieldDate(st, s, 9)) {
    mask |= SET.TIME;
    noteDecodedTimeOfDay(st, s.hhmmss, s.nanos);
  }
  let status: number;
  if (s.lat !== null && s.lon !== null) {
    status = STATUS.GPS;
    nd.lat = s.lat;
    nd.lon = s.lon;
    mask |= SET.LATLON;
    // RMC does not say 2D or 3D: keep what the last fix was.
    if (st.lastfix.mode <= MODE_2D) nd.mode = MODE_2D;
    else if (st.lastfix.mode === MODE_3D) nd.mode = MODE_3D;
  } else {
    status = STATUS.UNK;
    nd.mode = MODE_NO_FIX;
  }
  mask |= SET.MODE;
  if (!s.fields.isEmpty(7)) {
    nd.speed = s.speedMps ?? NaN;
    mask |= SET.SPEED;
  }
  if (!s.fields.isEmpty(8)) {
    nd.track = s.trackDeg ?? NaN;
    mask |= SET.TRACK;
  }
  if (!s.fields.isEmpty(10) && !s.fields.isEmpty(11)) {
    let variation = s.fields.num(10);
    const side = s.fields.code(11);
    if (side === 87) variation = -variation;
    else if (side !== 69) variation = NaN;
    // Some receivers send 0.0,E for "unknown".
    if (!Number.isNaN(variation) && Math.abs(variation) > 0.09) {
      nd.magneticVar = variation;
      mask |= SET.MAGNETIC_TRACK;
    }
  }
  if (count > 12 && !s.fields.isEmpty(12)) status = faaStatus(s.fields.code(12));
  // Magellan EC-10X sends only RMC: four satellites or an altitude mean 3D.
  if (st.satellitesUsed > 3 || hasAltitude(st.fix)) nd.mode = MODE_3D;
  nd.status = status;
  return mask | SET.STATUS | SET.MODE;
};

export const gll: Apply<GllSentence> = (s, st) => {
  const nd = st.newdata;
  const count = s.fields.count;
  let mask = SET.ONLINE;
  if (mergeDecodedTime(st, s.hhmmss, s.nanos)) {
    noteDecodedTimeOfDay(st, s.hhmmss, s.nanos);
    if (st.date.year !== 0) mask = SET.TIME;
  }
  const valid = s.fields.code(6);
  if (s.fields.isEmpty(6) || valid === V) {
    nd.status = STATUS.UNK;
    nd.mode = MODE_NO_FIX;
  } else if (valid === A && (count < 8 || s.fields.code(7) !== N) && s.lat !== null && s.lon !== null) {
    nd.lat = s.lat;
    nd.lon = s.lon;
    mask |= SET.LATLON;
    const status = count >= 8 ? faaStatus(s.fields.code(7)) : STATUS.GPS;
    if (hasAltitude(st.fix) || st.satellitesUsed > 3) nd.mode = MODE_3D;
    else if (st.fix.mode < MODE_2D || !st.oldfix.hasAltitude) nd.mode = MODE_2D;
    nd.status = status;
  } else {
    nd.status = STATUS.UNK;
    nd.mode = MODE_NO_FIX;
  }
  return mask | SET.STATUS | SET.MODE;
};

export const gns: Apply<GnsSentence> = (s, st) => {
  const nd = st.newdata;
  let mask = SET.ONLINE;
  if (mergeDecodedTime(st, s.hhmmss, s.nanos)) {
    noteDecodedTimeOfDay(st, s.hhmmss, s.nanos);
    if (st.date.year !== 0) mask = SET.TIME;
  }
  // A GLONASS-only fix may be valid, but gpsd goes by the first (GPS) mode letter.
  if (s.modes === '' || c0(s.modes) === N) {
    nd.mode = MODE_NO_FIX;
    return mask | SET.MODE;
  }
  // NMEA 4.1 navigational status: unsafe or not valid is no fix data at all.
  if (s.navStatus === 'U' || s.navStatus === 'V') return mask;
  st.gga.satsUsed = s.sats ?? 0;
  if (s.lat !== null && s.lon !== null) {
    nd.lat = s.lat;
    nd.lon = s.lon;
    nd.mode = MODE_2D;
    mask |= SET.LATLON;
    if (!s.fields.isEmpty(9)) {
      nd.altMSL = s.altM ?? NaN;
      if (!Number.isNaN(nd.altMSL)) {
        mask |= SET.ALTITUDE;
        if (st.gga.satsUsed > 3) nd.mode = MODE_3D;
      }
      nd.geoidSep = s.geoidSepM ?? NaN;
    }
  } else {
    nd.mode = MODE_NO_FIX;
    mask |= SET.MODE;
  }
  if (!s.fields.isEmpty(8)) {
    st.dop.hdop = s.hdop ?? NaN;
    mask |= SET.DOP;
  }
  nd.status = faaStatus(c0(s.modes));
  return mask | SET.MODE | SET.STATUS;
};

export const vtg: Apply<VtgSentence> = (s, st) => {
  const nd = st.newdata;
  const count = s.fields.count;
  if (s.fields.isEmpty(1) || s.fields.isEmpty(5)) return SET.ONLINE;
  // Estimated or not valid: nothing to use.
  if (count > 9 && (s.mode === 'E' || s.mode === 'N')) return SET.ONLINE;
  let mask = SET.ONLINE | SET.TRACK | SET.SPEED;
  nd.track = s.trackDeg ?? NaN;
  if (!s.fields.isEmpty(3)) {
    nd.magneticTrack = s.magneticTrackDeg ?? NaN;
    mask |= SET.MAGNETIC_TRACK;
  }
  nd.speed = s.speedMps ?? NaN;
  return mask;
};

export const zda: Apply<ZdaSentence> = (s, st) => {
  // u-blox Antaris sends ZDA with blank fields before it has lock.
  if (s.fields.isEmpty(1) || s.fields.isEmpty(2) || s.fields.isEmpty(3) || s.fields.isEmpty(4)) return SET.ONLINE;
  if (!mergeDecodedTime(st, s.hhmmss, s.nanos)) return SET.ONLINE;
  if (s.year < 1900 || s.year > 2200 || s.month < 1 || s.month > 12 || s.day < 1 || s.day > 31) return SET.ONLINE;
  st.date.year = s.year;
  st.date.month = s.month;
  st.date.day = s.day;
  noteDecodedTimeOfDay(st, s.hhmmss, s.nanos);
  return SET.TIME;
};
