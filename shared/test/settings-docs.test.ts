// The README's settings table is checked against the one table in shared/src/settings.ts.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { SETTINGS } from '../src/index.ts';

const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
const table = /<!-- settings:start -->([\s\S]*?)<!-- settings:end -->/.exec(readme)?.[1] ?? '';

t.test('the README lists every setting with its default and meaning, and no other', async (t) => {
  const rows = new Map(
    table
      .split('\n')
      .map((line) => /^\| `([A-Z_]+)` \| (.*?) \| (.*?) \|$/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1] as string, { def: m[2] as string, doc: m[3] as string }]),
  );
  t.equal(rows.size, Object.keys(SETTINGS).length, 'one row per setting');
  for (const s of Object.values(SETTINGS)) {
    const row = rows.get(s.env);
    t.ok(row, `${s.env} is in the README`);
    if (!row) continue;
    const def = s.default === undefined ? '(unset)' : s.env === 'DIFFID_DATA_DIR' ? '`var/`' : `\`${String(s.default)}\``;
    t.equal(row.def, def, `${s.env} default`);
    t.equal(row.doc, s.doc, `${s.env} meaning`);
  }
});
