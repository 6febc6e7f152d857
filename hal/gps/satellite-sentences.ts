// The rules for the satellite sentences: GSA (fix mode, satellites used,
// DOPs) and GSV (the sky, whose series also decide where a reporting cycle
// ends). They follow gpsd's NMEA driver (driver_nmea0183.c) rule for rule,
// quirks included: how many satellites are used decides 2D or 3D, and a GSV
// series in progress holds back the cycle's report.

import type { GsaSentence } from './sentence-types.ts';
import * as fixState from './fix-state.ts';
import * as receiverState from './receiver-state.ts';
import * as kit from './sentence-kit.ts';
import type { Apply } from './sentence-kit.ts';

// Local references for the per-sentence path (see nmea.ts on tsx's getter-based imports).
const { SET } = fixState;
const { MAX_CHANNELS, zeroSatellites } = receiverState;
const { A, N, P, c0, within } = kit;

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

export const gsa: Apply<GsaSentence> = (s, st) => {
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
