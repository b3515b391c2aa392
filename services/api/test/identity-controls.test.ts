// Identity strength, its window over the steps, and the paper's three morph strategies (its
// Fig. 8), through HTTP, Redis and a worker on the demo bundle, whose images carry the identity
// they are conditioned on.
import t, { type Test } from 'tap';
import { decodeRgb } from '@diffid/shared/image';
import { buildDemoBundle } from '../../gpu-worker/src/bundles/demo-bundle.ts';
import { finished, pollJob, postForm, startStack, type Fields } from './harness.ts';
import { faceFile } from './images.ts';

async function run(t: Test, base: string, path: string, fields: Fields): Promise<Record<string, any>> {
  const res = await postForm(base, path, fields);
  t.equal(res.status, 202, `${path} accepted`);
  const view = await pollJob(base, ((await res.json()) as { id: string }).id, finished);
  t.equal(view.status, 'succeeded', JSON.stringify(view.error ?? ''));
  return view;
}

/** An output's pixels (its PNG's metadata names the job's parameters, so the files differ anyway). */
const png = async (base: string, view: Record<string, any>, i = 0) => Buffer.from((await decodeRgb(new Uint8Array(await (await fetch(`${base}${view.result.images[i].url}`)).arrayBuffer()))).data);

t.test('identity_scale: the similarity to the photo rises from 0 to 1, and 2 holds it; the window changes the picture', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const image = { bytes: await faceFile(31) };
  const base = { image, prompt: 'a portrait', num_images: 4, steps: 12, seed: 5 };
  const mean = (v: Record<string, any>) => (v.result.images as Array<{ arcface_similarity: number }>).reduce((a, i) => a + i.arcface_similarity, 0) / v.result.images.length;
  const spread = (v: Record<string, any>) => {
    const xs = (v.result.images as Array<{ arcface_similarity: number }>).map((i) => i.arcface_similarity);
    return Math.max(...xs) - Math.min(...xs);
  };
  const at = async (scale: number) => run(t, s.base, '/generate', { ...base, identity_scale: scale });
  const [v0, v1, v2] = [await at(0), await at(1), await at(2)];
  const [m0, m1, m2] = [mean(v0), mean(v1), mean(v2)];
  t.comment(`mean similarity over 4 seeds: ${m0.toFixed(3)} at 0, ${m1.toFixed(3)} at 1, ${m2.toFixed(3)} at 2`);
  // "Noise": how far the similarity moves from seed to seed at one scale.
  const noise = Math.max(spread(v0), spread(v1));
  t.ok(m1 - m0 > 2 * noise, `0 → 1 rises by ${(m1 - m0).toFixed(3)}, over twice the seed-to-seed spread (${noise.toFixed(3)})`);
  t.ok(m2 >= m1 - 0.01, `2 (${m2.toFixed(3)}) is at least as high as 1 (${m1.toFixed(3)})`);
  t.same(v1.params.identity_scale, 1);

  const late = await run(t, s.base, '/generate', { ...base, identity_start: 0.5 });
  t.notOk((await png(s.base, late)).equals(await png(s.base, v1)), 'the identity over the second half of the steps only gives another picture');
  t.same([late.params.identity_start, late.params.identity_end], [0.5, 1]);

  for (const [fields, message] of [
    [{ identity_scale: -1 }, /"identity_scale" must be ≥ 0/],
    [{ identity_start: 0.7, identity_end: 0.3 }, /"identity_start" must be below "identity_end"/],
  ] as const) {
    const res = await postForm(s.base, '/generate', { ...base, ...fields });
    t.equal(res.status, 400, `${JSON.stringify(fields)}: 400`);
    const body = (await res.json()) as { error: { code: string; message: string } };
    t.equal(body.error.code, 'DIFFID_ERR_VALIDATION');
    t.match(body.error.message, message);
  }
});

t.test('morph strategies: slerp, lerp and embedding_only give three different frames; structure_alpha holds the layout', async (t) => {
  const s = await startStack(t, { build: buildDemoBundle });
  const faces = { image_a: { bytes: await faceFile(41) }, image_b: { bytes: await faceFile(42) } };
  const frames: Record<string, Buffer> = {};
  for (const strategy of ['slerp', 'lerp', 'embedding_only'] as const) {
    const v = await run(t, s.base, '/morph', { ...faces, alpha: 0.5, steps: 10, seed: 3, strategy });
    t.equal(v.params.strategy, strategy);
    t.same(v.progress, { step: strategy === 'embedding_only' ? 10 : 20, total: strategy === 'embedding_only' ? 10 : 20 }, `${strategy}: ${strategy === 'embedding_only' ? 'sampling only, no inversion' : 'inversion, then sampling'}`);
    frames[strategy] = await png(s.base, v);
  }
  const [a, b, c] = [frames.slerp, frames.lerp, frames.embedding_only] as [Buffer, Buffer, Buffer];
  t.ok(!a.equals(b) && !a.equals(c) && !b.equals(c), `three strategies, three different frames (slerp=lerp ${a.equals(b)}, slerp=embedding_only ${a.equals(c)}, lerp=embedding_only ${b.equals(c)})`);

  const held = await run(t, s.base, '/morph', { ...faces, alphas: '0,1', steps: 10, structure_alpha: 0 });
  const free = await run(t, s.base, '/morph', { ...faces, alphas: '0,1', steps: 10 });
  t.ok((await png(s.base, held, 0)).equals(await png(s.base, free, 0)), 'at α = 0 a structure factor of 0 changes nothing');
  t.notOk((await png(s.base, held, 1)).equals(await png(s.base, free, 1)), 'at α = 1 it keeps A\'s layout under B\'s identity: another frame');
  const refused = await postForm(s.base, '/morph', { ...faces, alpha: 0.5, strategy: 'embedding_only', structure_alpha: 0.5 });
  t.equal(refused.status, 400, 'structure_alpha without inversion: 400');
});
