// Signed commands for the unit tests of both ends (protocol/signed-command.ts):
// one dispatch key pair in memory, the bus's check that trusts it, and
// commands sealed with it, or with a key nobody trusts.

import { type KeyObject, createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { CommandTrust } from '../../gateway/command-trust.ts';
import { signCommand } from '../../protocol/signed-command.ts';
import type { DownlinkKind, VehicleRef } from '../../protocol/topics.ts';

/** An Ed25519 key pair from a 32-byte seed named `name`: the same in every process of a test (a child bus, its parent). */
function seededKey(name: string): { privateKey: KeyObject; publicKey: KeyObject } {
  const seed = createHash('sha256').update(name).digest();
  // PKCS#8 for Ed25519 is a fixed 16-byte prefix and the seed (RFC 8410).
  const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

export const TEST_KEY_ID = 'test-dispatch';
export const testKey = seededKey('busguard test dispatch key');
/** A key the bus does not trust (an attacker's). */
export const strangerKey = seededKey('busguard test stranger key');

/** The bus's check, trusting testKey only. */
export function testTrust(self: VehicleRef, log: Logger = pino({ level: 'silent' }), now: () => Date | null = () => new Date()): CommandTrust {
  return new CommandTrust({ self, keys: new Map([[TEST_KEY_ID, testKey.publicKey]]), clockSkewS: 60, now, log });
}

/** A command signed with testKey (or `o.key`) for `to`, valid an hour from `o.now`. */
export function sealed(kind: DownlinkKind, to: VehicleRef, message: object, o: { key?: typeof testKey; keyId?: string; now?: Date; ttlS?: number } = {}): Buffer {
  return signCommand({ keyId: o.keyId ?? TEST_KEY_ID, privateKey: (o.key ?? testKey).privateKey, by: 'test' }, kind, to, message, o.now ?? new Date(), o.ttlS ?? 3600);
}

/** testKey as PEM files in `dir`: test-dispatch.key (0600) and test-dispatch.pub. */
export function writeTestKeyFiles(dir: string): { privateKeyFile: string; publicKeyFile: string } {
  const privateKeyFile = join(dir, `${TEST_KEY_ID}.key`);
  const publicKeyFile = join(dir, `${TEST_KEY_ID}.pub`);
  writeFileSync(privateKeyFile, testKey.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  chmodSync(privateKeyFile, 0o600);
  writeFileSync(publicKeyFile, testKey.publicKey.export({ type: 'spki', format: 'pem' }));
  return { privateKeyFile, publicKeyFile };
}
