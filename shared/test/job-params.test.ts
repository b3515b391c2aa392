// Job parameters settled from a request's fields in one step per kind (settleJob): the contract's
// defaults, the bundle's and random ones, derived fields, and fields copied as they are.
import t from 'tap';
import { DiffIdError } from '@diffid/shared/contract';
import { settleJob } from '@diffid/shared/job-params';
import { FORM_SCHEMAS, componentSchema } from '@diffid/shared/openapi';

const photo = [new Uint8Array(1)];
const pair = { image_a: photo, image_b: photo };

t.test('generate: every default the contract states, the bundle recommends, or draws at random', async (t) => {
  const bare = settleJob('generate', { prompt: 'a portrait' }, { files: { image: photo }, bundle: null }).params;
  t.match(bare, { prompt: 'a portrait', negative_prompt: '', num_images: 1, steps: 30, guidance_scale: 5, photos: 1, on_missing_face: 'fail' });
  t.notOk('face_index' in bare, 'no face_index: the largest face of each photo');
  t.ok(Number.isInteger(bare.seed) && bare.seed >= 0 && bare.seed <= 4294967295, `a random seed (${bare.seed})`);
  const seeds = new Set(Array.from({ length: 8 }, () => settleJob('generate', { prompt: 'a' }, { files: { image: photo }, bundle: null }).params.seed));
  t.ok(seeds.size > 1, 'seeds differ between requests');
  const bundle = { defaults: { steps: 12, guidance_scale: 1 } };
  t.match(settleJob('generate', { prompt: 'a' }, { files: { image: photo }, bundle }).params, { steps: 12, guidance_scale: 1 }, "the bundle's recommendation");
  t.match(settleJob('generate', { prompt: 'a', steps: '7', guidance_scale: '2.5', seed: '9' }, { files: { image: photo }, bundle }).params, { steps: 7, guidance_scale: 2.5, seed: 9 }, 'what the request gives wins');
});

t.test('generate: photos and face_index are derived from the files and the text', async (t) => {
  const files = { image: [photo[0], photo[0], photo[0]] as Uint8Array[] };
  t.match(settleJob('generate', { prompt: 'a', face_index: '0,2,1' }, { files, bundle: null }).params, { photos: 3, face_index: [0, 2, 1] });
  t.throws(() => settleJob('generate', { prompt: 'a', face_index: '1' }, { files, bundle: null }), /one index per photo: 3 photo\(s\), 1 index\(es\) given/);
  t.throws(() => settleJob('generate', { prompt: 'a', face_index: '64' }, { files: { image: photo }, bundle: null }), /must be ≤ 63/);
});

t.test('morph: defaults, alphas from alpha, alphas or frames, animations the workers can make', async (t) => {
  const bare = settleJob('morph', { frames: '3' }, { files: pair, bundle: null }).params;
  t.match(bare, { alphas: [0, 0.5, 1], strategy: 'slerp', identity_scale: 1, identity_start: 0, identity_end: 1, prompt: '', steps: 50, pacing: 'linear', background: 'morph', animation: [], fps: 12, boomerang: false });
  t.same(settleJob('morph', { alphas: '0, 0.25 ,1' }, { files: pair, bundle: null }).params.alphas, [0, 0.25, 1]);
  t.match(settleJob('morph', { alpha: '0.5', animation: 'webp,gif', boomerang: 'true' }, { files: pair, bundle: null }).params, { alphas: [0.5], animation: ['webp', 'gif'], boomerang: true });
  t.throws(() => settleJob('morph', { alpha: '0.5', pacing: 'even' }, { files: pair, bundle: null }), /"pacing=even" chooses the factors itself/);
  t.throws(() => settleJob('morph', { alphas: Array.from({ length: 65 }, () => '0.5').join(',') }, { files: pair, bundle: null }), /at most 64 values \(got 65\)/);
  t.throws(() => settleJob('morph', { frames: '3', animation: 'mp4' }, { files: pair, bundle: { defaults: {}, animations: ['webp', 'gif'] } }), /needs ffmpeg on the workers/);
  t.throws(() => settleJob('morph', { frames: '3', steps: '0x10' }, { files: pair, bundle: null }), /written in decimal digits/);
  const err = (() => {
    try {
      settleJob('morph', { frames: '3', fps: '51' }, { files: pair, bundle: null });
    } catch (e) {
      return e;
    }
  })();
  t.ok(err instanceof DiffIdError && err.status === 400, 'a 400 that names the field');
  t.match((err as Error).message, /"fps" must be ≤ 50 \(got 51\)/);
});

t.test('compare takes only the choice of face in each image, and its priority', async (t) => {
  t.same(settleJob('compare', { face_index_b: '2' }, { files: pair, bundle: null }).params, { face_index_b: 2, priority: 'normal' });
  t.same(settleJob('compare', { priority: 'low' }, { files: pair, bundle: null }).params, { priority: 'low' });
});

