// fp16 exports: float16 tensors at the graph boundary, float32 inside the pipeline. Half-precision
// conversion against known bit patterns, then the same bundles with float16 ports against their
// float32 originals.
import t, { type Test } from 'tap';
import { facePattern } from '@diffid/shared/testing';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { buildDemoBundle } from '../src/bundles/demo-bundle.ts';
import { withHalfBoundary } from '../src/bundles/fp16-io.ts';
import { buildTinyBundle } from '../src/bundles/tiny-bundle.ts';
import { DIFFUSERS_FLAVOR, OPTIMUM_FLAVOR } from '../src/bundles/tiny-graphs.ts';
import { writeBundle, type GeneratedBundle } from '../src/bundles/write-bundle.ts';
import { fromHalf, fromHalfBits, toHalf, toHalfBits } from '../src/runtime/float16.ts';
import { generate } from '../src/pipelines/generate.ts';
import { morph } from '../src/pipelines/morph.ts';
import { stageContext } from '../src/stages/context.ts';
import { morphParams, tempDir } from './helpers.ts';

t.test('half precision: known bit patterns, rounding to nearest even, subnormals, infinities', async (t) => {
  const table: Array<[number, number]> = [
    [0, 0x0000],
    [-0, 0x8000],
    [1, 0x3c00],
    [-2, 0xc000],
    [0.5, 0x3800],
    [65504, 0x7bff],
    [65520, 0x7c00], // rounds up past the largest half: Infinity
    [2 ** -14, 0x0400], // smallest normal
    [2 ** -24, 0x0001], // smallest subnormal
    [2 ** -26, 0x0000], // under half the smallest subnormal: zero
    [1 + 2 ** -11, 0x3c00], // a tie: to even (down)
    [1 + 3 * 2 ** -11, 0x3c02], // a tie: to even (up)
    [Infinity, 0x7c00],
    [-Infinity, 0xfc00],
    [0.1, 0x2e66],
  ];
  for (const [value, bits] of table) t.equal(toHalfBits(value), bits, `${value} → 0x${bits.toString(16)}`);
  t.ok(Number.isNaN(fromHalfBits(toHalfBits(Number.NaN))), 'NaN stays NaN');
  t.equal(fromHalfBits(0x3555), 0.333251953125);
  const values = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i) * 100);
  const back = fromHalf(toHalf(values));
  const worst = Math.max(...values.map((v, i) => Math.abs(v - (back[i] as number)) / Math.max(Math.abs(v), 2 ** -14)));
  t.ok(worst <= 2 ** -11, `round trip within half an ulp: worst relative error ${worst.toExponential(2)}`);
});

function halfBoundary(bundle: GeneratedBundle): GeneratedBundle {
  return { manifest: bundle.manifest, files: new Map([...bundle.files].map(([name, bytes]) => [name, name.endsWith('.onnx') ? withHalfBoundary(bytes) : bytes])) };
}

async function load(t: Test, bundle: GeneratedBundle) {
  const dir = await tempDir(t, 'diffid-fp16-');
  await writeBundle(dir, bundle);
  const loaded = await loadBundle(dir);
  t.teardown(() => loaded.release());
  return loaded;
}

const params = { prompt: 'a portrait', negative_prompt: '', num_images: 2, steps: 20, guidance_scale: 1, seed: 5, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;
const diff = (a: Uint8Array, b: Uint8Array) => {
  let sum = 0;
  let max = 0;
  a.forEach((v, i) => {
    const d = Math.abs(v - (b[i] as number));
    sum += d;
    max = Math.max(max, d);
  });
  return { mean: sum / a.length, max };
};

t.test('tiny bundles with float16 ports load in both export flavours and run', async (t) => {
  for (const flavor of [DIFFUSERS_FLAVOR, OPTIMUM_FLAVOR]) {
    const b = await load(t, halfBoundary(buildTinyBundle({ flavor })));
    t.equal(b.ports.unet.inputs.sample.dtype, 'float16', 'the U-Net takes float16');
    t.equal(b.ports.vae_decoder.outputs.pixels.dtype, 'float16');
    const out = await generate(stageContext(b), { images: { image: [facePattern(1, 64, 64)] }, params: { ...params, guidance_scale: 3 } });
    t.equal(out.images.length, 2, `${flavor.vaeEncoderOutput} flavour: generate runs`);
  }
});

t.test('the demo bundle with float16 ports against float32: generate and morph within two grey levels', async (t) => {
  const fp32 = await load(t, buildDemoBundle());
  const fp16 = await load(t, halfBoundary(buildDemoBundle()));
  const face = facePattern(3, 300, 300);
  const a = await generate(stageContext(fp32), { images: { image: [face] }, params });
  const b = await generate(stageContext(fp16), { images: { image: [face] }, params });
  const g = a.images.map((img, i) => diff(img.rgb.data, (b.images[i] as { rgb: { data: Uint8Array } }).rgb.data));
  t.comment(`generate, 20 steps: mean |Δ| ${g.map((d) => d.mean.toFixed(3)).join(', ')} grey levels, max ${g.map((d) => d.max).join(', ')}`);
  t.ok(g.every((d) => d.mean < 0.5 && d.max <= 2), 'generate: mean under half a grey level, max at most 2');
  const other = facePattern(8, 300, 300);
  const m32 = await morph(stageContext(fp32), { images: { image_a: face, image_b: other }, params: morphParams({ alphas: [0, 0.5, 1], steps: 20 }) });
  const m16 = await morph(stageContext(fp16), { images: { image_a: face, image_b: other }, params: morphParams({ alphas: [0, 0.5, 1], steps: 20 }) });
  const m = m32.images.map((img, i) => diff(img.rgb.data, (m16.images[i] as { rgb: { data: Uint8Array } }).rgb.data));
  t.comment(`morph (inversion and sampling), 20 steps: mean |Δ| ${m.map((d) => d.mean.toFixed(3)).join(', ')}, max ${m.map((d) => d.max).join(', ')}`);
  t.ok(m.every((d) => d.mean < 0.5 && d.max <= 2), 'morph: mean under half a grey level, max at most 2');
});
