// The rules for the other sentences gpsd decodes: headings, attitude,
// depth and weather from boat instruments, satellite fault detection, and
// receivers' proprietary sentences ($PGRM* Garmin, $PERC Ericsson, $PSTI
// Skytraq, $PASHR Ashtech, $PSRFEPE SiRF...). Most carry nothing for a fix,
// but what they set, and whether they carry a time, is what gpsd's
// end-of-cycle detector goes by; a few ($PASHR,POS, $PGRMF, $PERC,GPavp,
// $PSTI,030, $PGPSP) carry a whole position.

import * as fixState from './fix-state.ts';
import type { OtherSentence } from './sentence-types.ts';
import type { ReceiverState } from './receiver-state.ts';
import * as kit from './sentence-kit.ts';
import type { Apply } from './sentence-kit.ts';

// Local references for the per-sentence path (see nmea.ts on tsx's getter-based imports).
const { MODE_2D, MODE_3D, MODE_NO_FIX, MODE_NOT_SEEN, SET, STATUS } = fixState;
const { A, M, N, V, f, dd, faaStatus, mergeFieldTime, mergeFieldDate, noteFieldTimeOfDay } = kit;

// ---- other standard sentences: what they set decides cycle ends ---------

export const onlineOnly: Apply = () => SET.ONLINE;

export const gbs: Apply = (s, st) => {
  noteFieldTimeOfDay(st, s, 1);
  // Error estimates only when they are for the time last merged.
  if (st.date.hour === dd(s, 1, 0) && st.date.minute === dd(s, 1, 2) && st.date.second === dd(s, 1, 4)) {
    st.newdata.epy = s.fields.num(2);
    st.newdata.epx = s.fields.num(3);
    st.newdata.epv = s.fields.num(4);
    return SET.HERR | SET.VERR;
  }
  return SET.ONLINE;
};

export const gst: Apply = (s) => (s.fields.count < 9 ? SET.ONLINE : SET.GST | SET.ONLINE);

export const grs: Apply = (s, st) => {
  if (!s.fields.isEmpty(1)) mergeFieldTime(st, s, 1);
  return SET.ONLINE;
};

export const bwc: Apply = (s, st) => (!s.fields.isEmpty(1) && mergeFieldTime(st, s, 1) && st.date.year !== 0 ? SET.TIME : SET.ONLINE);

export const dbt: Apply = (s) => (!s.fields.isEmpty(3) || !s.fields.isEmpty(1) || !s.fields.isEmpty(5) ? SET.ONLINE | SET.ALTITUDE : SET.ONLINE);

export const dpt: Apply = (s) => (!s.fields.isEmpty(1) ? SET.ONLINE | SET.ALTITUDE : SET.ONLINE);

export const hdg: Apply = (s, st) => {
  if (s.fields.isEmpty(1)) return SET.ONLINE;
  const heading = s.fields.num(1);
  if (heading < 0 || heading > 360) return SET.ONLINE;
  const deviation = s.fields.num(2);
  if (deviation < 0 || deviation > 360) return SET.ONLINE;
  st.newdata.magneticTrack = heading;
  if (!s.fields.isEmpty(3) && !s.fields.isEmpty(4)) {
    const side = s.fields.code(4);
    if (side === 69) st.newdata.magneticVar = s.fields.num(3);
    else if (side === 87) st.newdata.magneticVar = -s.fields.num(3);
  }
  return SET.ONLINE | SET.MAGNETIC_TRACK;
};

export const hdm: Apply = (s) => (!s.fields.isEmpty(1) ? SET.ONLINE | SET.ATTITUDE : SET.ONLINE);

export const hdt: Apply = (s) => {
  if (s.fields.isEmpty(1)) return SET.ONLINE;
  const heading = s.fields.num(1);
  return heading < 0 || heading > 360 ? SET.ONLINE : SET.ONLINE | SET.ATTITUDE;
};

