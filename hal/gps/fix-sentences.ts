// The rules for the sentences that carry a fix: GGA, RMC, GLL, GNS (the
// position), GSA (mode, satellites used, DOPs), GSV (the sky, which also
// decides where a cycle ends), VTG (course and speed) and ZDA (the date).
// They follow gpsd's NMEA driver (driver_nmea0183.c) rule for rule, quirks
// included, because which sentence may set the mode and when a time counts
// decide whether busguard reports the positions gpsd reports.

import type { GgaSentence, GllSentence, GnsSentence, GsaSentence, RmcSentence, VtgSentence, ZdaSentence } from './nmea.ts';
import * as fixState from './fix-state.ts';
import * as receiverState from './receiver-state.ts';
import * as kit from './sentence-kit.ts';
import type { Apply } from './sentence-kit.ts';

// Local references for the per-sentence path (see nmea.ts on tsx's getter-based imports).
const { MODE_2D, MODE_3D, MODE_NO_FIX, SET, STATUS, hasAltitude } = fixState;
const { MAX_CHANNELS, zeroSatellites } = receiverState;
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

export const gga: Apply = (sentence, st) => {
  const s = sentence as GgaSentence;
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

export const rmc: Apply = (sentence, st) => {
  const s = sentence as RmcSentence;
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

export const gll: Apply = (sentence, st) => {
  const s = sentence as GllSentence;
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

export const gns: Apply = (sentence, st) => {
  const s = sentence as GnsSentence;
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

/**
 * PRN of a GSA satellite number, 0 when it means nothing: NMEA 2.x-4.0 uses
 * number ranges per constellation (GPS 1-32, SBAS 33-64, GLONASS 65-96 ...),
 * NMEA 4.10 adds a system id, and receivers add quirks of their own. Only
 * the count of distinct satellites matters here (four make a 3D fix).
 */
function satellitePrn(address: string, n: number, system: number): number {
  if (n < 1) return 0;
  if (system > 0) {
    switch (system) {
      case 1: // GPS 1-32, SBAS 33-64 and 152-157, QZSS 193-199; Quectel puts Galileo (101-136) and BeiDou (201-264) here too
        return n < 137 || (n >= 152 && n < 158) || (n >= 193 && n < 265) ? n : 0;
      case 2: // GLONASS, 1-64 or 65-96
        return 64 + (n < 64 ? n : n - 64);
      case 3: // Galileo
        return 300 + (n < 100 ? n : n > 100 && n < 200 ? n - 100 : n > 300 && n < 400 ? n - 300 : 0);
      case 4: // BeiDou
        return 400 + (n < 100 ? n : n > 200 && n < 300 ? n - 200 : n > 400 && n < 500 ? n - 400 : 0);
      case 5: // QZSS
        return 192 + (n < 100 ? n : n - 192);
      case 6: // NavIC
        return n + 500;
      default:
        return 0;
    }
  }
  if (n <= 32) {
    const t0 = address.charCodeAt(0);
    const t1 = address.charCodeAt(1);
    if (t0 === 71) {
      if (t1 === A) return 300 + n; // GA Galileo
      if (t1 === 66) return 400 + n; // GB BeiDou
      if (t1 === 73) return 500 + n; // GI NavIC
      if (t1 === 76) return 64 + n; // GL GLONASS
      if (t1 === 81) return 192 + n; // GQ QZSS
      return n;
    }
    if (t0 === 66 && t1 === 68) return 400 + n; // BD BeiDou
    if (t0 === P && t1 === 81) return 400 + n; // PQ Quectel BeiDou
    if (t0 === 81 && t1 === 90) return 192 + n; // QZ QZSS
    return n;
  }
  if (n <= 96) return n; // SBAS 33-64, GLONASS 65-96
  if (n < 120) return 0;
  if (n <= 158) return n; // SBAS
  if (n < 173) return 0;
  if (n <= 182) return n; // IMES
  if (n < 193) return 0;
  if (n <= 197) return n; // QZSS
  if (n < 201) return 0;
  if (n <= 237) return n + 200; // BeiDou 201-237 as 401-437
  if (n < 301) return 0;
  if (n <= 356) return n; // Galileo
  if (n < 401) return 0;
  if (n <= 437) return n; // BeiDou
  if (n <= 499) return 0;
  if (n <= 518) return n; // NavIC
  if (n <= 900) return 0;
  if (n <= 918) return n; // NavIC
  return 0;
}

export const gsa: Apply = (sentence, st) => {
  const s = sentence as GsaSentence;
  const nd = st.newdata;
  const count = s.fields.count;
  const address = s.address;
  const talker = address.charCodeAt(1);
  const previousTalker = st.gsa.talker;
  let mask = SET.ONLINE;
  let system = 0;
  // After a stale GGA the GSA that follows is not believed either.
  if (!st.gga.stale) {
    if (s.fixMode !== null) {
      nd.mode = s.fixMode;
      mask = SET.MODE;
    }
    // The Navior CH-4701 sends 24 PRN fields: its DOPs are not where they should be.
    if (count <= 19) {
      const { pdop, hdop, vdop } = s;
      if (pdop !== null && within(0.01, pdop, 89.99)) {
        st.dop.pdop = pdop;
        mask |= SET.DOP;
      }
      if (hdop !== null && within(0.01, hdop, 89.99)) {
        st.dop.hdop = hdop;
        mask |= SET.DOP;
      }
      if (vdop !== null && within(0.01, vdop, 89.99)) {
        st.dop.vdop = vdop;
        mask |= SET.DOP;
      }
      // NMEA 4.10 system id; SiRF TriG puts a float there instead.
      if (count === 19 && !s.fields.isEmpty(18) && !s.fields.has(18, 46)) system = s.fields.int(18);
    }
    // Several GSAs in one cycle (GPGSA + GLGSA, or one GNGSA per system) add up.
    if (previousTalker === 0 || (talker === previousTalker && talker !== N && talker !== 81)) {
      st.satellitesUsed = 0;
      st.usedPrns.length = 0;
    }
    st.gsa.talker = talker;
    switch (talker) {
      case A: // GA Galileo
        system = 3;
        st.gsa.seenOtherSystem = true;
        break;
      case 66: // GB
      case 68: // BD
        system = 4;
        st.gsa.seenOtherSystem = true;
        break;
      case 73: // GI NavIC
        system = 6;
        st.gsa.seenOtherSystem = true;
        break;
      case 76: // GL GLONASS
        system = 2;
        st.gsa.seenOtherSystem = true;
        break;
      case N: // GN: system from field 18
        st.gsa.seenOtherSystem = true;
        break;
      case P: // GP GPS
        system = 1;
        break;
      case 81: // Q: Quectel's $PQGSA carries its system id; $GQ is QZSS
        if (c0(address) === P && system !== 0) break;
        system = 5;
        st.gsa.seenOtherSystem = true;
        break;
      case 90: // QZ
        system = 5;
        st.gsa.seenOtherSystem = true;
        break;
      default:
        break;
    }
    for (let i = 0; i < count - 6; i++) {
      if (s.fields.isEmpty(i + 3)) continue;
      if (s.fields.has(i + 3, 46)) break; // reached the PDOP
      const n = s.fields.int(i + 3);
      if (n < 1 || n > 600) continue;
      const prn = satellitePrn(address, n, system);
      if (prn <= 0) continue;
      if (st.satellitesUsed > MAX_CHANNELS) break;
      if (!st.usedPrns.includes(prn)) {
        st.usedPrns.push(prn);
        st.satellitesUsed = st.usedPrns.length;
      }
    }
    mask |= SET.USED;
  }
  // A GPGSA after other systems' GSAs, and the first GNGSA of a series, say
  // nothing new for the cycle (mode only for the first GNGSA).
  if (st.gsa.seenOtherSystem && talker === P) mask = SET.ONLINE;
  else if (previousTalker !== N && talker === N) mask = SET.ONLINE | SET.MODE;
  return mask;
};

export const gsv: Apply = (s, st) => {
  const count = s.fields.count;
  const g = st.gsv;
  g.await = s.fields.int(1);
  if (g.await < 1 || g.await > 10) {
    g.await = 0;
    zeroSatellites(st);
    return SET.ONLINE;
  }
  g.part = s.fields.int(2);
  if (g.part < 1 || g.part > g.await) {
    zeroSatellites(st);
    return SET.ONLINE;
  }
  let system = 0;
  switch (count % 4) {
    case 0: // NMEA before 4.10
    case 1: // NMEA 4.10: signal id last
      break;
    case 2: // Quectel: signal id and system id (4 BeiDou, 5 QZSS)
      system = s.fields.int(count - 1);
      if (system < 4 || system > 5) return SET.ONLINE;
      break;
    default:
      zeroSatellites(st);
      return SET.ONLINE;
  }
  // All GSV series of one epoch add up; the first part after another sentence starts afresh.
  if (g.part === 1 && g.talker === 0) zeroSatellites(st);
  const address = s.address;
  const talker = address.charCodeAt(1);
  g.talker = talker;
  if (talker === A || talker === 66 || talker === 68 || talker === 73 || talker === 76 || talker === N || talker === 90) {
    g.seenOtherSystem = true;
  } else if (talker === 81) {
    g.seenOtherSystem = true;
  }
  for (let rec = 1; rec < Math.floor(count / 4); rec++) {
    const at = rec * 4;
    if (s.fields.isEmpty(at) || s.fields.int(at) === 0) continue;
    if (g.visible >= MAX_CHANNELS) {
      zeroSatellites(st);
      break;
    }
    if (!s.fields.isEmpty(at + 1) && !s.fields.isEmpty(at + 2)) {
      let az = s.fields.int(at + 2);
      if (az === 360) az = 0;
      if (az >= 0 && az < 360) {
        g.azimuths[g.visible] = az;
        if (g.written <= g.visible) g.written = g.visible + 1;
      }
    }
    g.visible++;
  }
  if (g.part < g.await) {
    st.seriesMore = true;
    return SET.ONLINE;
  }
  st.seriesMore = false;
  // SiRFstarII without satellites reports all azimuths 0: no satellite data.
  let sane = false;
  for (let i = 0; i < g.visible; i++) {
    if (g.azimuths[i] !== 0) {
      sane = true;
      break;
    }
  }
  if (!sane) {
    zeroSatellites(st);
    return SET.ONLINE;
  }
  // A GPS series after other systems' series is not the end of the sky picture.
  if (g.seenOtherSystem && talker === P && g.endTalker !== P) return SET.ONLINE;
  return SET.SATELLITE;
};

export const vtg: Apply = (sentence, st) => {
  const s = sentence as VtgSentence;
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

export const zda: Apply = (sentence, st) => {
  const s = sentence as ZdaSentence;
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
