// The typed client against the live API: every helper through real HTTP, Redis and a worker; its
// types are the generated ones (this file type-checks against them in `npm test`), and the
// generated file is checked to be what openapi-typescript makes of openapi.yaml today.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import openapiTS, { astToString } from 'openapi-typescript';
import { animationInfo, imageInfo } from '@diffid/shared/image';
import { buildDemoBundle } from '../../services/gpu-worker/src/bundles/demo-bundle.ts';
import { startStack } from '../../services/api/test/harness.ts';
import { faceFile } from '../../services/api/test/images.ts';
import { DiffIdApiError, createDiffIdClient, type Job } from '../src/index.ts';

const OPENAPI = new URL('../../openapi.yaml', import.meta.url);

t.test('the generated types are what openapi-typescript makes of openapi.yaml now', async (t) => {
  const fresh = astToString(await openapiTS(OPENAPI));
  const committed = await readFile(fileURLToPath(new URL('../src/api-types.ts', import.meta.url)), 'utf8');
  // The committed file carries a generated-by header; compare the declarations.
  t.equal(committed.slice(committed.indexOf('export interface paths')), fresh.slice(fresh.indexOf('export interface paths')), 'run `npm run contract:types` after changing openapi.yaml');
});

t.test('stored identities through the typed client: store, use, list, delete', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const client = createDiffIdClient({ baseUrl: s.base });
  const identity = await client.createIdentity({ image: [await faceFile(5), await faceFile(6)], name: 'subject 5' });
  t.match(identity, { name: 'subject 5', status: 'ready', photos: 2 });
  const job = await client.wait((await client.generate({ identity: identity.id, prompt: 'a portrait', steps: 3 })).id);
  t.equal(job.status, 'succeeded');
  t.equal((job.params as { photos?: number }).photos, 2, 'both stored photos were used');
  const morph = await client.wait((await client.morph({ identity_a: identity.id, image_b: await faceFile(7), alpha: 0.5, steps: 3 })).id);
  t.equal(morph.status, 'succeeded');
  t.same((await client.identities({ limit: 10 })).identities.map((i) => i.id), [identity.id]);
  t.equal((await client.identity(identity.id)).id, identity.id);
  const listed = await client.jobs({ kind: 'morph' });
  t.same(listed.jobs.map((j) => j.id), [morph.id], 'the job list, filtered by kind');
  await client.deleteIdentity(identity.id);
  const gone = await client.identity(identity.id).catch((err: unknown) => err);
  t.ok(gone instanceof DiffIdApiError && gone.status === 404 && gone.code === 'DIFFID_ERR_IDENTITY_NOT_FOUND', 'deleted: 404 with its code');
});

t.test('generate, morph and compare through the typed client', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const client = createDiffIdClient({ baseUrl: s.base });
  const accepted = await client.generate({ image: { bytes: await faceFile(1), name: 'a.jpg' }, prompt: 'a portrait', num_images: 2, seed: 7, steps: 4 });
  const seen: Job['status'][] = [];
  const job = await client.wait(accepted.id, { onUpdate: (j) => seen.push(j.status) });
  t.equal(job.status, 'succeeded');
  t.equal(seen.at(-1), 'succeeded', `followed from the event stream: ${[...new Set(seen)].join(' → ')}`);
  const images = job.result?.images ?? [];
  t.same(images.map((i) => i.seed), [7, 8]);
  t.match(await imageInfo(await client.image(job.id, 1)), { format: 'png', width: 256, height: 256 });

  const morph = await client.wait((await client.morph({ image_a: await faceFile(2), image_b: await faceFile(3), frames: 3, steps: 4, animation: 'gif' })).id);
  t.equal(morph.result?.images.length, 3);
  t.match(await animationInfo(await client.animation(morph.id, 'gif')), { format: 'gif', frames: 3 });

  const compare = await client.compare({ image_a: await faceFile(4), image_b: await faceFile(4) }, 20);
  t.equal((compare as Job).status, 'succeeded', 'Prefer: wait answered with the finished job');
  t.ok(((compare as Job).result?.similarity ?? 0) > 0.99, 'a face compared with itself');

  const err = await client.job('no-such-job').catch((e: unknown) => e);
  t.ok(err instanceof DiffIdApiError);
  t.match(err, { status: 404, code: 'DIFFID_ERR_JOB_NOT_FOUND' });
  const bad = await client.generate({ image: new Uint8Array([1, 2, 3]), prompt: 'x' }).catch((e: unknown) => e);
  t.match(bad, { status: 415, code: 'DIFFID_ERR_UNSUPPORTED_IMAGE' });
});

t.test('an API key goes with every request', async (t) => {
  const { keyRing, parseApiKeys } = await import('../../services/api/src/auth.ts');
  const s = await startStack(t, { worker: false, access: { keys: keyRing(parseApiKeys('lab:k-123456789012345678901234').tenants), rateLimitPerMinute: 1000, maxStreamsPerKey: 5 } });
  const anonymous = await createDiffIdClient({ baseUrl: s.base }).generate({ image: await faceFile(5), prompt: 'x' }).catch((e: unknown) => e);
  t.match(anonymous, { status: 401, code: 'DIFFID_ERR_UNAUTHORIZED' });
  const keyed = createDiffIdClient({ baseUrl: s.base, apiKey: 'k-123456789012345678901234' });
  const { id } = await keyed.generate({ image: await faceFile(5), prompt: 'x' });
  t.equal((await keyed.job(id)).status, 'queued');
  t.equal((await keyed.cancel(id)).status, 'canceled');
});
