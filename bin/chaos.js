#!/usr/bin/env node
// `npm run chaos [-- --cycles N --seed S]`: the fault-injection run; its last line is one JSON summary.
import { register } from 'tsx/esm/api';

register();
process.env.BUSGUARD_CHAOS_MAIN = '1';
await import('../scripts/chaos.ts');
