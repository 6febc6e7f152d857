// The same rules as protocol/mosquitto/acl, as a function, for brokers that
// take a callback instead of an ACL file (the demo's in-process aedes).

import { ROOT, VERSION } from './topics.ts';

export const DISPATCH_USER = 'dispatch';

/** May `username` publish ('write') or subscribe ('read') to this topic or filter? */
export function aclAllows(username: string | undefined, access: 'read' | 'write', topic: string): boolean {
  if (!username) return false;
  const t = stripShare(topic).split('/');
  // Six levels, or deeper under up/file/ (evidence files: protocol/file-transfer.ts).
  const fileTopic = t.length > 6 && t[4] === 'up' && t[5] === 'file';
  if ((t.length !== 6 && !fileTopic) || t[0] !== ROOT || t[1] !== VERSION) return false;
  const [, , fleet, vehicle, direction, kind] = t as [string, string, string, string, string, string];
  if (kind === '#' || kind === '') return false;
  const rest = t.slice(6);
  if (rest.some((l) => l === '')) return false;
  if (username === DISPATCH_USER) {
    return (access === 'read' && direction === 'up') || (access === 'write' && direction === 'down' && !isWild(fleet) && !isWild(vehicle));
  }
  if (`${fleet}/${vehicle}` !== username) return false;
  return (access === 'write' && direction === 'up' && !isWild(kind) && !rest.some(isWild)) || (access === 'read' && direction === 'down');
}

function isWild(level: string): boolean {
  return level === '+' || level === '#';
}

function stripShare(filter: string): string {
  // $share/{group}/{filter}: the ACL applies to the filter itself.
  if (!filter.startsWith('$share/')) return filter;
  return filter.split('/').slice(2).join('/');
}