export const rot: Apply = (s) => (!s.fields.isEmpty(1) && s.fields.code(2) === A ? SET.ONLINE | SET.ATTITUDE : SET.ONLINE);

export const mwd: Apply = () => SET.ONLINE | SET.NAVDATA;

export const mwv: Apply = (s) => (s.fields.code(2) === 82 && s.fields.code(4) === N && s.fields.code(5) === A ? SET.ONLINE | SET.NAVDATA : SET.ONLINE);

const XDR_ATTITUDE: Record<string, string[]> = { A: ['PTCH', 'PITCH', 'ROLL'], G: ['MAGX', 'MAGY', 'MAGZ'] };

export const xdr: Apply = (s) => {
  const measurements = Math.min(10, Math.floor(s.fields.count / 4));
  for (let i = 0; i < measurements; i++) {
    const j = i * 4;
    if (s.fields.isEmpty(j + 2)) continue;
    const type = f(s, j + 1).charAt(0);
    if (type === 'A' && s.fields.code(j + 3) !== 68) continue;
    if (XDR_ATTITUDE[type]?.includes(f(s, j + 4))) return SET.ONLINE | SET.ATTITUDE;
  }
  return SET.ONLINE;
};

export const attitude: Apply = () => SET.ONLINE | SET.ATTITUDE;

/** Oscillator (GPS-disciplined clock) status, nothing for the fix. */
export const oscillator: Apply = () => SET.ONLINE | SET.OSCILLATOR;

// ---- proprietary sentences ------------------------------------------------

/** Ashtech $PASHR,POS carries a whole 3D fix and starts a cycle by itself. */
export const pashr: Apply = (s, st) => {
  const nd = st.newdata;
  const kind = f(s, 1);
  if (kind === 'ACK' || kind === 'MCA' || kind === 'NAK' || kind === 'PBN') return SET.ONLINE;
  if (kind === 'POS') {
    let mask = SET.ONLINE | SET.MODE | SET.STATUS | SET.CLEAR;
    if (s.fields.isEmpty(2)) {
      nd.status = STATUS.UNK;
      nd.mode = MODE_NO_FIX;
      return mask;
    }
    nd.mode = MODE_3D;
    nd.status = s.fields.int(2) >= 1 ? STATUS.DGPS : STATUS.GPS;
    st.gga.satsUsed = s.fields.int(3);
    if (mergeFieldTime(st, s, 4)) {
      noteFieldTimeOfDay(st, s, 4);
      mask |= SET.TIME;
    }
    const pos = s.fields.latLon(5);
    if (pos) {
      nd.lat = pos.lat;
      nd.lon = pos.lon;
      mask |= SET.LATLON;
      if (!s.fields.isEmpty(9)) {
        nd.altHAE = s.fields.num(9);
        mask |= SET.ALTITUDE;
      }
    }
    nd.track = s.fields.num(11);
    nd.speed = s.fields.num(12) / 3.6;
    nd.climb = s.fields.num(13);
    for (const [i, key] of [
      [14, 'pdop'],
      [15, 'hdop'],
      [16, 'vdop'],
    ] as const) {
      if (!s.fields.isEmpty(i)) {
        st.dop[key] = s.fields.num(i);
        mask |= SET.DOP;
      }
    }
    if (!s.fields.isEmpty(17)) mask |= SET.DOP;
    return mask | SET.SPEED | SET.TRACK | SET.CLIMB;
  }
  if (kind === 'RID') {
    st.subtype = `${f(s, 2)} ver ${f(s, 3)}`;
    return SET.ONLINE;
  }
  if (kind === 'SAT') {
    const visible = Math.min(s.fields.int(2), Math.floor((100 - 15) / 5));
    let used = 0;
    for (let i = 0; i < visible; i++) if (s.fields.code(3 + i * 5 + 4) === 85) used++;
    st.satellitesUsed = used;
    return SET.ONLINE | SET.SATELLITE | SET.USED;
  }
  return SET.ONLINE;
};

