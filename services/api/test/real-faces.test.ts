// The embedded default — the demo diffusion with the shipped BlazeFace detector and faceplugin
// recognizer — through the service on real photos: compare, group photos, face choice,
// several photos of one person, generate and morph. The photos come from ../shared/faces and
// these tests skip, saying so, when it is absent; the shipped models are always there.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { decodeRgb, encodeImage } from '@diffid/shared/image';
import { buildDefaultBundle, buildDemoBundle, linkDetector, linkEmbedder } from '@diffid/gpu-worker';
import { call } from './contract.ts';
import { finished, pollJob, postForm, startStack, type Stack } from './harness.ts';

const FACES = join(import.meta.dirname, '../../../../shared/faces');
const skip = !existsSync(join(FACES, 'photos/fr_obama.jpg')) && `../shared/faces is absent (looked in ${FACES}); the real-face tests need its photos`;
const scrfdAbsent = !existsSync(join(FACES, 'models/scrfd_500m_bnkps.onnx')) || !existsSync(join(FACES, 'models/mobilefacenet_facegate.onnx'));
const photo = (name: string) => readFile(join(FACES, 'photos', name));
const shipped = () => buildDefaultBundle();

async function compare(s: Stack, a: string, b: string | Buffer) {
  const res = await postForm(s.base, '/compare', { image_a: { bytes: await photo(a) }, image_b: { bytes: typeof b === 'string' ? await photo(b) : b } });
  const { id } = (await res.json()) as { id: string };
  return pollJob(s.base, id, finished);
}

t.test('compare with the shipped models: same person scores well above different people', { skip }, async (t) => {
  const s = await startStack(t, { build: shipped });
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
  t.same(direct.body.result.inputs.map((i: { faces: unknown[] }) => i.faces.length), [1, 1]);
  t.same(direct.body.result.warnings, []);
  const visor = await compare(s, 'fr_obama.jpg', 'nasa_apollo11_aldrin_visor.jpg');
  t.equal(visor.status, 'failed', 'the astronaut behind a visor has no usable face');
  t.equal(visor.error.code, 'DIFFID_ERR_NO_FACE_DETECTED');
  t.match(visor.error.message, /^image_b: no face found/);
  const grey = await encodeImage({ width: 200, height: 200, data: new Uint8Array(200 * 200 * 3).fill(128) }, 'png');
  const none = await compare(s, 'fr_obama.jpg', grey);
  t.equal(none.status, 'failed');
  t.equal(none.error.code, 'DIFFID_ERR_NO_FACE_DETECTED');
  t.match(none.error.message, /^image_b: no face found/, 'the message says which image');
});

const meanAbs = (a: Uint8Array, b: Uint8Array) => a.reduce((s, v, i) => s + Math.abs(v - (b[i] as number)), 0) / a.length;

t.test('generate on real photos keeps each identity; outputs differ from one another', { skip }, async (t) => {
  const s = await startStack(t, { build: shipped });
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
  const bidenSims = (biden.view.result.images as Array<{ arcface_similarity: number }>).map((i) => i.arcface_similarity);
  t.ok(bidenSims.every((x) => x >= 0.5), `and so do the other person's (${bidenSims.map((x) => x.toFixed(3)).join(', ')})`);
});

