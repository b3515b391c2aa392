import t from 'tap';
import { Matrix } from 'ml-matrix';
import { faceSimilarityPercent, fiq, frechetDistance, gaussianOf, morphPacing } from '../src/eval/metrics.ts';

t.test('Fréchet distance: the closed form for two known Gaussians, and zero for one against itself', async (t) => {
  // Diagonal covariances: FID = Σ(μ₁−μ₂)² + Σ(σ₁² + σ₂² − 2σ₁σ₂).
  const a = { mean: Float64Array.from([0, 1, 2]), cov: Matrix.diag([1, 4, 9]) };
  const b = { mean: Float64Array.from([1, 1, 0]), cov: Matrix.diag([4, 1, 1]) };
  const closed = 1 + 0 + 4 + (1 + 4 - 2 * 2) + (4 + 1 - 2 * 2) + (9 + 1 - 2 * 3);
  t.ok(Math.abs(frechetDistance(a, b) - closed) < 1e-9, `${frechetDistance(a, b)} = ${closed}`);
  t.ok(Math.abs(frechetDistance(a, a)) < 1e-9, 'a Gaussian against itself: 0');
  // A rotated full covariance keeps the distance to itself at 0 and is symmetric.
  const r = new Matrix([[2, 1, 0], [1, 2, 1], [0, 1, 2]]);
  const c = { mean: Float64Array.from([0, 0, 0]), cov: r };
  t.ok(Math.abs(frechetDistance(c, c)) < 1e-9);
  t.ok(Math.abs(frechetDistance(a, c) - frechetDistance(c, a)) < 1e-9, 'symmetric');
  const g = gaussianOf([Float32Array.from([1, 2]), Float32Array.from([3, 2]), Float32Array.from([5, 8])]);
  t.same(Array.from(g.mean), [3, 4]);
  t.same(g.cov.to2DArray(), [[4, 6], [6, 12]], 'the unbiased covariance');
});

t.test('FS%, FIQ and morph pacing', async (t) => {
  t.equal(faceSimilarityPercent([1, 0]), 50);
  t.equal(faceSimilarityPercent([]), null);
  t.equal(fiq(60, 20), 300, 'paper eq. 4: 100 · FS% / FID');
  t.equal(fiq(60, null), null);
  const even = morphPacing([1, 0.75, 0.5, 0.25, 0], [0, 0.25, 0.5, 0.75, 1]);
  t.same(even.places, [0, 0.25, 0.5, 0.75, 1]);
  t.equal(even.travel, 1);
  t.ok(even.unevenness < 1e-12, 'equal steps: no unevenness');
  const jumpy = morphPacing([1, 0.95, 0.9, 0.1, 0], [0, 0.05, 0.1, 0.9, 1]);
  t.ok(jumpy.unevenness > 1, `one big jump: unevenness ${jumpy.unevenness.toFixed(2)}`);
});
