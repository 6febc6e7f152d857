// Dispatch's configuration file (JSON), every key documented in docs/configuration.md.

import { z } from 'zod';
import { MqttConnectionSchema } from '../common/mqtt-session.ts';
import { dirname } from 'node:path';
import { loadConfigFile, LogConfigSchema } from '../common/config-file.ts';
import { checkSecretFile, checkTlsFiles, checkWritableDir } from '../common/config-paths.ts';
import { FilesConfigSchema } from './files.ts';
import { RetentionConfigSchema } from './retention.ts';
import { KEY_ID_PATTERN, MAX_COMMAND_TTL_S } from '../protocol/signed-command.ts';
import { readPrivateKey } from '../common/keys.ts';
import { readFileSync } from 'node:fs';
import { IdentitiesFileSchema, vehiclesOf } from '../protocol/acl.ts';
import type { VehicleRef } from '../protocol/topics.ts';

export const DispatchConfigSchema = z
  .object({
    mqtt: MqttConnectionSchema,
    /**
     * MQTT 5 shared-subscription group: receivers in one group split the
     * fleet's uplink between them ($share/{group}/...). null subscribes
     * plainly (brokers without shared subscriptions, such as the demo's aedes).
     */
    sharedGroup: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/).nullable().default('dispatch'),
    storage: z
      .object({
        /** Dispatch's SQLite file (created if missing). */
        path: z.string().min(1),
      })
      .strict(),
    /**
     * The receiver's second connection, for alarms and incidents only (they never wait behind the fleet's track):
     * it logs in as "{username}/alarms" with the same password. Over TLS with a certificate it needs one of its own,
     * issued for that identity (busguard pki server dispatch/NAME/alarms): give it here.
     */
    alarmConnection: z
      .object({ certFile: z.string().min(1), keyFile: z.string().min(1) })
      .strict()
      .nullable()
      .default(null),
    /** Evidence files from the buses; `dir` defaults to "evidence" beside storage.path. */
    files: FilesConfigSchema.extend({ dir: z.string().min(1).nullable().default(null) }).prefault({}),
    ack: z
      .object({
        /** Re-send an acknowledgement the bus has not confirmed after this long. */
        resendS: z.number().min(0.5).max(3_600).default(10),
      })
      .strict()
      .prefault({}),
    /** The key every command to a bus is signed with (protocol/signed-command.ts). */
    signing: z
      .object({
        /** The key's id, as the buses' trust.dispatchKeys name it. */
        keyId: z.string().regex(KEY_ID_PATTERN, 'letters, digits, ".", "_" or "-", 1 to 64 characters'),
        /** PEM file of the Ed25519 private key, mode 0600 (busguard pki keygen writes ID.key). */
        privateKeyFile: z.string().min(1),
        /** How long a signed command stays valid; what is re-sent is signed again. */
        ttlS: z.number().int().min(10).max(MAX_COMMAND_TTL_S).default(3_600),
      })
      .strict(),
    /** Whose signatures of alarm records and evidence files dispatch accepts as the units' own. */
    trust: z
      .object({
        /** The fleet CA's certificate (busguard pki ca init): a unit's certificate must be issued by it. null: signatures are checked, their issuer is not. */
        fleetCaFile: z.string().min(1).nullable().default(null),
      })
      .strict()
      .prefault({}),
    /** How long each kind is kept; an open or held alarm's evidence and track never go (dispatch/retention.ts). */
    retention: RetentionConfigSchema.prefault({}),
    fleet: z
      .object({
        /** The fleet's identities file (the one `busguard broker acl` reads): its buses are the registered ones in `busguard dispatch vehicles`, listed even before they are first heard from. */
        identitiesFile: z.string().min(1).nullable().default(null),
      })
      .strict()
      .prefault({}),
    log: LogConfigSchema,
  })
  .strict();

export type DispatchConfig = z.output<typeof DispatchConfigSchema>;

export function loadDispatchConfig(file: string): DispatchConfig {
  return loadConfigFile(file, DispatchConfigSchema);
}

/** What the config names on disk, checked before the receiver opens anything (common/config-paths.ts). */
export function checkDispatchPaths(c: DispatchConfig): string[] {
  const problems: string[] = [];
  if (c.mqtt.passwordFile !== undefined) checkSecretFile('mqtt.passwordFile', c.mqtt.passwordFile, problems);
  checkTlsFiles(c.mqtt, problems);
  if (c.alarmConnection !== null) checkTlsFiles(c.alarmConnection, problems, 'alarmConnection.caFile', 'alarmConnection');
  else if (c.mqtt.certFile !== undefined && /^(mqtts|wss):/i.test(c.mqtt.url)) {
    problems.push('key "alarmConnection": this receiver logs in with a certificate; its alarm connection needs one of its own, issued for "{identity}/alarms" (busguard pki server), given as alarmConnection.certFile and keyFile');
  }
  checkWritableDir('storage.path', dirname(c.storage.path), problems, c.storage.path);
  if (c.files.dir !== null) checkWritableDir('files.dir', c.files.dir, problems);
  readPrivateKey('signing.privateKeyFile', c.signing.privateKeyFile, problems);
  if (c.trust.fleetCaFile !== null) checkTlsFiles({ caFile: c.trust.fleetCaFile }, problems, 'trust.fleetCaFile');
  if (c.fleet.identitiesFile !== null) {
    try {
      registeredVehicles(c.fleet.identitiesFile);
    } catch (err) {
      problems.push(`key "fleet.identitiesFile" = ${JSON.stringify(c.fleet.identitiesFile)}: ${(err as Error).message}`);
    }
  }
  return problems;
}

/** The buses the fleet's identities file lists; throws saying what is wrong with it. */
export function registeredVehicles(file: string): VehicleRef[] {
  const parsed = IdentitiesFileSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
  if (!parsed.success) throw new Error(parsed.error.issues.map((i) => `${i.path.join('.') || 'file'}: ${i.message}`).join('; '));
  return vehiclesOf(parsed.data);
}
