// The configuration the guides show is the configuration the suite starts.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';

import { fileBlocks } from './lib/guides.mjs';
import { GUIDE_DIR } from './lib/servers.mjs';

test('every file block in the forward-auth guides is the tested file, verbatim', () => {
  const blocks = fileBlocks();
  assert.ok(blocks.length >= 7);
  for (const b of blocks) assert.equal(b.shown, b.file, `${b.guide}: the ${b.name} block differs (run: node tests/forward-auth/sync-guides.mjs)`);
});

test('every tested file is shown by a guide', () => {
  const shown = new Set(fileBlocks().map((b) => b.name));
  for (const f of fs.readdirSync(GUIDE_DIR)) assert.ok(shown.has(f), `${f} is in no guide`);
});
