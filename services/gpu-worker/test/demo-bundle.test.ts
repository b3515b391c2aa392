// The analytic demo bundle: its U-Net is the closed-form optimal predictor, its outputs follow
// from the math, and inversion then sampling reconstructs the input.
import t, { type Test } from 'tap';
import { SD15_SCHEDULER, makeSchedule } from '@diffid/shared/diffusion';
import { facePattern } from '@diffid/shared/testing';
import { buildDemoBundle } from '../src/bundles/demo-bundle.ts';
import { sha256Hex } from '../src/bundles/write-bundle.ts';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { generate } from '../src/pipelines/generate.ts';
import { morph } from '../src/pipelines/morph.ts';
import { stageContext } from '../src/stages/context.ts';
import { decodeLatents } from '../src/stages/decode.ts';
import { encodeLatents } from '../src/stages/encode-latent.ts';
import { findFace, referenceImage } from '../src/stages/find-face.ts';
import type { Rgb } from '../src/vision/pixels.ts';
import { morphParams, tempDir } from './helpers.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';

const meanAbs = (a: Rgb, b: Rgb) => a.data.reduce((s, v, i) => s + Math.abs(v - (b.data[i] as number)), 0) / a.data.length;
const params = { prompt: 'a portrait', negative_prompt: '', num_images: 4, steps: 30, guidance_scale: 1, seed: 1, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;

async function demo(t: Test) {
  const dir = await tempDir(t, 'diffid-demo-');
  await writeBundle(dir, buildDemoBundle());
  const bundle = await loadBundle(dir);
  t.teardown(() => bundle.release());
  return stageContext(bundle);
}

t.test('the demo bundle is byte-identical across builds and declares its defaults', async (t) => {
  const a = buildDemoBundle();
  const b = buildDemoBundle();
  for (const [file, bytes] of a.files) t.equal(sha256Hex(bytes), sha256Hex(b.files.get(file) as Uint8Array), file);
  t.same(a.manifest.defaults, { steps: 30, guidance_scale: 1 });
  t.same(a.manifest.reference, { kind: 'aligned_face', face_fraction: 0.5 });
  t.notSame(sha256Hex(buildDemoBundle({ sigma: 0.3 }).files.get('unet.onnx') as Uint8Array), sha256Hex(a.files.get('unet.onnx') as Uint8Array));
});

t.test('the demo U-Net computes the closed-form ε* with ᾱ_t from the schedule', async (t) => {
  const ctx = await demo(t);
  const acp = makeSchedule(SD15_SCHEDULER).alphasCumprod;
  const n = 3 * 128 * 128;
  const z = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const mu = Float32Array.from({ length: n }, (_, i) => Math.cos(i / 7) * 0.5);
  for (const step of [981, 501, 1]) {
    const out = await ctx.bundle.graphs.unet.run({
      sample: { dtype: 'float32', data: z, dims: [1, 3, 128, 128] },
      timestep: { dtype: 'float32', data: new Float32Array([step]), dims: [1] },
      encoder_hidden_states: { dtype: 'float32', data: mu, dims: [1, 64, 768] },
    });
    const eps = out.out_sample!.data as Float32Array;
    const a = acp[step] as number;
    let worst = 0;
    for (let i = 0; i < n; i += 97) {
      const want = (Math.sqrt(1 - a) * ((z[i] as number) - Math.sqrt(a) * (mu[i] as number))) / (a * 0.15 ** 2 + 1 - a);
      worst = Math.max(worst, Math.abs((eps[i] as number) - want));
    }
    t.ok(worst < 1e-5, `t = ${step}: max |graph − formula| ${worst.toExponential(2)}`);
  }
});

t.test('generate: outputs vary with the seed around the face, and the prompt reaches them', async (t) => {
  const ctx = await demo(t);
  const face = facePattern(3, 300, 300);
  const out = await generate(ctx, { images: { image: [face] }, params });
  const ref = referenceImage(ctx, face, (await findFace(ctx, face, 'image')).face);
  const diffs: number[] = [];
  for (let i = 0; i < 4; i++) for (let j = i + 1; j < 4; j++) diffs.push(meanAbs(out.images[i]!.rgb, out.images[j]!.rgb));
  const toRef = out.images.map((g) => meanAbs(g.rgb, ref));
  t.comment(`mean |Δ| between outputs ${Math.min(...diffs).toFixed(1)}–${Math.max(...diffs).toFixed(1)} levels; to the aligned input ${Math.min(...toRef).toFixed(1)}–${Math.max(...toRef).toFixed(1)}`);
  t.ok(Math.min(...diffs) > 8, 'every pair of outputs differs by more than 8 grey levels on average');
  t.ok(out.images.every((g) => (g.facts.arcface_similarity as number) > 0.9), `constructed-embedder similarities ${out.images.map((g) => g.facts.arcface_similarity?.toFixed(3)).join(', ')}`);
  const other = await generate(ctx, { images: { image: [face] }, params: { ...params, num_images: 1, prompt: 'red hat, blue light' } });
  const same = await generate(ctx, { images: { image: [face] }, params: { ...params, num_images: 1 } });
  const promptShift = meanAbs(other.images[0]!.rgb, same.images[0]!.rgb);
  t.comment(`another prompt, same seed: mean |Δ| ${promptShift.toFixed(1)} levels`);
  t.ok(promptShift > 5, 'a different prompt gives a different image');
  t.same(Array.from(same.images[0]!.rgb.data), Array.from(out.images[0]!.rgb.data), 'the same seed and prompt give the same image');
});

t.test('inversion then sampling reconstructs the input: morph at α = 0 against A\'s VAE round trip', async (t) => {
  const ctx = await demo(t);
  const a = facePattern(4, 320, 320);
  const b = facePattern(9, 320, 320);
  const refA = referenceImage(ctx, a, (await findFace(ctx, a, 'a')).face);
  const vaeRoundTrip = (await decodeLatents(ctx, await encodeLatents(ctx, [refA])))[0] as Rgb;
  // Measured: 2.04 grey levels on average at 10 steps, 0.83 at 50; bounds ~20 % above.
  const bounds: Record<number, number> = { 10: 2.5, 50: 1.0 };
  for (const steps of [10, 50]) {
    const m = await morph(ctx, { images: { image_a: a, image_b: b }, params: morphParams({ alphas: [0, 1], steps }) });
    const err = meanAbs(m.images[0]!.rgb, vaeRoundTrip);
    let worst = 0;
    m.images[0]!.rgb.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - (vaeRoundTrip.data[i] as number)))));
    t.comment(`${steps} steps: α = 0 differs from A's VAE round trip by ${err.toFixed(3)} grey levels on average, ${worst} at most`);
    t.ok(err < (bounds[steps] as number), `${steps} steps: mean |Δ| ${err.toFixed(3)} < ${bounds[steps]}`);
  }
});

