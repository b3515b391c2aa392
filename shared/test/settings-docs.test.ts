// docs/configuration.md's settings table is checked against the one table of settings, SETTINGS.
// Each row: the variable, its default, what it does, and which process reads it. "What it does"
// is SETTINGS' own `doc`, or its first clauses, cut where a clause ends (before ";", ":", " (" or
// "."), so that table cells stay short; the rest of a long `doc` is written under the table.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { SETTINGS } from '@diffid/shared/settings';

const DOC = 'docs/configuration.md';
const text = readFileSync(new URL(`../../${DOC}`, import.meta.url), 'utf8');
const table = /<!-- settings:start -->([\s\S]*?)<!-- settings:end -->/.exec(text)?.[1] ?? '';
const READERS = ['API', 'worker', 'both'];
const MAX_CELL = 160;

/** True when `cell` is `doc`, or `doc` up to the end of one of its clauses. */
const clauseOf = (doc: string, cell: string): boolean =>
  cell.length > 0 && (doc === cell || (doc.startsWith(cell) && /^(;|:| \(|\.)/.test(doc.slice(cell.length))));

t.test(`${DOC} lists every setting with its default, meaning and reader, and no other`, async (t) => {
  t.ok(table, `${DOC} has its settings table`);
  const rows = new Map(
    table
      .split('\n')
      .map((line) => /^\| `([A-Z0-9_]+)` \| (.*?) \| (.*?) \| (.*?) \|$/.exec(line))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => [m[1] as string, { def: m[2] as string, doc: m[3] as string, reader: m[4] as string }]),
  );
  t.equal(rows.size, Object.keys(SETTINGS).length, 'one row per setting');
  for (const s of Object.values(SETTINGS)) {
    const row = rows.get(s.env);
    t.ok(row, `${s.env} is in ${DOC}`);
    if (!row) continue;
    const def = s.default === undefined ? '(unset)' : s.env === 'DIFFID_DATA_DIR' ? '`var/`' : `\`${String(s.default)}\``;
    t.equal(row.def, def, `${s.env} default`);
    t.ok(clauseOf(s.doc, row.doc), `${s.env} meaning is its doc or the doc's first clauses`, { found: row.doc, doc: s.doc });
    t.ok(row.doc.length <= MAX_CELL, `${s.env} meaning is at most ${MAX_CELL} characters`, { length: row.doc.length });
    t.ok(READERS.includes(row.reader), `${s.env} is read by one of ${READERS.join(', ')}`, { found: row.reader });
  }
  for (const env of rows.keys()) t.ok(Object.values(SETTINGS).some((s) => s.env === env), `${env} is a setting`);
});

t.test('the README sends readers to the settings table', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  t.notMatch(readme, /<!-- settings:start -->/, 'the README holds no copy of the table');
  t.match(readme, /\(docs\/configuration\.md\)/, 'the README links docs/configuration.md');
});
