// What a broker's PUBACK reason code means for the file pump
// (gateway/upload-pump.ts). With prefix "$file" the commands go to EMQX's own
// file transfer: no dispatch receipts come, and the reason codes of EMQX's
// synchronous mode are the confirmation instead (0x00 held, 0x80 segment
// again / file again after fin, 0x83 cancel, 0x97 pause, 0x10 file again).
// With our own prefix only a refusal counts (dispatch's receipts confirm),
// and an ACL or size refusal will not go away by itself.

/** EMQX file-transfer PUBACK reason codes (its synchronous mode). */
export const RC = { ok: 0x00, noSubscribers: 0x10, unspecified: 0x80, specific: 0x83, notAuthorized: 0x87, tooLarge: 0x95, quota: 0x97 } as const;

/** Which file-transfer command a PUBACK answers. */
export type FileVerb = 'init' | 'segment' | 'fin';

/** What the pump does about an answer. */
export type Verdict =
  /** Held: init known, segment confirmed, file delivered. */
  | { act: 'held' }
  /** Send the whole file again (counts against maxRestarts). */
  | { act: 'restart'; why: string }
  /** Give the file up, with the reason. */
  | { act: 'fail'; reason: string }
  /** Send the command again later; `pause` holds every file for resendS first (quota). */
  | { act: 'again'; pause: boolean };

const hex = (rc: number): string => `0x${rc.toString(16)}`;

/** Our broker refused a publish (vehicle prefix; also EMQX's answers on authorization and size). */
export function refusalVerdict(what: FileVerb, rc: number): Extract<Verdict, { act: 'fail' | 'again' }> {
  if (rc === RC.notAuthorized) return { act: 'fail', reason: `the broker refused the ${what} (not authorized, 0x87): check the broker ACL and files.prefix` };
  if (rc === RC.tooLarge) {
    return { act: 'fail', reason: `the broker refused the ${what} as too large (0x95): lower files.segmentBytes or raise files.brokerMaxPacketBytes to the broker's real limit` };
  }
  return { act: 'again', pause: rc === RC.quota };
}

/** EMQX's file-transfer reason codes, synchronous mode. */
export function emqxVerdict(what: FileVerb, rc: number): Verdict {
  if (rc === RC.ok) return { act: 'held' };
  if (rc === RC.noSubscribers) {
    // mqtt.js reports 0x10 as plain success; EMQX means "send the file again" by it (but at init: go on).
    if (what === 'init') return { act: 'held' };
    if (what === 'segment') return { act: 'restart', why: 'EMQX asked for every segment again (0x10)' };
  }
  if (what === 'fin' && (rc === RC.noSubscribers || rc === RC.unspecified)) return { act: 'restart', why: `EMQX refused fin (${hex(rc)}): every segment again` };
  if (rc === RC.specific) return { act: 'fail', reason: `EMQX cancelled the transfer at ${what} (0x83)` };
  return refusalVerdict(what, rc);
}

/**
 * The reason code of each PUBACK, by packet id: mqtt.js hands a publish's
 * callback an error for codes of 0x80 and up, but reports 0x10 as plain
 * success, so the codes are read off the packets as they arrive.
 */
export class PubackCodes {
  private readonly codes = new Map<number, number>();

  /** Feed with the client's 'packetreceive' events. */
  readonly onPacket = (p: { cmd: string; messageId?: number; reasonCode?: number }): void => {
    if (p.cmd === 'puback' && p.messageId !== undefined) this.codes.set(p.messageId, p.reasonCode ?? 0);
  };

  /** The code that answered a publish, given its callback's arguments (taken once). */
  take(err: Error | undefined, packet: { messageId?: number } | undefined): number {
    if (err) return (err as Error & { code?: number }).code ?? RC.unspecified;
    const id = packet?.messageId;
    if (id === undefined) return RC.ok;
    const rc = this.codes.get(id) ?? RC.ok;
    this.codes.delete(id);
    return rc;
  }

  /** A new connection: packet ids start over. */
  clear(): void {
    this.codes.clear();
  }
}
