#!/usr/bin/env node
// `npm run fuzz [-- --seconds N --seed S]`: hostile input for every parser and handler; its last line is one JSON summary.
import { register } from 'tsx/esm/api';

register();
await import('../scripts/fuzz.ts');
