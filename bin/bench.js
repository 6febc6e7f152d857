#!/usr/bin/env node
// `npm run bench -- NAME`: run one benchmark; its last line is one JSON object.
import { register } from 'tsx/esm/api';

register();
await import('../scripts/bench/index.ts');