t.test("a field whose form and job shapes agree is copied as it is: no code names it", async (t) => {
  // Every property of a job kind's params that its form has too, given a value of its own type,
  // comes out unchanged; derived fields aside.
  const derived = new Set(['photos', 'face_index', 'alphas', 'animation', 'seed', 'identity', 'identity_a', 'identity_b']);
  const samples: Record<string, unknown> = { integer: 3, number: 0.75, string: 'x', boolean: true };
  for (const kind of ['generate', 'morph', 'compare'] as const) {
    const form = componentSchema(FORM_SCHEMAS[kind]) as { properties: Record<string, { type?: string; enum?: unknown[] }> };
    const params = componentSchema(`${kind[0]?.toUpperCase()}${kind.slice(1)}Params`) as { properties: Record<string, unknown> };
    const shared = Object.keys(params.properties).filter((k) => form.properties[k] && !derived.has(k));
    t.ok(shared.length > 0 || kind === 'compare', `${kind}: ${shared.join(', ')}`);
    for (const name of shared) {
      const schema = form.properties[name] as { type?: string; enum?: unknown[] };
      const value = schema.enum ? schema.enum.at(-1) : samples[schema.type ?? 'string'];
      const base = kind === 'generate' ? { prompt: 'a' } : kind === 'morph' ? { frames: 3 } : {};
      const got = settleJob(kind, { ...base, [name]: value }, { files: kind === 'generate' ? { image: photo } : pair, bundle: null }).params as Record<string, unknown>;
      t.same(got[name], value, `${kind}.${name}`);
    }
  }
});

t.test('a stored identity stands in for photos: its photo count and faces, one or the other, per side', async (t) => {
  const id = '3f1c2a4e-8b7d-4c1e-9a2b-0d1e2f3a4b5c';
  const stored = { id, photos: 2, face_index: [1, 0] };
  const gen = settleJob('generate', { prompt: 'a', identity: id }, { files: {}, bundle: null, identities: { image: stored } }).params;
  t.match(gen, { identity: id, photos: 2, face_index: [1, 0] }, 'generate reads the identity\'s photos and faces');
  t.throws(() => settleJob('generate', { prompt: 'a', identity: id }, { files: { image: photo }, bundle: null, identities: { image: stored } }), /give "image" or "identity", not both/);
  t.throws(() => settleJob('generate', { prompt: 'a', identity: id, face_index: '0,1' }, { files: {}, bundle: null, identities: { image: stored } }), /"face_index" cannot go with "identity"/);
  t.throws(() => settleJob('generate', { prompt: 'a' }, { files: {}, bundle: null }), /the image file "image" is missing; .* or give "identity"/);
  t.throws(() => settleJob('generate', { prompt: 'a', identity: 'x' }, { files: {}, bundle: null }), /"identity" must match format "uuid"/, 'the form checks the id before anything looks it up');
  const mixed = settleJob('morph', { frames: '3', identity_b: id }, { files: { image_a: [null] }, bundle: null, identities: { image_b: stored } }).params;
  t.match(mixed, { identity_b: id, face_index_b: 1 }, 'a morph side takes the identity\'s first photo and its face');
  t.notOk('identity_a' in mixed, 'the other side is a photo');
  const check = settleJob('identity', { face_index: '2', name: 'subject 4' }, { files: { image: [null] }, bundle: null, identities: { image: { id, photos: 1 } } }).params;
  t.same(check, { identity: id, photos: 1, face_index: [2], name: 'subject 4' }, 'an identity check');
});

t.test('identity controls: strength, window, strategy, structure factor, the deprecated interpolation', async (t) => {
  const gen = (fields: Record<string, unknown>) => settleJob('generate', { prompt: 'a photo', ...fields }, { files: { image: [null] }, bundle: null }).params;
  const mor = (fields: Record<string, unknown>) => settleJob('morph', { frames: '3', ...fields }, { files: pair, bundle: null }).params;
  t.match(gen({}), { identity_scale: 1, identity_start: 0, identity_end: 1 }, 'generate: defaults from the contract');
  t.match(gen({ identity_scale: '2.5', identity_start: '0.2', identity_end: '0.8' }), { identity_scale: 2.5, identity_start: 0.2, identity_end: 0.8 });
  t.throws(() => gen({ identity_scale: '-0.5' }), /"identity_scale" must be ≥ 0/, 'a negative strength');
  t.throws(() => gen({ identity_scale: '3.5' }), /"identity_scale" must be ≤ 3/);
  t.throws(() => gen({ identity_start: '0.6', identity_end: '0.6' }), /"identity_start" must be below "identity_end" \(got 0.6 and 0.6\)/, 'an empty window');
  t.throws(() => mor({ identity_start: '0.9', identity_end: '0.1' }), /"identity_start" must be below "identity_end"/, 'morph too');
  t.equal(mor({ strategy: 'embedding_only' }).strategy, 'embedding_only');
  t.equal(mor({ interpolation: 'lerp' }).strategy, 'lerp', 'interpolation, deprecated, names the strategy');
  t.notOk('interpolation' in mor({ interpolation: 'lerp' }), 'and is not a job parameter');
  t.throws(() => mor({ interpolation: 'lerp', strategy: 'slerp' }), /"interpolation" \(deprecated\) and "strategy" disagree/);
  t.equal(mor({ structure_alpha: '0.25' }).structure_alpha, 0.25);
  t.throws(() => mor({ structure_alpha: '0.25', strategy: 'embedding_only' }), /"structure_alpha" mixes the inverted latents/, 'structure without inversion');
});
