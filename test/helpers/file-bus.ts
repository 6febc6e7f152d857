// A bus that only uploads evidence files, as a process of its own, for the
// tests that SIGKILL it mid-transfer (test/integration/file-transfer.test.ts).
// Configured by environment; logs JSON lines on stdout like the agent.
// stdin takes "hold N" (send no segment once N went out in this process,
// until told otherwise), "release" and "kick"; after each it logs
// "file-bus.settled" with the uploader's counters once sending has gone as
// far as it can.
//
//   BG_URL, BG_PASSWORD, BG_CLIENT_ID, BG_DB, BG_FILE, BG_FILE_ID,
//   BG_SEGMENT_BYTES, BG_WINDOW_SEGMENTS, BG_HOLD_AFTER (optional)

import { createInterface } from 'node:readline';
import { FILE_UPLOAD_SCHEMA, FileUpload, FileUploadConfigSchema } from '../../gateway/file-upload.ts';
import { createLogger } from '../../common/log.ts';
import { MqttConnectionSchema, MqttSession } from '../../common/mqtt-session.ts';
import { migrate, openDatabase } from '../../common/sqlite.ts';
import { testTrust } from './command-keys.ts';

const env = (k: string): string => {
  const v = process.env[k];
  if (v === undefined) throw new Error(`file-bus: ${k} not set`);
  return v;
};

const ref = { fleet: 'city', vehicle: 'bus-1' };
const log = createLogger('file-bus', 'debug', ref);
const db = openDatabase(env('BG_DB'));
migrate(db, [FILE_UPLOAD_SCHEMA]);
const mqtt = MqttConnectionSchema.parse({
  url: env('BG_URL'),
  password: env('BG_PASSWORD'),
  clientId: env('BG_CLIENT_ID'),
  reconnectMinMs: 50,
  reconnectMaxMs: 300,
  keepaliveS: 5,
});
const session = new MqttSession(mqtt, { username: 'city/bus-1' }, log);

let sent = 0;
let holdAfter = process.env.BG_HOLD_AFTER ? Number(process.env.BG_HOLD_AFTER) : Infinity;
const upload = new FileUpload({
  ref,
  db,
  session,
  config: FileUploadConfigSchema.parse({
    segmentBytes: Number(env('BG_SEGMENT_BYTES')),
    windowSegments: Number(env('BG_WINDOW_SEGMENTS')),
    windowBytes: 1024 * 1024,
    resendS: 600,
  }),
  log,
  // File receipts signed with the test dispatch key (the parent test's receiver signs with the same).
  trust: testTrust(ref, log),
  subscribe: true,
  yieldTo: () => sent >= holdAfter,
});
upload.on('segmentSent', () => {
  sent++;
});
upload.start();
await upload.enqueue({
  id: env('BG_FILE_ID'),
  path: env('BG_FILE'),
  kind: 'clip',
  alarmId: null,
  capturedAt: '2025-01-01T00:00:00.000Z',
  timeSource: 'system',
  geotag: null,
});
log.info({ event: 'file-bus.started', resumedFrom: upload.get(env('BG_FILE_ID'))?.confirmed }, 'file bus up');

createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, n] = line.trim().split(/\s+/);
  if (cmd === 'hold') holdAfter = Number(n);
  if (cmd === 'release') holdAfter = Infinity;
  upload.kick();
  void upload.settled().then(() => log.info({ event: 'file-bus.settled', ...upload.stats() }, 'sending settled'));
});
