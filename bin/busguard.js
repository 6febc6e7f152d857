#!/usr/bin/env node
// busguard's single command. The sources are TypeScript run through tsx's
// loader (no build step: what is in the repository is what runs).
import { register } from 'tsx/esm/api';

register();
await import('../scripts/cli.ts');