/** Ericsson $PERC,GPavp: the averaged position of a timing receiver. */
export const percAveragedPosition: Apply = (s, st) => {
  const nd = st.newdata;
  nd.lat = s.fields.angle(2);
  if (s.fields.code(3) === 83) nd.lat = -nd.lat;
  nd.lon = s.fields.angle(4);
  if (s.fields.code(5) === 87) nd.lon = -nd.lon;
  nd.altHAE = s.fields.num(6);
  return SET.ONLINE | SET.LATLON | SET.ALTITUDE;
};

/** Ericsson $PERC,GPppr: GPS week and time of week, satellites used. */
export const percTime: Apply = (s, st) => {
  st.satellitesUsed = s.fields.int(5);
  return SET.ONLINE | SET.TIME | SET.SATELLITE | SET.OSCILLATOR;
};

export const percStatus: Apply = (s, st) => {
  const mode = s.fields.int(2);
  if (mode === 1 || mode === 2 || mode === 4) {
    st.newdata.status = STATUS.TIME;
    return SET.ONLINE | SET.STATUS;
  }
  if (mode === 0) {
    st.newdata.status = STATUS.GPS;
    return SET.ONLINE | SET.STATUS;
  }
  return SET.ONLINE;
};

export const percVersion: Apply = (s, st) => {
  const subtype = `${f(s, 2)} ${f(s, 3)} ${f(s, 4)}`;
  const serial = f(s, 5).slice(0, 31);
  const changed = subtype !== st.subtype || serial !== st.serial;
  st.subtype = subtype;
  st.serial = serial;
  return changed ? SET.ONLINE | SET.DEVICEID : SET.ONLINE;
};

/** gpsd's 95 % confidence from Garmin's CEP50 figures. */
const CEP50_TO_95 = 2.45 / 1.18;

/** Garmin $PGRME: estimated horizontal, vertical and spherical errors. */
export const pgrme: Apply = (s, st) => {
  if (s.fields.code(2) !== M || s.fields.code(4) !== M || s.fields.code(6) !== M) return SET.ONLINE;
  const nd = st.newdata;
  nd.epx = nd.epy = s.fields.num(1) * (1 / Math.SQRT2) * CEP50_TO_95;
  nd.epv = s.fields.num(3) * CEP50_TO_95;
  nd.sep = s.fields.num(5) * CEP50_TO_95;
  return SET.HERR | SET.VERR | SET.PERR;
};

/** Garmin $PGRMF: a whole fix with GPS week/time and a 2D/3D flag. */
export const pgrmf: Apply = (s, st) => {
  const nd = st.newdata;
  let mask = SET.ONLINE;
  const digitFirst = (i: number) => s.fields.code(i) >= 48 && s.fields.code(i) <= 57;
  if (digitFirst(5)) st.time.leapSeconds = s.fields.int(5);
  if (digitFirst(1) && digitFirst(2) && st.time.leapSeconds > 0) {
    mask |= SET.TIME;
  } else if (mergeFieldTime(st, s, 4) && mergeFieldDate(st, s, 3)) {
    mask |= SET.TIME;
  }
  if (s.fields.code(10) !== A) return mask;
  const pos = s.fields.latLon(6);
  if (pos) {
    nd.lat = pos.lat;
    nd.lon = pos.lon;
    mask |= SET.LATLON;
  }
  const fixType = s.fields.code(11);
  if (fixType === 48 || fixType === 49 || fixType === 50) {
    nd.mode = fixType === 48 ? MODE_NO_FIX : fixType === 49 ? MODE_2D : MODE_3D;
    mask |= SET.MODE;
  }
  nd.speed = s.fields.num(12) / 3.6;
  nd.track = s.fields.num(13);
  mask |= SET.SPEED | SET.TRACK;
  if (!s.fields.isEmpty(14)) {
    st.dop.pdop = s.fields.num(14);
    mask |= SET.DOP;
  }
  if (!s.fields.isEmpty(15)) mask |= SET.DOP;
  return mask;
};

