// What a hostile bus can put in front of a dispatcher: a route with terminal
// control sequences, a reason that reorders text, a clip whose busguard tag
// holds no times. Printed escaped, read as "unknown", never a crash.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { probeClip } from '../../dispatch/footage.ts';
import { listQueue } from '../../dispatch/main.ts';
import { printable } from '../../dispatch/printable.ts';
import { DispatchStore } from '../../dispatch/store.ts';
import { TEST_KEY_ID, writeTestKeyFiles } from '../helpers/command-keys.ts';
import { anAlarm } from '../helpers/messages.ts';

const dir = mkdtempSync(join(tmpdir(), 'bg-printable-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('bus-supplied text at dispatch', () => {
  it('control characters and text-reordering characters are shown as \\u escapes; the rest is left alone', () => {
    expect(printable('603\u001b[2J\u001b[Hall clear\r\n')).toBe('603\\u001b[2J\\u001b[Hall clear\\u000d\\u000a');
    expect(printable('line \u202eevil\u202c \u0085 \u200b')).toBe('line \\u202eevil\\u202c \\u0085 \\u200b');
    expect(printable('603 东大街 – Ü')).toBe('603 东大街 – Ü');
  });

  it('"dispatch alarms" prints a hostile route escaped, on one line', () => {
    const db = join(dir, 'd.db');
    const store = new DispatchStore(db);
    store.addAlarm(anAlarm({ route: '603\u001b[2J\u001b[31mALL CLEAR\nfake\tline' }));
    store.close();
    const config = write('d.json', { mqtt: { url: 'mqtt://127.0.0.1:1' }, storage: { path: db }, signing: { keyId: TEST_KEY_ID, privateKeyFile: writeTestKeyFiles(dir).privateKeyFile } });
    const out: string[] = [];
    const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => out.push(String(s)) > 0);
    try {
      listQueue(config, 'emergency', {});
    } finally {
      spy.mockRestore();
    }
    const text = out.join('');
    expect(text).not.toMatch(/[\u0000-\u0008\u000b-\u001f]/);
    const rows = text.trim().split('\n');
    expect(rows).toHaveLength(3); // count, header, the one alarm
    expect(rows[2]).toContain('603\\u001b[2J\\u001b[31mALL CLEAR\\u000afake\\u0009line');
  });

  it('a clip whose busguard tag holds no times has its gaps unknown, not a crash', async () => {
    const clip = join(dir, 'bad-tag.mp4');
    const comment = JSON.stringify({ 'busguard:gaps': [['x', 1e300]] });
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc=d=0.5:s=64x48:r=10', '-metadata', `comment=${comment}`, '-y', clip]);
    const probe = await probeClip(clip);
    expect(probe.gaps).toBeNull();
    expect(probe.durationS).toBeGreaterThan(0);
  });
});

function write(name: string, content: unknown): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(content));
  return file;
}
