// The guides show the tested files verbatim: every fenced block whose info string is
// `<lang> file=<name>` must hold exactly docs/guides/forward-auth/<name>.
// `node sync-guides.mjs` rewrites those blocks from the files after an edit.

import fs from 'node:fs';
import path from 'node:path';

import { GUIDE_DIR } from './servers.mjs';

export const GUIDES = ['nginx-auth-request.md', 'caddy-forward-auth.md', 'traefik-forward-auth.md']
  .map((g) => path.join(GUIDE_DIR, '..', g));

const BLOCK = /```(\w+) file=([\w.-]+)\n([\s\S]*?)```/g;

/** [{ guide, name, shown, file }] for every file block of every guide. */
export function fileBlocks() {
  const out = [];
  for (const guide of GUIDES) {
    const text = fs.readFileSync(guide, 'utf8');
    for (const m of text.matchAll(BLOCK)) {
      out.push({ guide, name: m[2], shown: m[3], file: fs.readFileSync(path.join(GUIDE_DIR, m[2]), 'utf8') });
    }
  }
  return out;
}

export function syncGuides() {
  for (const guide of GUIDES) {
    const text = fs.readFileSync(guide, 'utf8');
    fs.writeFileSync(guide, text.replace(BLOCK, (_, lang, name) => `\`\`\`${lang} file=${name}\n${fs.readFileSync(path.join(GUIDE_DIR, name), 'utf8')}\`\`\``));
  }
}
