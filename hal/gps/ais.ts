// The one thing about AIS (ship transponder reports, !AIVDM) that changes
// which GNSS fixes gpsd reports. A class B ship sends its static data in two
// halves (AIS message 24, parts A and B). When the last AIS message gpsd
// decoded is such a half still waiting for its other part, gpsd does not
// send its next report to a client (gpsd.c, all_reports: a client without
// "split24" gets no report carrying an incomplete type 24, and the TPV goes
// with it). Receivers that mix AIS into their NMEA stream (gpsd corpus
// ais-nmea.log) therefore lose a position there, and busguard loses the
// same one. Nothing else of AIS is decoded: a bus has no use for ships.

import type { NmeaFields } from './nmea-fields.ts';

/** gpsd's MAX_TYPE24_INTERLEAVE: part-A MMSIs kept per channel while waiting for part B. */
const TYPE24_QUEUE = 8;
/** gpsd's bit buffer: a message that would grow past it is dropped. */
const MAX_BITS = 2048;

/** One radio channel's reassembly state (AIS messages may span several sentences). */
interface Channel {
  /** Fragments of the message in progress received so far. */
  fragments: number;
  /** Six-bit characters of the message in progress. */
  payload: string;
  bits: number;
  /** MMSIs of type 24 part A messages waiting for their part B, a ring. */
  partA: number[];
  partAIndex: number;
}

function newChannel(): Channel {
  return { fragments: 0, payload: '', bits: 0, partA: new Array<number>(TYPE24_QUEUE).fill(0), partAIndex: 0 };
}

/** Six bits of an AIS payload character (IEC 61162-1 armouring), as gpsd reads them. */
function sixBits(c: number): number {
  let v = (c - 48) & 0xff;
  if (v >= 40) v -= 8;
  return v & 0x3f;
}

/** Bits [from, from + n) of a payload, most significant first; bits past its end read as 0. */
function bitsOf(payload: string, from: number, n: number): number {
  let v = 0;
  for (let i = from; i < from + n; i++) {
    const char = Math.floor(i / 6);
    const bit = char < payload.length ? (sixBits(payload.charCodeAt(char)) >> (5 - (i % 6))) & 1 : 0;
    v = v * 2 + bit;
  }
  return v;
}

export class AisHalfMessages {
  private readonly channels: [Channel, Channel] = [newChannel(), newChannel()];
  /**
   * The last AIS sentence completed a type 24 half (part A, or a part B
   * whose part A was not seen) and no report has gone out since: gpsd
   * withholds the next report.
   */
  halfPending = false;

  /** One AIS sentence (fields of !AIVDM / !AIVDO: count, number, sequence, channel, payload, fill bits). */
  observe(f: NmeaFields): void {
    // gpsd clears its AIS message before decoding each sentence.
    this.halfPending = false;
    if (f.count < 6) return;
    const channel = this.channelOf(f);
    if (!channel) return;
    const total = f.int(1);
    const number = f.int(2);
    if (number !== channel.fragments + 1) {
      if (number !== 1) return;
      channel.fragments = 0;
    }
    if (number === 1) {
      channel.payload = '';
      channel.bits = 0;
    }
    const payload = f.text(5);
    if (channel.bits + 6 * payload.length + 6 > MAX_BITS) {
      channel.payload = '';
      channel.bits = 0;
      return;
    }
    channel.payload += payload;
    channel.bits += 6 * payload.length;
    const fill = f.code(6);
    if (fill >= 48 && fill <= 57) channel.bits -= fill - 48;
    if (number !== total) {
      channel.fragments++;
      return;
    }
    channel.fragments = 0;
    this.halfPending = isHalfOfType24(channel);
  }

  /** A report went out (or was withheld): what was pending is spent. */
  reported(): void {
    this.halfPending = false;
  }

  /** The channel a sentence is on: A (or none given, or 1) and B (or 2); null for what gpsd refuses ('C', '12'). */
  private channelOf(f: NmeaFields): Channel | null {
    const c = f.code(4);
    if (f.isEmpty(4) || c === 65 || (c === 49 && !f.is(4, '12'))) return this.channels[0];
    if (c === 66 || c === 50) return this.channels[1];
    return null;
  }
}

/** Whether a complete message is a type 24 half as gpsd decodes it (and pair a part B with its part A). */
function isHalfOfType24(channel: Channel): boolean {
  const { payload, bits } = channel;
  if (bitsOf(payload, 0, 6) !== 24) return false;
  const mmsi = bitsOf(payload, 8, 30);
  switch (bitsOf(payload, 38, 2)) {
    case 0: // part A: name
      if (bits < 160 || bits > 168) return false;
      channel.partA[channel.partAIndex] = mmsi;
      channel.partAIndex = (channel.partAIndex + 1) % TYPE24_QUEUE;
      return true;
    case 1: {
      // part B: dimensions, call sign; complete when its part A was seen
      if (bits < 168) return false;
      const i = channel.partA.indexOf(mmsi);
      if (i < 0) return true;
      channel.partA[i] = 0;
      return false;
    }
    default:
      return false;
  }
}
