// The demo bundle with the real detector and embedder from ../shared/faces, through the service:
// compare, generate and morph on real photos. Skipped, saying so, when ../shared/faces is absent.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { decodeRgb, encodeImage } from '@diffid/shared/image';
import { buildDemoBundle, linkDetector, linkEmbedder } from '@diffid/gpu-worker';
import { call } from './contract.ts';
import { finished, pollJob, postForm, startStack, type Stack } from './harness.ts';

const FACES = join(import.meta.dirname, '../../../../shared/faces');
const absent = !existsSync(join(FACES, 'models/scrfd_500m_bnkps.onnx')) || !existsSync(join(FACES, 'models/mobilefacenet_facegate.onnx'));
const skip = absent && `../shared/faces is absent (looked in ${FACES}); the real-face tests need its models and photos`;
const photo = (name: string) => readFile(join(FACES, 'photos', name));
const realDemo = () =>
  buildDemoBundle({ detector: linkDetector(join(FACES, 'models/scrfd_500m_bnkps.onnx')), embedder: linkEmbedder(join(FACES, 'models/mobilefacenet_facegate.onnx')) });

async function compare(s: Stack, a: string, b: string | Buffer) {
  const res = await postForm(s.base, '/compare', { image_a: { bytes: await photo(a) }, image_b: { bytes: typeof b === 'string' ? await photo(b) : b } });
  const { id } = (await res.json()) as { id: string };
  return pollJob(s.base, id, finished);
}

t.test('compare: same person scores well above different people; faces are counted', { skip }, async (t) => {
  const s = await startStack(t, { build: realDemo });
  // One request with Prefer: wait.
  const fd = new FormData();
  fd.append('image_a', new Blob([await photo('fr_obama.jpg')]), 'a.jpg');
  fd.append('image_b', new Blob([await photo('fr_obama2.jpg')]), 'b.jpg');
  const direct = await call(t, s.base, 'POST', '/compare', '/compare', { body: fd, headers: { prefer: 'wait=30' } });
  t.equal(direct.status, 200, 'Prefer: wait=30 answers with the finished job');
  t.equal(direct.headers.get('preference-applied'), 'wait=30');
  const same = direct.body.result.similarity as number;
  const diff = ((await compare(s, 'fr_obama.jpg', 'fr_biden.jpg')).result.similarity) as number;
  const diff2 = ((await compare(s, 'fr_obama2.jpg', 'fr_biden.jpg')).result.similarity) as number;
  t.comment(`obama~obama2 ${same.toFixed(3)}, obama~biden ${diff.toFixed(3)}, obama2~biden ${diff2.toFixed(3)}`);
  t.ok(same >= 0.5, `same person ${same.toFixed(3)} ≥ 0.5`);
  t.ok(diff <= 0.3 && diff2 <= 0.3, `different people ${diff.toFixed(3)}, ${diff2.toFixed(3)} ≤ 0.3`);
  t.same(direct.body.result.faces.map((f: { faces: number }) => f.faces), [1, 1]);
  const two = await compare(s, 'fr_two_people.jpg', 'nasa_apollo11_crew.jpg');
  t.same(two.result.faces.map((f: { faces: number }) => f.faces), [2, 3], 'two faces and three faces counted');
  const visor = await compare(s, 'fr_obama.jpg', 'nasa_apollo11_aldrin_visor.jpg');
  t.ok(
    visor.status === 'failed' ? visor.error.code === 'DIFFID_ERR_NO_FACE_DETECTED' : visor.result.faces[1].score < 0.7,
    `the visor photo gives no face or a low-confidence one (${visor.status}, ${JSON.stringify(visor.result?.faces?.[1] ?? visor.error)})`,
  );
  const grey = await encodeImage({ width: 200, height: 200, data: new Uint8Array(200 * 200 * 3).fill(128) }, 'png');
  const none = await compare(s, 'fr_obama.jpg', grey);
  t.equal(none.status, 'failed');
  t.equal(none.error.code, 'DIFFID_ERR_NO_FACE_DETECTED');
  t.match(none.error.message, /^image_b: no face found/, 'the message says which image');
});

const meanAbs = (a: Uint8Array, b: Uint8Array) => a.reduce((s, v, i) => s + Math.abs(v - (b[i] as number)), 0) / a.length;