t.test('morph with frames=5 travels from A to B', { skip }, async (t) => {
  const s = await startStack(t, { build: shipped });
  const res = await postForm(s.base, '/morph', { image_a: { bytes: await photo('fr_obama.jpg') }, image_b: { bytes: await photo('fr_biden.jpg') }, frames: 5 });
  const view = await pollJob(s.base, ((await res.json()) as { id: string }).id, finished);
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

t.test('group photos: every face listed left to right, a close call warned about, face_index chooses', { skip }, async (t) => {
  const s = await startStack(t, { build: shipped });
  const group = await compare(s, 'fr_two_people.jpg', 'nasa_apollo11_crew.jpg');
  t.equal(group.status, 'succeeded', JSON.stringify(group.error ?? ''));
  const [two, crew] = group.result.inputs as Array<{ input: string; faces: Array<{ box: number[]; landmarks: Record<string, number[]> }>; face_index: number }>;
  t.equal(two?.faces.length, 2, 'both people of the White House photo');
  t.equal(crew?.faces.length, 3, 'all three Apollo 11 astronauts');
  for (const input of [two, crew]) {
    const lefts = input?.faces.map((f) => f.box[0] as number) ?? [];
    t.same(lefts, [...lefts].sort((a, b) => a - b), `${input?.input}: faces listed left to right`);
  }
  t.same(Object.keys(two?.faces[0]?.landmarks ?? {}), ['left_eye', 'right_eye', 'nose', 'mouth', 'left_ear', 'right_ear'], "BlazeFace's six landmarks, by name");
  const warned = (group.result.warnings as Array<{ code: string; input: string }>).filter((w) => w.code === 'AMBIGUOUS_FACE').map((w) => w.input);
  t.ok(warned.includes('image_b'), `the crew's faces are of a size: the choice is warned about (${JSON.stringify(group.result.warnings)})`);
  // face_index names another face: the listed box is the one compared, and the score changes.
  const other = (crew?.face_index ?? 0) === 0 ? 1 : 0;
  const res = await postForm(s.base, '/compare', { image_a: { bytes: await photo('nasa_apollo11_crew.jpg') }, image_b: { bytes: await photo('nasa_apollo11_crew.jpg') }, face_index_b: other });
  const chosen = await pollJob(s.base, ((await res.json()) as { id: string }).id, finished);
  t.equal(chosen.status, 'succeeded');
  t.equal(chosen.result.inputs[1].face_index, other, 'the named face is used');
  t.equal(chosen.params.face_index_b, other);
  t.ok(chosen.result.similarity < 0.5, `another astronaut scores low against the largest (${chosen.result.similarity.toFixed(3)})`);
  t.equal(chosen.result.warnings.filter((w: { input: string }) => w.input === 'image_b').length, 0, 'no close-call warning once the face is named');
  const far = await postForm(s.base, '/compare', { image_a: { bytes: await photo('fr_obama.jpg') }, image_b: { bytes: await photo('fr_two_people.jpg') }, face_index_b: 5 });
  const outOfRange = await pollJob(s.base, ((await far.json()) as { id: string }).id, finished);
  t.equal(outOfRange.error.code, 'DIFFID_ERR_FACE_INDEX_OUT_OF_RANGE');
  t.match(outOfRange.error.message, /^image_b: face_index 5 asks for a face that is not there; 2 face\(s\) were found \(0 … 1, left to right\)/);
  // A face too small for the recognizer still runs, with a warning.
  const small = await compare(s, 'max_Bryan.png', 'max_Luciano.png');
  t.equal(small.status, 'succeeded');
  t.same(small.result.warnings.map((w: { code: string; input: string }) => `${w.code} ${w.input}`), ['SMALL_FACE image_a'], 'the 115 px photo is warned about');
});

t.test('several photos of one person: one identity; a photo without a face fails the job or is skipped', { skip }, async (t) => {
  const s = await startStack(t, { build: shipped });
  const run = async (names: string[], extra: Record<string, string | number> = {}) => {
    const fd = new FormData();
    for (const n of names) fd.append('image', new Blob([await photo(n)]), n);
    for (const [k, v] of Object.entries({ prompt: 'a portrait photo', num_images: 1, steps: 4, ...extra })) fd.append(k, String(v));
    const res = await fetch(`${s.base}/generate`, { method: 'POST', body: fd });
    t.equal(res.status, 202);
    return pollJob(s.base, ((await res.json()) as { id: string }).id, finished);
  };
  const both = await run(['fr_obama.jpg', 'fr_obama2.jpg']);
  t.equal(both.status, 'succeeded', JSON.stringify(both.error ?? ''));
  t.equal(both.params.photos, 2);
  t.same(both.result.inputs.map((i: { input: string; face_index: number }) => `${i.input}:${i.face_index}`), ['image[0]:0', 'image[1]:0']);
  const sim = both.result.images[0].arcface_similarity as number;
  t.ok(sim >= 0.5, `the output keeps the joint identity (${sim.toFixed(3)})`);
  const failed = await run(['fr_obama.jpg', 'nasa_apollo11_aldrin_visor.jpg']);
  t.equal(failed.status, 'failed');
  t.equal(failed.error.code, 'DIFFID_ERR_NO_FACE_DETECTED');
  t.match(failed.error.message, /^image\[1\]: no face found/, 'the message names the photo');
  const skipped = await run(['fr_obama.jpg', 'nasa_apollo11_aldrin_visor.jpg'], { on_missing_face: 'skip' });
  t.equal(skipped.status, 'succeeded');
  t.same(skipped.result.warnings.map((w: { code: string; input: string }) => `${w.code} ${w.input}`), ['FACE_SKIPPED image[1]']);
  t.same(skipped.result.inputs[1], { input: 'image[1]', faces: [], face_index: null });
  const timings = skipped.result.timings_ms as { total: number; inference: number; stages: Record<string, number> };
  const staged = Object.values(timings.stages).reduce((a, b) => a + b, 0);
  t.ok(staged <= timings.inference + 2 && timings.inference <= timings.total, `wall times nest: stages ${staged} ≤ inference ${timings.inference} ≤ total ${timings.total}`);
  // A group photo: the largest face with a close-call warning, or the face face_index names.
  const group = await run(['fr_two_people.jpg']);
  t.same(group.result.warnings.map((w: { code: string; input: string }) => `${w.code} ${w.input}`), ['AMBIGUOUS_FACE image']);
  const named = await run(['fr_two_people.jpg'], { face_index: 1 });
  t.equal(named.status, 'succeeded');
  t.equal(named.result.inputs[0].face_index, 1, 'the second face from the left');
  t.same(named.params.face_index, [1]);
  t.same(named.result.warnings, [], 'no warning once the face is named');
  const mismatch = await postForm(s.base, '/generate', { image: { bytes: await photo('fr_obama.jpg') }, prompt: 'x', face_index: '0,1' });
  t.equal(mismatch.status, 400);
  t.match(((await mismatch.json()) as { error: { message: string } }).error.message, /one index per photo: 1 photo\(s\), 2 index\(es\) given/);
});

t.test('a standard SCRFD export and a 128-d recognizer link without a sidecar and score like the shipped pair', { skip: skip || (scrfdAbsent && '../shared/faces/models is absent') }, async (t) => {
  const s = await startStack(t, {
    build: () => buildDemoBundle({ detector: linkDetector(join(FACES, 'models/scrfd_500m_bnkps.onnx')), embedder: linkEmbedder(join(FACES, 'models/mobilefacenet_facegate.onnx')) }),
  });
  const same = await compare(s, 'fr_obama.jpg', 'fr_obama2.jpg');
  const diff = await compare(s, 'fr_obama.jpg', 'fr_biden.jpg');
  t.comment(`SCRFD + MobileFaceNet: same ${same.result.similarity.toFixed(3)}, different ${diff.result.similarity.toFixed(3)}`);
  t.ok(same.result.similarity >= 0.5 && diff.result.similarity <= 0.3);
  t.same(Object.keys(same.result.inputs[0].faces[0].landmarks), ['left_eye', 'right_eye', 'nose', 'mouth_left', 'mouth_right']);
});

t.test('a face at the photo border: the aligned canvas repeats the edge, no black wedge in generated or morphed images', { skip }, async (t) => {
  const s = await startStack(t, { build: shipped });
  // fr_obama's face spans x ≈ 361…625: cut the photo 20 px left of the face.
  const full = await decodeRgb(await photo('fr_obama.jpg'));
  const left = 340;
  const width = full.width - left;
  const data = new Uint8Array(width * full.height * 3);
  for (let y = 0; y < full.height; y++) data.set(full.data.subarray((y * full.width + left) * 3, (y * full.width + full.width) * 3), y * width * 3);
  const cut = await encodeImage({ data, width, height: full.height }, 'png');
  const black = (img: { data: Uint8Array }) => {
    let n = 0;
    for (let i = 0; i < img.data.length; i += 3) if ((img.data[i] as number) + (img.data[i + 1] as number) + (img.data[i + 2] as number) < 30) n++;
    return n / (img.data.length / 3);
  };
  const res = await postForm(s.base, '/morph', { image_a: { bytes: cut }, image_b: { bytes: await photo('fr_obama2.jpg') }, alphas: '0,0.5', steps: 10 });
  const view = await pollJob(s.base, ((await res.json()) as { id: string }).id, finished);
  t.equal(view.status, 'succeeded', JSON.stringify(view.error ?? ''));
  for (const image of view.result.images as Array<{ url: string; alpha: number }>) {
    const rgb = await decodeRgb(Buffer.from(await (await fetch(`${s.base}${image.url}`)).arrayBuffer()));
    const share = black(rgb);
    t.ok(share < 0.01, `α ${image.alpha}: ${(share * 100).toFixed(2)} % near-black pixels (the photo's own dark suit excepted, under 1 %)`);
  }
});
