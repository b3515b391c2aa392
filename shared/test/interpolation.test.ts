import t from 'tap';
import { scaleIdentity, SLERP_PARALLEL_THRESHOLD, averageEmbedding, averageIdentity, cosineSimilarity, gaussianNoise, lerp, slerp } from '@diffid/shared/diffusion';

const f32 = (a: number[]) => new Float32Array(a);
const maxDiff = (a: Float32Array, b: number[]) => Math.max(...b.map((v, i) => Math.abs((a[i] as number) - v)));

t.test('slerp follows eq. 23 (float64 reference)', async (t) => {
  t.ok(maxDiff(slerp(f32([1, 0, 0]), f32([0, 1, 0]), 0.25), [0.9238795325112866, 0.3826834323650898, 0]) < 1e-7);
  const got = slerp(f32([3, 1, -2, 0.5]), f32([-1, 2, 0.5, 1]), 0.6);
  t.ok(maxDiff(got, [1.0666632808532577, 2.3916447260041576, -0.8565438752631056, 1.1958223630020788]) < 1e-6, `got ${Array.from(got)}`);
});

t.test('slerp keeps unit vectors on the sphere and hits its end points', async (t) => {
  const a = f32([0.6, 0.8, 0]);
  const b = f32([0, 0.6, 0.8]);
  for (const alpha of [0, 0.1, 0.5, 0.9, 1]) {
    const m = slerp(a, b, alpha);
    const norm = Math.hypot(...m);
    t.ok(Math.abs(norm - 1) < 1e-6, `‖slerp(α=${alpha})‖ = ${norm}`);
  }
  t.same(Array.from(slerp(a, b, 0)), Array.from(a));
  t.ok(maxDiff(slerp(a, b, 1), Array.from(b)) < 1e-7);
  const half = slerp(a, b, 0.5);
  t.ok(Math.abs(cosineSimilarity(half, a) - cosineSimilarity(half, b)) < 1e-6, 'α = 0.5 is equidistant');
});

t.test('near-parallel vectors fall back to lerp', async (t) => {
  const a = f32([1, 0]);
  const b = f32([1, 0.01]); // cos ≈ 0.99995 > threshold
  t.ok(cosineSimilarity(a, b) > SLERP_PARALLEL_THRESHOLD);
  t.same(Array.from(slerp(a, b, 0.5)), Array.from(lerp(a, b, 0.5)));
  const opposite = slerp(f32([1, 0]), f32([-1, 1e-9]), 0.5);
  t.ok(opposite.every(Number.isFinite), 'antiparallel input gives finite output');
});

t.test('slerp and lerp reject bad input', async (t) => {
  t.throws(() => slerp(f32([0, 0]), f32([1, 0]), 0.5), /zero vector/);
  t.throws(() => slerp(f32([1, 0]), f32([1, 0, 0]), 0.5), /length/);
  t.throws(() => lerp(f32([1]), f32([2]), 1.5), /alpha/);
  t.throws(() => lerp(f32([1]), f32([2]), Number.NaN), /alpha/);
});

t.test('lerp is eq. 24; preserveNorm keeps independent Gaussians at unit variance', async (t) => {
  t.same(Array.from(lerp(f32([0, 2]), f32([4, 6]), 0.25)), [1, 3]);
  const n = 1 << 16;
  const z1 = gaussianNoise(1, n);
  const z2 = gaussianNoise(2, n);
  const variance = (z: Float32Array) => z.reduce((s, v) => s + v * v, 0) / z.length;
  const plain = variance(lerp(z1, z2, 0.5));
  const kept = variance(lerp(z1, z2, 0.5, { preserveNorm: true }));
  t.ok(Math.abs(plain - 0.5) < 0.02, `plain lerp variance at α=0.5: ${plain.toFixed(4)} (theory 0.5)`);
  t.ok(Math.abs(kept - 1) < 0.03, `norm-preserving variance: ${kept.toFixed(4)} (theory 1)`);
  t.same(Array.from(lerp(z1, z2, 1, { preserveNorm: true }).subarray(0, 4)), Array.from(z2.subarray(0, 4)));
});

t.test('seeded noise is reproducible, independent per seed and standard normal', async (t) => {
  t.same(Array.from(gaussianNoise(42, 8)), Array.from(gaussianNoise(42, 8)));
  t.notSame(Array.from(gaussianNoise(42, 8)), Array.from(gaussianNoise(43, 8)));
  t.same(Array.from(gaussianNoise(7, 5)), Array.from(gaussianNoise(7, 9).subarray(0, 5)), 'a prefix does not depend on length');
  const z = gaussianNoise(3, 1 << 18);
  const mean = z.reduce((s, v) => s + v, 0) / z.length;
  const v = z.reduce((s, x) => s + (x - mean) ** 2, 0) / z.length;
  t.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
  t.ok(Math.abs(v - 1) < 0.01, `variance ${v}`);
  t.throws(() => gaussianNoise(-1, 4), /seed/);
  t.throws(() => gaussianNoise(1.5, 4), /seed/);
});

t.test('several photos of one person: identities by mean direction, image embeddings by mean', async (t) => {
  const a = new Float32Array([3, 0]);
  const b = new Float32Array([0, 0.5]);
  const id = averageIdentity([a, b]);
  t.ok(Math.abs((id[0] as number) - Math.SQRT1_2) < 1e-6 && Math.abs((id[1] as number) - Math.SQRT1_2) < 1e-6, 'each normalised first, so a large norm does not pull the mean: (1/√2, 1/√2)');
  t.same(Array.from(averageEmbedding([a, b])), [1.5, 0.25]);
  t.same(Array.from(averageIdentity([a])), [1, 0], 'one photo: its direction');
  t.throws(() => averageIdentity([]), /no vectors/);
  t.throws(() => averageIdentity([a, new Float32Array([-3, 0])]), /cancel out/);
  t.throws(() => averageIdentity([new Float32Array(2)]), /zero identity/);
});

t.test('scaleIdentity: c_s = (1−s)·c_∅ + s·c, exact at 0 and 1, extrapolating above', async (t) => {
  const cPrompt = Float32Array.from([0.1, -2, 3.3]);
  const c = Float32Array.from([0.7, 1, -0.3]);
  t.same(scaleIdentity(cPrompt, c, 0), cPrompt, 's = 0: the prompt alone');
  t.same(scaleIdentity(cPrompt, c, 1), c, 's = 1: the bundle as trained, bit for bit');
  // Reference values worked by hand: (1−2)·c_∅ + 2·c.
  const two = scaleIdentity(cPrompt, c, 2);
  [1.3, 4, -3.9].forEach((v, i) => t.ok(Math.abs((two[i] as number) - v) < 1e-6, `s = 2, component ${i}: ${two[i]} ≈ ${v}`));
  t.throws(() => scaleIdentity(cPrompt, c, -0.5), RangeError, 'a negative scale is refused');
  t.throws(() => scaleIdentity(cPrompt, Float32Array.of(1), 1), 'lengths must agree');
});
