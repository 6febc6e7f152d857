// The GPS conformance corpus (real receiver captures with gpsd's output, from
// gpsd's regression suite, BSD-2-Clause: see its COPYING.gpsd). A copy lives in
// the repository so a fresh clone tests without anything beside it;
// BUSGUARD_GPS_CORPUS points the tests at another folder of the same format.

import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const CORPUS_DIR = process.env.BUSGUARD_GPS_CORPUS ?? fileURLToPath(new URL('../fixtures/gps-corpus/', import.meta.url));
export const CORPUS = pathToFileURL(CORPUS_DIR.endsWith('/') ? CORPUS_DIR : `${CORPUS_DIR}/`);

/** The .log files of the corpus, sorted. */
export function corpusLogs(): string[] {
  return readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.log'))
    .sort();
}