t.test('generate on real photos keeps each identity; outputs differ from one another', { skip }, async (t) => {
  const s = await startStack(t, { build: realDemo });
  const run = async (name: string) => {
    const res = await postForm(s.base, '/generate', { image: { bytes: await photo(name) }, prompt: 'a portrait photo', num_images: 4, seed: 3 });
    const view = await pollJob(s.base, ((await res.json()) as { id: string }).id, finished);
    t.equal(view.status, 'succeeded', JSON.stringify(view.error ?? ''));
    t.equal(view.params.guidance_scale, 1, "the bundle's default guidance was applied");
    const pngs = await Promise.all((view.result.images as Array<{ url: string }>).map(async (i) => Buffer.from(await (await fetch(`${s.base}${i.url}`)).arrayBuffer())));
    return { view, pngs };
  };
  const obama = await run('fr_obama.jpg');
  const biden = await run('fr_biden.jpg');
  const sims = (obama.view.result.images as Array<{ arcface_similarity: number }>).map((i) => i.arcface_similarity);
  t.comment(`obama outputs vs obama input: ${sims.map((x) => x.toFixed(3)).join(', ')}`);
  t.ok(sims.every((x) => x >= 0.5), 'each of 4 outputs has similarity ≥ 0.5 to its input');
  const pixels = await Promise.all(obama.pngs.map((p) => decodeRgb(p)));
  const diffs: number[] = [];
  for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) diffs.push(meanAbs((pixels[i] as { data: Uint8Array }).data, (pixels[j] as { data: Uint8Array }).data));
  t.comment(`mean |Δ| between the 4 outputs: ${Math.min(...diffs).toFixed(1)}–${Math.max(...diffs).toFixed(1)} grey levels`);
  t.ok(Math.min(...diffs) > 8, 'the outputs are visibly different from one another');
  // Cross-identity: score each person's outputs against the other person's input.
  const cross = await Promise.all(
    [
      [obama, 'fr_biden.jpg'],
      [biden, 'fr_obama.jpg'],
    ].map(async ([run, other]) => {
      const r = run as typeof obama;
      const scores: number[] = [];
      for (const png of r.pngs) {
        const fd = new FormData();
        fd.append('image_a', new Blob([png]), 'out.png');
        fd.append('image_b', new Blob([await photo(other as string)]), 'other.jpg');
        const res = await fetch(`${s.base}/compare`, { method: 'POST', body: fd, headers: { prefer: 'wait=30' } });
        scores.push(((await res.json()) as { result: { similarity: number } }).result.similarity);
      }
      return scores;
    }),
  );
  const own = [...sims, ...(biden.view.result.images as Array<{ arcface_similarity: number }>).map((i) => i.arcface_similarity)];
  const others = cross.flat();
  t.comment(`outputs vs their own input ${Math.min(...own).toFixed(3)}–${Math.max(...own).toFixed(3)}; vs the other person ${Math.min(...others).toFixed(3)}–${Math.max(...others).toFixed(3)}`);
  t.ok(Math.max(...others) < Math.min(...own), 'every output scores lower against the other person than against its own input');
});

t.test('morph with frames=5 travels from A to B', { skip }, async (t) => {
  const s = await startStack(t, { build: realDemo });
  const res = await postForm(s.base, '/morph', { image_a: { bytes: await photo('fr_obama.jpg') }, image_b: { bytes: await photo('fr_biden.jpg') }, frames: 5 });
  const view = await pollJob(s.base, ((await res.json()) as { id: string }).id, finished, 120_000);
  t.equal(view.status, 'succeeded', JSON.stringify(view.error ?? ''));
  const frames = view.result.images as Array<{ alpha: number; arcface_similarity_a: number; arcface_similarity_b: number }>;
  t.comment(frames.map((f) => `α ${f.alpha}: A ${f.arcface_similarity_a.toFixed(3)} B ${f.arcface_similarity_b.toFixed(3)}`).join('; '));
  t.ok((frames[0]?.arcface_similarity_a as number) >= 0.8, 'α = 0 is A (≥ 0.8)');
  t.ok((frames[4]?.arcface_similarity_b as number) >= 0.8, 'α = 1 is B (≥ 0.8)');
  for (let i = 1; i < frames.length; i++) {
    t.ok((frames[i] as { arcface_similarity_a: number }).arcface_similarity_a < (frames[i - 1] as { arcface_similarity_a: number }).arcface_similarity_a, `similarity to A falls at α ${frames[i]?.alpha}`);
    t.ok((frames[i] as { arcface_similarity_b: number }).arcface_similarity_b > (frames[i - 1] as { arcface_similarity_b: number }).arcface_similarity_b, `similarity to B rises at α ${frames[i]?.alpha}`);
  }
});
