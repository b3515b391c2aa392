// Stored identities through HTTP, Redis and a worker on the demo bundle: stored once, checked,
// used by generate, morph and compare in place of photos with the same pixels, listed a page at a
// time, kept to the key that made them, limited per key, and deleted without a key left behind.
import t from 'tap';
import type { Redis } from 'ioredis';
import { decodeRgb } from '@diffid/shared/image';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { assertContract } from './contract.ts';
import { postForm, startStack, type Fields } from './harness.ts';
import { faceFile } from './images.ts';

const ALPHA = 'alpha-key-0123456789abcdef';
const BETA = 'beta-key-0123456789abcdef0';
const keys = keyRing(parseApiKeys(`alpha:${ALPHA},beta:${BETA}`).tenants);
const auth = (key: string) => ({ authorization: `Bearer ${key}` });
/** Jobs answered when done, in one request (Prefer: wait). */
const waited = (key: string) => ({ ...auth(key), prefer: 'wait=60' });

async function json(res: Response): Promise<Record<string, any>> {
  return (await res.json()) as Record<string, any>;
}

/** Every key under the stack's prefix that names this identity. */
async function keysOf(redis: Redis, prefix: string, id: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 500);
    found.push(...batch.filter((k) => k.includes(id)));
    cursor = next;
  } while (cursor !== '0');
  return found;
}

/** A result image's pixels (its PNG's metadata names the job's parameters, which differ). */
async function pixels(base: string, key: string, view: Record<string, any>, i = 0): Promise<Buffer> {
  const res = await fetch(`${base}${view.result.images[i].url}`, { headers: auth(key) });
  return Buffer.from((await decodeRgb(new Uint8Array(await res.arrayBuffer()))).data);
}

t.test('an identity is stored, checked, used in place of its photos with the same pixels, and deleted without a trace', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle, access: { keys, rateLimitPerMinute: 10_000, maxStreamsPerKey: 50 } });
  const photos: Fields = { image: { bytes: await faceFile(11) } };
  const created = await postForm(s.base, '/identities', { ...photos, name: 'subject 11' }, auth(ALPHA));
  const identity = await json(created);
  t.equal(created.status, 201, JSON.stringify(identity));
  assertContract(t, 'POST', '/identities', 201, identity);
  t.equal(created.headers.get('location'), `/identities/${identity.id}`);
  t.match(identity, { name: 'subject 11', status: 'ready', photos: 1, warnings: [] });
  t.equal(identity.faces.length, 1, 'the face found in the photo');
  t.equal(identity.faces[0].face_index, 0);
  const lifetime = Date.parse(identity.expires_at) - Date.parse(identity.created_at);
  t.equal(lifetime, 30 * 86_400_000, 'kept for DIFFID_IDENTITY_TTL_SECONDS (its default)');

  // The same seed gives the same pixels by photo and by identity.
  const base = { prompt: 'a portrait', steps: 8, seed: 21, num_images: 2 };
  const byPhoto = await json(await postForm(s.base, '/generate', { ...base, ...photos }, waited(ALPHA)));
  const byIdentity = await json(await postForm(s.base, '/generate', { ...base, identity: identity.id }, waited(ALPHA)));
  t.equal(byIdentity.status, 'succeeded', JSON.stringify(byIdentity.error ?? ''));
  t.equal(byIdentity.params.identity, identity.id, 'the job records the identity');
  for (const i of [0, 1]) t.ok((await pixels(s.base, ALPHA, byIdentity, i)).equals(await pixels(s.base, ALPHA, byPhoto, i)), `image ${i}: the same pixels by identity as by photo`);
  t.same(byIdentity.result.images.map((x: any) => x.arcface_similarity), byPhoto.result.images.map((x: any) => x.arcface_similarity));

  // Another key can neither read, use, list nor delete it.
  t.equal((await fetch(`${s.base}/identities/${identity.id}`, { headers: auth(BETA) })).status, 404, "another key's GET: 404");
  const used = await postForm(s.base, '/generate', { ...base, identity: identity.id }, auth(BETA));
  t.equal(used.status, 404, "another key's generate: 404");
  t.equal((await json(used)).error.code, 'DIFFID_ERR_IDENTITY_NOT_FOUND');
  t.same((await json(await fetch(`${s.base}/identities`, { headers: auth(BETA) }))).identities, [], "another key's list is empty");
  t.equal((await fetch(`${s.base}/identities/${identity.id}`, { method: 'DELETE', headers: auth(BETA) })).status, 404, "another key's DELETE: 404");

  // A photo and an identity on the two sides of a morph and a compare.
  const morph = await json(await postForm(s.base, '/morph', { identity_a: identity.id, image_b: { bytes: await faceFile(12) }, alpha: 0.5, steps: 6 }, waited(ALPHA)));
  t.equal(morph.status, 'succeeded', JSON.stringify(morph.error ?? ''));
  t.equal(morph.params.identity_a, identity.id);
  const compared = await json(await postForm(s.base, '/compare', { image_a: photos.image as never, identity_b: identity.id }, waited(ALPHA)));
  t.ok(compared.result.similarity > 0.999, `a photo compared with its own identity: ${compared.result.similarity}`);

  // Mistakes a client can make with it: 400 with what to fix.
  for (const [path, fields, code, message] of [
    ['/generate', { ...base, ...photos, identity: identity.id }, 'DIFFID_ERR_VALIDATION', /give "image" or "identity", not both/],
    ['/generate', { ...base, identity: identity.id, face_index: '0' }, 'DIFFID_ERR_VALIDATION', /"face_index" cannot go with "identity"/],
    ['/generate', base, 'DIFFID_ERR_MISSING_FILE', /or give "identity", a stored identity's id/],
    ['/morph', { identity_a: identity.id, alpha: 0.5 }, 'DIFFID_ERR_MISSING_FILE', /"image_b" is missing/],
    ['/generate', { ...base, identity: 'not-an-id' }, 'DIFFID_ERR_IDENTITY_NOT_FOUND', /no identity not-an-id/],
  ] as const) {
    const res = await postForm(s.base, path, fields as Fields, auth(ALPHA));
    const body = await json(res);
    t.equal(body.error?.code, code, `${path} ${Object.keys(fields).join(',')}: ${code}`);
    t.match(body.error?.message, message);
    assertContract(t, 'POST', path, res.status, body);
  }

  // Delete removes every key it had, the latents the morph cached included.
  t.ok((await keysOf(s.redis, s.prefix, identity.id)).some((k) => k.includes(':inverted:')), 'the morph kept its inverted latents with the identity');
  t.equal((await fetch(`${s.base}/identities/${identity.id}`, { method: 'DELETE', headers: auth(ALPHA) })).status, 204);
  t.same(await keysOf(s.redis, s.prefix, identity.id), [], 'no key of the deleted identity is left in Redis');
  t.equal((await fetch(`${s.base}/identities/${identity.id}`, { headers: auth(ALPHA) })).status, 404, 'then it is gone');
  t.equal((await postForm(s.base, '/generate', { ...base, identity: identity.id }, auth(ALPHA))).status, 404, 'and cannot be used');
});

