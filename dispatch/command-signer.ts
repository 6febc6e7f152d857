// Dispatch signs every command it sends a bus (protocol/signed-command.ts)
// with the key of signing.privateKeyFile; the bus acts on nothing else.

import type { KeyObject } from 'node:crypto';
import { hostname } from 'node:os';
import { ConfigError } from '../common/config-file.ts';
import { readPrivateKey } from '../common/keys.ts';
import { signCommand } from '../protocol/signed-command.ts';
import { type DownlinkKind, type VehicleRef, downlinkTopic } from '../protocol/topics.ts';
import type { DispatchConfig } from './config.ts';

/** Who signs what a receiver sends on its own (receipts, re-sent acks and requests). */
export function receiverIdentity(): string {
  return `dispatch@${hostname()}`;
}

export class DispatchSigner {
  private constructor(
    private readonly keyId: string,
    private readonly privateKey: KeyObject,
    private readonly ttlS: number,
    /** Who signs: this receiver, or the person acting. */
    readonly by: string,
  ) {}

  /** The signing key of `config`; a ConfigError naming signing.privateKeyFile when it cannot be used. */
  static fromConfig(config: DispatchConfig, by: string, configFile = '(dispatch config)'): DispatchSigner {
    const problems: string[] = [];
    const key = readPrivateKey('signing.privateKeyFile', config.signing.privateKeyFile, problems);
    if (!key) throw new ConfigError(configFile, problems);
    return new DispatchSigner(config.signing.keyId, key, config.signing.ttlS, by);
  }

  /** The same key, signing in the name of `by` (the dispatcher or officer acting). */
  as(by: string): DispatchSigner {
    return new DispatchSigner(this.keyId, this.privateKey, this.ttlS, by);
  }

  /** The topic and signed payload of a command to one bus. */
  seal(kind: DownlinkKind, ref: VehicleRef, message: object, now = new Date()): { topic: string; payload: Buffer } {
    return { topic: downlinkTopic(ref, kind), payload: signCommand({ keyId: this.keyId, privateKey: this.privateKey, by: this.by }, kind, ref, message, now, this.ttlS) };
  }
}
