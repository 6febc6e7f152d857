// The agent's configuration file (JSON). Every key is documented in
// docs/configuration.md; a wrong one is refused with the key, the
// value and what is expected (common/config-file.ts).

import { z } from 'zod';
import { TRACK_BATCH_MAX } from '../protocol/messages.ts';
import { OutboxConfigSchema } from '../gateway/outbox.ts';
import { PanelConfigSchema } from '../hal/panel/config.ts';
import { FileUploadConfigSchema } from '../gateway/file-upload.ts';
import { ClipsConfigSchema, MediaConfigSchema, VideoConfigSchema } from './evidence.ts';
import { CamerasConfigSchema } from './snapshots.ts';
import { HealthConfigSchema } from './health.ts';
import { MqttConnectionSchema } from '../common/mqtt-session.ts';
import { ID_PATTERN } from '../protocol/topics.ts';
import { KEY_ID_PATTERN } from '../protocol/signed-command.ts';
import { readPublicKey } from '../common/keys.ts';
import type { KeyObject } from 'node:crypto';
import { ConfigError } from '../common/config-file.ts';
import { dirname } from 'node:path';
import { loadConfigFile, LogConfigSchema } from '../common/config-file.ts';
import { checkSecretFile, checkTlsFiles, checkWritableDir } from '../common/config-paths.ts';

const id = z.string().regex(ID_PATTERN, 'letters, digits, "_" or "-", 1 to 64 characters');

export const AgentConfigSchema = z
  .object({
    vehicle: z
      .object({
        fleet: id,
        id,
        /** The line the bus runs; sent with every alarm. */
        route: z.string().max(64).nullable().default(null),
      })
      .strict(),
    mqtt: MqttConnectionSchema,
    storage: z
      .object({
        /** Folder for outbox.db (created if missing). */
        dir: z.string().min(1),
      })
      .strict(),
    panel: PanelConfigSchema,
    alarm: z
      .object({
        /** How long the panic button must be held to raise an emergency; a bump raises nothing. */
        holdMs: z.number().int().min(50).max(10_000).default(500),
        /** The second pattern, raising a non-emergency incident. */
        incidentPattern: z.enum(['double', 'second-input']).default('double'),
        /** Double press: both presses shorter than holdMs, the second starting within this of the first release. */
        doublePressWindowMs: z.number().int().min(100).max(3_000).default(600),
        /** Re-send anything not confirmed by dispatch after this long while connected. */
        resendS: z.number().min(0.5).max(3_600).default(5),
        /** How long the LED keeps showing "acknowledged" before going dark again. */
        acknowledgedShowS: z.number().min(1).max(86_400).default(120),
      })
      .strict()
      .prefault({}),
    /** The store-and-forward outbox: quota, send window, lane rules (gateway/outbox.ts). */
    outbox: OutboxConfigSchema.prefault({}),
    position: z
      .object({
        /** Send the thinned track every this many seconds while no emergency is open. 0 = no routine track. */
        intervalS: z.number().min(0).max(86_400).default(30),
        /** Faster interval (track points and sending) while an emergency is open, until a dispatcher acknowledges it. */
        alarmIntervalS: z.number().min(1).max(600).default(5),
        /** A fix older than this is flagged stale in alarms and positions. */
        staleAfterS: z.number().min(1).max(86_400).default(10),
        /** Thinning: never two track points closer in time than this. */
        minIntervalS: z.number().min(0).max(3_600).default(2),
        /** Thinning: a new point once the bus has moved this far (metres) since the last. */
        minDistanceM: z.number().min(0).max(100_000).default(50),
        /** Thinning: a new point once the bus has turned this much (degrees) since the last, while moving. */
        headingChangeDeg: z.number().min(1).max(180).default(30),
        /** Thinning: a point at least this often, even standing still. */
        maxGapS: z.number().min(1).max(86_400).default(60),
        /** At most this many points per track message. */
        batchMax: z.number().int().min(1).max(TRACK_BATCH_MAX).default(60),
      })
      .strict()
      .prefault({}),
    gps: z
      .object({
        port: z.string().min(1),
        /** The rate tried first. */
        baudRate: z.union([z.literal(4800), z.literal(9600), z.literal(38400), z.literal(115200)]).default(9600),
        /** Try the other NMEA rates when no valid sentence arrives at the current one, and log which rate was found. */
        autoBaud: z.boolean().default(true),
      })
      .strict()
      .nullable()
      .default(null),
    /** Serial JPEG cameras (VC0706): a geotagged snapshot from each on every alarm. */
    cameras: CamerasConfigSchema,
    /** Video cameras, each recorded into a ring of segments by a supervised gst-launch-1.0. */
    video: VideoConfigSchema,
    /** The clip cut around each alarm from every video camera's ring. */
    clips: ClipsConfigSchema,
    media: MediaConfigSchema,
    /** Evidence file transfer over MQTT (gateway/file-upload.ts). */
    files: FileUploadConfigSchema.prefault({}),
    /** The unit's health in its retained status (firmware/health.ts). */
    health: HealthConfigSchema.prefault({}),
    /** Whose commands this bus acts on (protocol/signed-command.ts). */
    trust: z
      .object({
        /** The dispatch keys whose signed commands this bus acts on: two during a key rotation. */
        dispatchKeys: z
          .array(
            z
              .object({
                id: z.string().regex(KEY_ID_PATTERN, 'letters, digits, ".", "_" or "-", 1 to 64 characters'),
                /** PEM file of the Ed25519 public key (busguard pki keygen writes ID.pub). */
                publicKeyFile: z.string().min(1),
              })
              .strict(),
          )
          .min(1, 'at least one dispatch key: without one the bus could act on no command')
          .refine((keys) => new Set(keys.map((k) => k.id)).size === keys.length, 'each key id once'),
        /** How far this bus's GPS time and dispatch's clock may disagree before a fresh command looks expired (or too far ahead). */
        clockSkewS: z.number().min(0).max(7 * 86_400).default(86_400),
      })
      .strict(),
    log: LogConfigSchema,
  })
  .strict();