t.test('morph with SLERP keeps colours: the middle frame has no colour cast against the ends\' blend', async (t) => {
  const ctx = await demo(t);
  // A warm face and a cool one (R and B swapped): far apart, so SLERP's ω is large.
  const a = facePattern(4, 320, 320);
  const warm = facePattern(9, 320, 320);
  const b = { ...warm, data: warm.data.map((_, i) => warm.data[i - (i % 3) + 2 - (i % 3)] as number) };
  // Mean of each channel over the centre of the canvas, where the face's skin is.
  const centre = (img: Rgb) => {
    const sum = [0, 0, 0];
    let n = 0;
    for (let y = (3 * img.height) / 8; y < (5 * img.height) / 8; y++) {
      for (let x = (3 * img.width) / 8; x < (5 * img.width) / 8; x++) {
        for (let c = 0; c < 3; c++) sum[c] = (sum[c] as number) + (img.data[(y * img.width + x) * 3 + c] as number);
        n++;
      }
    }
    return sum.map((v) => v / n);
  };
  for (const strategy of ['slerp', 'lerp'] as const) {
    const m = await morph(ctx, { images: { image_a: a, image_b: b }, params: morphParams({ alphas: [0, 0.5, 1], strategy, steps: 20 }) });
    const [c0, c5, c1] = m.images.map((f) => centre(f.rgb)) as [number[], number[], number[]];
    const shift = c5.map((v, c) => v - ((c0[c] as number) + (c1[c] as number)) / 2);
    t.comment(`${strategy}: middle frame minus the ends' blend, R G B: ${shift.map((v) => v.toFixed(2)).join(' ')} grey levels`);
    t.ok(shift.every((v) => Math.abs(v) < 1.5), `${strategy}: every channel within 1.5 grey levels of the blend (SLERP of the image embeddings was 3.1)`);
  }
});
