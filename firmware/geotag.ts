// EXIF for a cabin snapshot: where and when it was taken, written into the
// JPEG itself so the photo keeps its place wherever it is copied (a police
// case file, a phone). piexifjs writes the APP1 segment; nothing here packs
// bytes by hand.
//
// Precision: latitude and longitude as degrees, minutes and seconds, the
// seconds as a rational over 1,000,000 (about 3e-8 m), so exiftool reads
// back the fix to well under 1e-6 degrees. A stale fix is marked
// GPSStatus "V" (measurement interrupted) and its age is in the image
// description; without a fix there are no GPS tags at all, and the
// description says so rather than leaving a reader to guess.

import piexif from 'piexifjs';
import type { Fix } from '../protocol/messages.ts';

type Rational = [number, number];

const SECONDS_DENOMINATOR = 1_000_000;

/** |deg| as EXIF degrees, minutes, seconds. */
function dms(deg: number): [Rational, Rational, Rational] {
  const a = Math.abs(deg);
  let d = Math.floor(a);
  let m = Math.floor((a - d) * 60);
  let micro = Math.round(((a - d) * 60 - m) * 60 * SECONDS_DENOMINATOR);
  // Rounding may carry a second into the minute, and so on.
  if (micro >= 60 * SECONDS_DENOMINATOR) {
    micro -= 60 * SECONDS_DENOMINATOR;
    m += 1;
  }
  if (m >= 60) {
    m -= 60;
    d += 1;
  }
  return [
    [d, 1],
    [m, 1],
    [micro, SECONDS_DENOMINATOR],
  ];
}

const pad = (n: number) => String(n).padStart(2, '0');
/** EXIF's date-time form, "YYYY:MM:DD HH:MM:SS", in UTC. */
function exifDateTime(t: Date): string {
  return `${t.getUTCFullYear()}:${pad(t.getUTCMonth() + 1)}:${pad(t.getUTCDate())} ${pad(t.getUTCHours())}:${pad(t.getUTCMinutes())}:${pad(t.getUTCSeconds())}`;
}

export interface GeotagInfo {
  /** The alarm's fix, or null when the bus had none. */
  fix: Fix | null;
  /** When the frame was taken (UTC, corrected by GPS when possible). */
  takenAt: Date;
  /** Which camera, for the description. */
  camera: string;
  alarmId: string;
}

/**
 * The JPEG with EXIF GPS tags for the fix, the time taken and a description;
 * an existing EXIF block is replaced. Throws when the bytes are not a JPEG.
 */
export function geotagJpeg(jpeg: Buffer, info: GeotagInfo): Buffer {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) throw new Error('geotag: not a JPEG (no FF D8 start-of-image)');
  const { fix, takenAt } = info;
  const described = fix
    ? `busguard alarm ${info.alarmId}, camera ${info.camera}; fix ${fix.valid ? 'valid' : 'without lock'}${fix.stale ? `, stale (${fix.ageS} s old)` : ''}`
    : `busguard alarm ${info.alarmId}, camera ${info.camera}; no GPS fix at the alarm`;
  const zeroth: Record<number, unknown> = {
    [piexif.ImageIFD.ImageDescription]: described,
    [piexif.ImageIFD.Software]: 'busguard',
    [piexif.ImageIFD.DateTime]: exifDateTime(takenAt),
  };
  const exif: Record<number, unknown> = {
    // UTC, like the GPS time stamp. (EXIF 2.31's OffsetTimeOriginal would
    // say so, but piexifjs cannot write tags it has no table entry for.)
    [piexif.ExifIFD.DateTimeOriginal]: exifDateTime(takenAt),
  };
  const gps: Record<number, unknown> = {};
  if (fix) {
    gps[piexif.GPSIFD.GPSVersionID] = [2, 3, 0, 0];
    gps[piexif.GPSIFD.GPSLatitudeRef] = fix.lat < 0 ? 'S' : 'N';
    gps[piexif.GPSIFD.GPSLatitude] = dms(fix.lat);
    gps[piexif.GPSIFD.GPSLongitudeRef] = fix.lon < 0 ? 'W' : 'E';
    gps[piexif.GPSIFD.GPSLongitude] = dms(fix.lon);
    if (fix.altM !== null) {
      gps[piexif.GPSIFD.GPSAltitudeRef] = fix.altM < 0 ? 1 : 0;
      gps[piexif.GPSIFD.GPSAltitude] = [Math.round(Math.abs(fix.altM) * 100), 100];
    }
    if (fix.speedMps !== null) {
      gps[piexif.GPSIFD.GPSSpeedRef] = 'K';
      gps[piexif.GPSIFD.GPSSpeed] = [Math.round(fix.speedMps * 3.6 * 100), 100];
    }
    if (fix.trackDeg !== null) {
      gps[piexif.GPSIFD.GPSTrackRef] = 'T';
      gps[piexif.GPSIFD.GPSTrack] = [Math.round(fix.trackDeg * 100), 100];
    }
    gps[piexif.GPSIFD.GPSStatus] = fix.stale || !fix.valid ? 'V' : 'A';
    gps[piexif.GPSIFD.GPSMapDatum] = 'WGS-84';
    if (fix.time) {
      const t = new Date(fix.time);
      gps[piexif.GPSIFD.GPSDateStamp] = `${t.getUTCFullYear()}:${pad(t.getUTCMonth() + 1)}:${pad(t.getUTCDate())}`;
      gps[piexif.GPSIFD.GPSTimeStamp] = [
        [t.getUTCHours(), 1],
        [t.getUTCMinutes(), 1],
        [t.getUTCSeconds() * 1000 + t.getUTCMilliseconds(), 1000],
      ];
    }
  }
  const bytes = piexif.dump({ '0th': zeroth, Exif: exif, GPS: gps });
  // piexifjs works on "binary" strings: one char per byte.
  const out = piexif.insert(bytes, jpeg.toString('binary'));
  return Buffer.from(out, 'binary');
}
