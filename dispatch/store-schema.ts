// The later steps of dispatch's schema (dispatch/store.ts runs them in order).

/** Fifth step: repeated presses of an open alarm (up/repeat). */
export const REPEATS_SCHEMA = `
CREATE TABLE alarm_repeats (
  id TEXT PRIMARY KEY,
  alarm_id TEXT NOT NULL,
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  at TEXT NOT NULL,
  held_ms INTEGER NOT NULL,
  count INTEGER NOT NULL,
  fix TEXT,
  received_at TEXT NOT NULL
);
CREATE INDEX alarm_repeats_alarm ON alarm_repeats (alarm_id);
ALTER TABLE alarms ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
ALTER TABLE alarms ADD COLUMN last_repeat_at TEXT;
`;

/** Sixth step: values made once per database (no longer any: the MQTT client id is the identity now). */
export const META_SCHEMA = 'CREATE TABLE dispatch_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);';

/** Seventh step: receivers look for commands to send four times a second (a dispatcher's ack, a footage request): by index, not by scanning history. */
export const PENDING_SCHEMA = `
CREATE INDEX alarms_ack_unseen ON alarms (ack_at) WHERE ack_at IS NOT NULL AND ack_seen_at IS NULL;
CREATE INDEX footage_unanswered ON footage_requests (requested_at) WHERE answered_at IS NULL;
`;

/** Tenth step: a command a person signed with their own key (dispatch/person-signer.ts), sent as signed. */
export const PERSONAL_COMMANDS_SCHEMA = `
ALTER TABLE alarms ADD COLUMN ack_command TEXT;
ALTER TABLE footage_requests ADD COLUMN command TEXT;
`;

// Ninth step (the eighth is dispatch/signatures.ts): what a bus sends is keyed by (fleet,
// vehicle, id), the vehicle taken from the topic. Ids are the buses' own
// (random UUIDs), so one bus reusing another's id (a hostile one, or a
// broken one) used to collide with it: the second was refused or taken for
// a duplicate. Now each vehicle's alarms, repeats, track points and
// diagnostics live side by side whatever their ids. SQLite cannot change a
// primary key in place: each table is rebuilt, its rows copied.

export const VEHICLE_KEYS_SCHEMA = `
CREATE TABLE alarms_v9 (
  id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('emergency', 'incident')),
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  route TEXT,
  raised_at TEXT NOT NULL,
  time_source TEXT NOT NULL,
  held_ms INTEGER NOT NULL,
  fix TEXT,
  received_at TEXT NOT NULL,
  ack_by TEXT,
  ack_at TEXT,
  ack_seen_at TEXT,
  repeats INTEGER NOT NULL DEFAULT 0,
  last_repeat_at TEXT,
  PRIMARY KEY (fleet, vehicle, id)
);
INSERT INTO alarms_v9 SELECT id, kind, fleet, vehicle, route, raised_at, time_source, held_ms, fix, received_at, ack_by, ack_at, ack_seen_at, repeats, last_repeat_at FROM alarms;
DROP TABLE alarms;
ALTER TABLE alarms_v9 RENAME TO alarms;
CREATE INDEX alarms_queue ON alarms (kind, ack_at, received_at);
CREATE INDEX alarms_id ON alarms (id);
CREATE INDEX alarms_ack_unseen ON alarms (ack_at) WHERE ack_at IS NOT NULL AND ack_seen_at IS NULL;

CREATE TABLE alarm_repeats_v9 (
  id TEXT NOT NULL,
  alarm_id TEXT NOT NULL,
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  at TEXT NOT NULL,
  held_ms INTEGER NOT NULL,
  count INTEGER NOT NULL,
  fix TEXT,
  received_at TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle, id)
);
INSERT INTO alarm_repeats_v9 SELECT id, alarm_id, fleet, vehicle, at, held_ms, count, fix, received_at FROM alarm_repeats;
DROP TABLE alarm_repeats;
ALTER TABLE alarm_repeats_v9 RENAME TO alarm_repeats;
CREATE INDEX alarm_repeats_alarm ON alarm_repeats (fleet, vehicle, alarm_id);

CREATE TABLE positions_v9 (
  id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  lane TEXT,
  seq INTEGER,
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  at TEXT NOT NULL,
  time_source TEXT NOT NULL,
  alarm_id TEXT,
  fix TEXT NOT NULL,
  received_at TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle, id)
);
INSERT INTO positions_v9 SELECT id, message_id, lane, seq, fleet, vehicle, at, time_source, alarm_id, fix, received_at FROM positions;
DROP TABLE positions;
ALTER TABLE positions_v9 RENAME TO positions;
CREATE INDEX positions_vehicle ON positions (fleet, vehicle, at);

CREATE TABLE diags_v9 (
  id TEXT NOT NULL,
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  at TEXT NOT NULL,
  event TEXT NOT NULL,
  lane TEXT,
  count INTEGER,
  bytes INTEGER,
  ranges TEXT,
  reason TEXT NOT NULL,
  received_at TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle, id)
);
INSERT INTO diags_v9 SELECT id, fleet, vehicle, at, event, lane, count, bytes, ranges, reason, received_at FROM diags;
DROP TABLE diags;
ALTER TABLE diags_v9 RENAME TO diags;
`;

/**
 * Thirteenth step: the track stored as the bus sends it, one row per message
 * (its points as a JSON array), not one per point: a receiver took ~300 µs a
 * track message writing 15 rows of ~400 bytes with two indexes each, the
 * bulk of its work in a reconnect storm. `positions` stays, as a view with
 * one row per point, for whatever reads points.
 */
export const TRACK_BATCHES_SCHEMA = `
CREATE TABLE track_batches (
  fleet TEXT NOT NULL,
  vehicle TEXT NOT NULL,
  message_id TEXT NOT NULL,
  lane TEXT,
  seq INTEGER,
  alarm_id TEXT,
  first_at TEXT NOT NULL,
  last_at TEXT NOT NULL,
  count INTEGER NOT NULL,
  points TEXT NOT NULL,
  received_at TEXT NOT NULL,
  PRIMARY KEY (fleet, vehicle, message_id)
);
INSERT INTO track_batches (fleet, vehicle, message_id, lane, seq, alarm_id, first_at, last_at, count, points, received_at)
  SELECT fleet, vehicle, message_id, lane, seq, alarm_id, min(at), max(at), count(*),
         json_group_array(json_object('at', at, 'timeSource', time_source, 'fix', json(fix))), min(received_at)
  FROM (SELECT * FROM positions ORDER BY fleet, vehicle, message_id, CAST(substr(id, instr(id, '/') + 1) AS INTEGER))
  GROUP BY fleet, vehicle, message_id;
DROP TABLE positions;
CREATE INDEX track_batches_vehicle ON track_batches (fleet, vehicle, last_at);
CREATE INDEX track_batches_alarm ON track_batches (fleet, vehicle, alarm_id) WHERE alarm_id IS NOT NULL;
CREATE VIEW positions AS
  SELECT t.message_id || '/' || j.key AS id, t.message_id, t.lane, t.seq, t.fleet, t.vehicle,
         json_extract(j.value, '$.at') AS at, json_extract(j.value, '$.timeSource') AS time_source,
         t.alarm_id, json_extract(j.value, '$.fix') AS fix, t.received_at
  FROM track_batches t, json_each(t.points) j;
`;