export type AgentConfig = z.output<typeof AgentConfigSchema>;

export function loadAgentConfig(file: string): AgentConfig {
  return loadConfigFile(file, AgentConfigSchema);
}

/**
 * What the config names on disk, checked before the agent touches anything
 * (common/config-paths.ts): every problem, each naming its key. Devices
 * (GPS, cameras, a Firmata board) are not checked here: a USB receiver
 * plugged in later is found then.
 */
export function checkAgentPaths(c: AgentConfig): string[] {
  const problems: string[] = [];
  if (c.mqtt.passwordFile !== undefined) checkSecretFile('mqtt.passwordFile', c.mqtt.passwordFile, problems);
  checkTlsFiles(c.mqtt, problems);
  checkWritableDir('storage.dir', c.storage.dir, problems);
  if (c.media.dir !== null) checkWritableDir('media.dir', c.media.dir, problems);
  if (c.panel.driver === 'sim') checkWritableDir('panel.socket', dirname(c.panel.socket), problems, c.panel.socket);
  c.trust.dispatchKeys.forEach((k, i) => readPublicKey(`trust.dispatchKeys.${i}.publicKeyFile`, k.publicKeyFile, problems));
  return problems;
}

/** The dispatch keys the bus trusts, by id; a ConfigError naming each unreadable one. */
export function trustedKeys(c: AgentConfig, configFile = '(agent config)'): Map<string, KeyObject> {
  const problems: string[] = [];
  const keys = new Map<string, KeyObject>();
  c.trust.dispatchKeys.forEach((k, i) => {
    const key = readPublicKey(`trust.dispatchKeys.${i}.publicKeyFile`, k.publicKeyFile, problems);
    if (key) keys.set(k.id, key);
  });
  if (problems.length) throw new ConfigError(configFile, problems);
  return keys;
}
