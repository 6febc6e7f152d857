// What the integration tests check of an evidence photo dispatch stored: its
// bytes against dispatch's row, and its geotag as police read it (exiftool)
// against the fix of the alarm it was taken for.

import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

/** exiftool's reading of one file, numeric values, tags named by group (`GPS:GPSLatitude`). */
export function exiftool(file: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile('exiftool', ['-j', '-n', '-G1', file], (err, stdout) => (err ? reject(err) : resolve((JSON.parse(stdout) as Array<Record<string, unknown>>)[0]!)));
  });
}

/** The file at the row's path is the one dispatch recorded: its SHA-256 and its size. */
export function expectStoredIntact(row: { path: string; sha256: string; size: number }): void {
  const bytes = readFileSync(row.path);
  expect(createHash('sha256').update(bytes).digest('hex')).toBe(row.sha256);
  expect(bytes.length).toBe(row.size);
}

/**
 * The photo's EXIF GPS is the fix (latitude and longitude to 1e-7 degree, the
 * hemispheres, the altitude) and so is the geotag dispatch stored beside it.
 * Returns exiftool's tags for the test's own checks.
 */
export async function expectGeotagged(row: { path: string; geotag: string }, fix: { lat: number; lon: number; altM: number }): Promise<Record<string, unknown>> {
  const tags = await exiftool(row.path);
  expect(Math.abs((tags['GPS:GPSLatitude'] as number) - Math.abs(fix.lat))).toBeLessThan(1e-7);
  expect(Math.abs((tags['GPS:GPSLongitude'] as number) - Math.abs(fix.lon))).toBeLessThan(1e-7);
  expect(tags['GPS:GPSLatitudeRef']).toBe(fix.lat < 0 ? 'S' : 'N');
  expect(tags['GPS:GPSLongitudeRef']).toBe(fix.lon < 0 ? 'W' : 'E');
  expect(tags['GPS:GPSAltitude']).toBeCloseTo(fix.altM, 2);
  expect(JSON.parse(row.geotag)).toMatchObject({ lat: fix.lat, lon: fix.lon });
  return tags;
}