export const pgrmv: Apply = (s, st) => {
  if (s.fields.isEmpty(1) || s.fields.isEmpty(2) || s.fields.isEmpty(3)) return SET.ONLINE;
  st.newdata.velE = s.fields.num(1);
  st.newdata.velN = s.fields.num(2);
  st.newdata.velD = -s.fields.num(3);
  return SET.ONLINE | SET.VNED;
};

/** Garmin $PGRMZ: altitude in feet and a 2D/3D flag. */
export const pgrmz: Apply = (s, st) => {
  let mask = SET.ONLINE;
  if (s.fields.code(2) === 102 && !s.fields.isEmpty(1)) {
    st.newdata.altMSL = s.fields.int(1) * 0.3048;
    mask |= SET.ALTITUDE;
  }
  const fixType = s.fields.code(3);
  if (fixType === 49 || fixType === 50 || fixType === 51) {
    st.newdata.mode = fixType === 49 ? MODE_NO_FIX : fixType === 50 ? MODE_2D : MODE_3D;
    mask |= SET.MODE;
  }
  return mask;
};

export const pgrmt: Apply = (s, st) => {
  st.subtype = f(s, 1);
  return SET.ONLINE;
};

/** Magellan $PMGNST: fix mode. */
export const pmgnst: Apply = (s, st) => {
  const mode = s.fields.int(3);
  st.newdata.mode = s.fields.code(4) === 84 && (mode === 2 || mode === 3) ? mode : MODE_NO_FIX;
  return SET.ONLINE | SET.MODE;
};

/** SiRF $PSRFEPE: estimated position errors. */
export const psrfepe: Apply = (s, st) => {
  const nd = st.newdata;
  let mask: number = SET.STATUS;
  if (!s.fields.isEmpty(1) && mergeFieldTime(st, s, 1)) {
    noteFieldTimeOfDay(st, s, 1);
    if (st.date.year !== 0) mask |= SET.TIME;
  }
  if (s.fields.code(2) !== A) return mask;
  if (!s.fields.isEmpty(3)) {
    st.dop.hdop = s.fields.num(3);
    mask |= SET.DOP;
  }
  if (!s.fields.isEmpty(4)) {
    nd.eph = s.fields.num(4);
    mask |= SET.HERR;
  }
  if (!s.fields.isEmpty(5)) {
    nd.epv = s.fields.num(5);
    mask |= SET.VERR;
  }
  return mask;
};

/** Merge a $PSTI time (hhmmss, ddmmyy) and note it for cycle detection. */
function pstiTime(s: OtherSentence, st: ReceiverState, time: number, date: number): number {
  if (s.fields.isEmpty(time) || s.fields.isEmpty(date)) return 0;
  if (!mergeFieldTime(st, s, time) || !mergeFieldDate(st, s, date)) return 0;
  noteFieldTimeOfDay(st, s, time);
  return SET.TIME;
}

/** Skytraq $PSTI,030: recommended minimum 3D GNSS data. */
export const psti030: Apply = (s, st) => {
  const nd = st.newdata;
  const status = s.fields.code(3);
  if (status === V || s.fields.code(13) === N) {
    nd.status = STATUS.UNK;
    nd.mode = MODE_NO_FIX;
    return SET.ONLINE | SET.MODE | SET.STATUS;
  }
  if (status !== A) return SET.ONLINE;
  let mask = SET.ONLINE | pstiTime(s, st, 2, 12);
  const pos = s.fields.latLon(4);
  if (pos) {
    nd.lat = pos.lat;
    nd.lon = pos.lon;
    nd.mode = MODE_2D;
    mask |= SET.LATLON;
    if (!s.fields.isEmpty(8)) {
      nd.altMSL = s.fields.num(8);
      nd.mode = MODE_3D;
      mask |= SET.ALTITUDE;
    }
    mask |= SET.MODE;
  }
  nd.velE = s.fields.num(9);
  nd.velN = s.fields.num(10);
  nd.velD = -s.fields.num(11);
  nd.status = faaStatus(s.fields.code(13));
  return mask | SET.VNED | SET.STATUS;
};

