// GET /jobs through HTTP, Redis and a worker on the demo bundle: a key's own jobs, newest first,
// page by page with a cursor, filtered by status and kind; another key's never show.
import t from 'tap';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { assertContract } from './contract.ts';
import { postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

const ALPHA = 'alpha-key-0123456789abcdef';
const BETA = 'beta-key-0123456789abcdef0';
const keys = keyRing(parseApiKeys(`alpha:${ALPHA},beta:${BETA}`).tenants);
const auth = (key: string) => ({ authorization: `Bearer ${key}` });

t.test("a key's jobs, newest first, by page and filter; no other key's", async (t) => {
  const s = await startStack(t, { build: buildDemoBundle, access: { keys, rateLimitPerMinute: 10_000, maxStreamsPerKey: 50 } });
  const done = { ...auth(ALPHA), prefer: 'wait=60' };
  const face = { bytes: await faceFile(3) };
  const made: string[] = [];
  const submit = async (path: string, fields: Record<string, unknown>, key = ALPHA) => {
    const body = (await (await postForm(s.base, path, fields as never, key === ALPHA ? done : { ...auth(key), prefer: 'wait=60' })).json()) as { id: string; status: string };
    t.equal(body.status, 'succeeded', `${path} ran`);
    return body.id;
  };
  made.push(await submit('/generate', { image: face, prompt: 'a portrait', steps: 2 }));
  made.push(await submit('/compare', { image_a: face, image_b: face }));
  made.push(await submit('/generate', { image: face, prompt: 'another', steps: 2 }));
  const betas = await submit('/compare', { image_a: face, image_b: face }, BETA);
  // A job that fails: a face index the demo's one face does not have.
  made.push(((await (await postForm(s.base, '/compare', { image_a: face, image_b: face, face_index_a: 2 }, done)).json()) as { id: string }).id);

  const list = async (query: string, key = ALPHA) => {
    const res = await fetch(`${s.base}/jobs${query}`, { headers: auth(key) });
    const body = (await res.json()) as { jobs: Array<{ id: string; kind: string; status: string }>; next_cursor: string | null };
    assertContract(t, 'GET', '/jobs', res.status, body);
    return body;
  };
  const all = await list('');
  t.same(all.jobs.map((j) => j.id), [...made].reverse(), 'every job of the key, newest first');
  t.equal(all.next_cursor, null, 'one page');

  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const page = await list(`?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    seen.push(...page.jobs.map((j) => j.id));
    cursor = page.next_cursor;
    pages++;
  } while (cursor && pages < 5);
  t.same(seen, [...made].reverse(), 'the same, two at a time');
  t.equal(pages, 2, 'two pages of two');

  t.same((await list('?kind=compare')).jobs.map((j) => j.id), [made[3], made[1]], 'kind=compare');
  t.same((await list('?status=failed')).jobs.map((j) => [j.id, j.status]), [[made[3], 'failed']], 'status=failed');
  t.same((await list('?kind=generate&status=succeeded&limit=1')).jobs.map((j) => j.id), [made[2]], 'both filters, one at a time');
  t.same((await list('', BETA)).jobs.map((j) => j.id), [betas], "the other key sees its own job only");

  for (const query of ['?cursor=nope', '?limit=0', '?limit=101', '?status=lost', '?kind=paint']) {
    const res = await fetch(`${s.base}/jobs${query}`, { headers: auth(ALPHA) });
    t.equal(res.status, 400, `${query}: 400`);
    t.equal(((await res.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_VALIDATION');
  }
});