t.test('a morph of two stored identities reuses their inverted latents: the same frames without the inversion', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const store = async (seed: number) => json(await postForm(s.base, '/identities', { image: { bytes: await faceFile(seed) } }));
  const [a, b] = [await store(31), await store(32)];
  const fields = { identity_a: a.id, identity_b: b.id, alphas: '0,0.5,1', steps: 10, prompt: 'a portrait' };
  const prefer = { prefer: 'wait=60' };
  const first = await json(await postForm(s.base, '/morph', fields, prefer));
  const second = await json(await postForm(s.base, '/morph', fields, prefer));
  t.equal(second.status, 'succeeded');
  t.ok(first.result.timings_ms.stages.invert > 0, 'the first morph inverts both faces');
  t.equal(second.result.timings_ms.stages.invert, undefined, 'the second inverts neither');
  t.same(second.progress, first.progress, 'and counts the same steps');
  for (const i of [0, 1, 2]) {
    const [x, y] = await Promise.all([first, second].map(async (v) => Buffer.from((await decodeRgb(new Uint8Array(await (await fetch(`${s.base}${v.result.images[i].url}`)).arrayBuffer()))).data)));
    t.ok(x?.equals(y as Buffer), `frame ${i}: the same pixels`);
  }
  const other = await json(await postForm(s.base, '/morph', { ...fields, prompt: 'another prompt' }, prefer));
  t.ok(other.result.timings_ms.stages.invert > 0, 'another prompt conditions the inversion otherwise: inverted again');
  t.comment(`U-Net time: first morph ${first.result.timings_ms.stages.denoise + first.result.timings_ms.stages.invert} ms, with stored latents ${second.result.timings_ms.stages.denoise} ms`);
});

t.test('a photo that fails its check stores nothing; the per-key limit holds; the list pages by cursor', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle, identities: { ttlSeconds: 3600, limits: { maxPerKey: 3, maxBytesPerKey: 2 ** 30 } } });
  // The demo bundle takes every photo as one aligned face: a second face is not there.
  const noFace = await postForm(s.base, '/identities', { image: { bytes: await faceFile(9) }, face_index: '1' });
  const refused = await json(noFace);
  t.equal(noFace.status, 422, JSON.stringify(refused));
  assertContract(t, 'POST', '/identities', 422, refused);
  t.equal(refused.error.code, 'DIFFID_ERR_FACE_INDEX_OUT_OF_RANGE');
  t.match(refused.error.message, /is not stored/);
  t.same(await keysOf(s.redis, s.prefix, ':identity:'), [], 'no identity key is left');
  t.same((await json(await fetch(`${s.base}/identities`))).identities, [], 'nothing is listed');

  const ids: string[] = [];
  for (const seed of [1, 2, 3]) ids.push((await json(await postForm(s.base, '/identities', { image: { bytes: await faceFile(seed) }, name: `s${seed}` }))).id);
  const fourth = await postForm(s.base, '/identities', { image: { bytes: await faceFile(4) } });
  t.equal(fourth.status, 429);
  t.equal((await json(fourth)).error.code, 'DIFFID_ERR_TOO_MANY_IDENTITIES');

  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const res = await fetch(`${s.base}/identities?limit=2${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
    const page = await json(res);
    assertContract(t, 'GET', '/identities', 200, page);
    seen.push(...page.identities.map((i: any) => i.id));
    cursor = page.next_cursor;
    pages++;
  } while (cursor && pages < 5);
  t.same(seen, ids, 'two pages, in the order they were made (soonest to expire first)');
  t.equal(pages, 2);
  const bad = await fetch(`${s.base}/identities?cursor=nope`);
  t.equal(bad.status, 400);
  t.equal((await json(bad)).error.code, 'DIFFID_ERR_VALIDATION');
  t.equal((await fetch(`${s.base}/identities?limit=1000`)).status, 400, 'limit over 100: 400');

  t.equal((await fetch(`${s.base}/identities/${ids[0]}`, { method: 'DELETE' })).status, 204);
  t.equal((await postForm(s.base, '/identities', { image: { bytes: await faceFile(4) } })).status, 201, 'a deleted one frees its place');
});