/** Skytraq $PSTI,032: RTK baseline. */
export const psti032: Apply = (s, st) => (s.fields.code(4) !== A ? SET.ONLINE : SET.ONLINE | pstiTime(s, st, 2, 3));

/** Skytraq $PSTI,033: RTK raw measurement status. */
export const psti033: Apply = (s, st) => {
  if (s.fields.code(4) !== 50) return SET.ONLINE;
  const receiver = s.fields.code(5);
  if (receiver !== 66 && receiver !== 82) return SET.ONLINE;
  return SET.ONLINE | pstiTime(s, st, 2, 3);
};

/** Skytraq $PSTI,035: moving-base baseline. */
export const psti035: Apply = (s, st) => {
  const mask = SET.ONLINE | pstiTime(s, st, 2, 3);
  return s.fields.code(4) !== A ? mask : mask | SET.ATTITUDE;
};

/** Skytraq $PSTI,036: heading, pitch, roll. */
export const psti036: Apply = (s, st) => {
  const mask = SET.ONLINE | pstiTime(s, st, 2, 3);
  return s.fields.isEmpty(7) || s.fields.code(7) === N ? mask : mask | SET.ATTITUDE;
};

/** Allystar $PGPSP: a binary-style navigation solution in text. */
export const pgpsp: Apply = (s, st) => {
  const nd = st.newdata;
  const status = s.fields.int(3);
  const gpsStatus = (status >> 8) & 0xff;
  const modes: Record<number, number> = { 0: MODE_NO_FIX, 1: MODE_3D, 2: MODE_2D, 3: MODE_3D, 4: MODE_3D, 5: MODE_3D, 8: MODE_3D, 9: MODE_3D, 10: MODE_3D, 11: MODE_3D, 12: MODE_3D };
  nd.mode = modes[gpsStatus] ?? MODE_NOT_SEEN;
  let mask = SET.ONLINE | SET.MODE | SET.STATUS;
  if (nd.mode === MODE_2D || nd.mode === MODE_3D) {
    nd.lat = s.fields.num(4);
    nd.lon = s.fields.num(5);
    mask |= SET.LATLON;
    if (nd.mode === MODE_3D) {
      nd.altHAE = s.fields.num(6);
      nd.altMSL = s.fields.num(7);
      mask |= SET.ALTITUDE;
    }
    st.time.leapSeconds = s.fields.int(17);
    mask |= SET.TIME;
  }
  return mask;
};

export const pstmAntenna: Apply = (s) => {
  const status = s.fields.int(1);
  return status >= 0 && status <= 2 ? SET.ONLINE | SET.STATUS : SET.ONLINE;
};

export const ptnlrba: Apply = (s) => (s.fields.int(1) === 1 ? SET.ONLINE : SET.ONLINE | SET.ERROR);

export const ptnlrnm: Apply = (s) => {
  const mode = s.fields.code(1);
  return mode === A || mode === 68 || mode === 69 ? SET.ONLINE | SET.STATUS : SET.ONLINE;
};

export const ptnta: Apply = (s) => (s.fields.is(3, 'T4') ? SET.ONLINE | SET.OSCILLATOR : SET.ONLINE);

export const snrstat: Apply = (_s, st) => {
  if (st.subtype === '') st.subtype = 'Unicore';
  return SET.ONLINE;
};

export const pqtmver: Apply = (s, st) => {
  st.subtype = `${f(s, 1)},${f(s, 2)},${f(s, 3)}`;
  return SET.ONLINE;
};
