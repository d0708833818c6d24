#!/usr/bin/env node
// The xlir command line. Sources are TypeScript run through tsx (no separate compile step).
import { register } from 'tsx/esm/api';
register();
await import('../src/cli.ts');
