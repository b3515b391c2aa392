// The paper's evaluation measures (§4.1): FS — face similarity, the mean cosine ×100 between each
// output's face embedding and its source's; FID — the Fréchet distance between Inception pool
// features of real and generated images; FIQ = 100·FS%/FID (eq. 4). And for morphs, how evenly a
// sequence of frames travels from A to B. Pure functions over Float32Array.
import { EigenvalueDecomposition, Matrix } from 'ml-matrix';
import { coefficientOfVariation } from '@diffid/shared/diffusion';

/** FS%: the mean ×100 of each output's cosine similarity to its source (outputs with no face left out). */
export function faceSimilarityPercent(similarities: number[]): number | null {
  if (similarities.length === 0) return null;
  return (100 * similarities.reduce((s, x) => s + x, 0)) / similarities.length;
}

/** Mean and covariance (unbiased) of feature rows. */
export function gaussianOf(rows: Float32Array[]): { mean: Float64Array; cov: Matrix } {
  const n = rows.length;
  const d = rows[0]?.length ?? 0;
  if (n < 2) throw new RangeError('a Fréchet distance needs at least two feature rows per set');
  const mean = new Float64Array(d);
  for (const r of rows) for (let i = 0; i < d; i++) mean[i] = (mean[i] as number) + (r[i] as number) / n;
  const centred = new Matrix(rows.map((r) => Array.from(r, (v, i) => v - (mean[i] as number))));
  return { mean, cov: centred.transpose().mmul(centred).div(n - 1) };
}

/**
 * The Fréchet distance between two Gaussians:
 * ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), with Tr((Σ₁Σ₂)^½) = Σ √λ over the eigenvalues λ of
 * Σ₁^½ Σ₂ Σ₁^½ (symmetric, positive semi-definite), by ml-matrix's eigen-decomposition.
 */
export function frechetDistance(a: { mean: Float64Array; cov: Matrix }, b: { mean: Float64Array; cov: Matrix }): number {
  let meanTerm = 0;
  a.mean.forEach((v, i) => (meanTerm += (v - (b.mean[i] as number)) ** 2));
  const sqrtA = symmetricSqrt(a.cov);
  const middle = sqrtA.mmul(b.cov).mmul(sqrtA);
  const eig = new EigenvalueDecomposition(middle.add(middle.transpose()).div(2), { assumeSymmetric: true });
  const traceSqrt = eig.realEigenvalues.reduce((s, l) => s + Math.sqrt(Math.max(0, l)), 0);
  return Math.max(0, meanTerm + a.cov.trace() + b.cov.trace() - 2 * traceSqrt);
}

function symmetricSqrt(m: Matrix): Matrix {
  const eig = new EigenvalueDecomposition(m, { assumeSymmetric: true });
  const v = eig.eigenvectorMatrix;
  const d = Matrix.diag(eig.realEigenvalues.map((l) => Math.sqrt(Math.max(0, l))));
  return v.mmul(d).mmul(v.transpose());
}

/** FIQ = 100·FS%/FID (paper eq. 4); null without both. */
export function fiq(fsPercent: number | null, fid: number | null): number | null {
  return fsPercent === null || fid === null || fid <= 0 ? null : (100 * fsPercent) / fid;
}

/**
 * How evenly morph frames travel from A to B: for each frame, its place p = s_B / (s_A + s_B)
 * between the two identities; the pacing is the coefficient of variation of the steps between
 * consecutive frames' p (0: even steps; larger: uneven), with the overall travel p_last − p_first.
 */
export function morphPacing(toA: number[], toB: number[]): { places: number[]; travel: number; unevenness: number } {
  const places = toA.map((a, i) => {
    const b = toB[i] as number;
    const sa = Math.max(0, a);
    const sb = Math.max(0, b);
    return sa + sb === 0 ? 0.5 : sb / (sa + sb);
  });
  const steps = places.slice(1).map((p, i) => p - (places[i] as number));
  const travel = (places.at(-1) ?? 0) - (places[0] ?? 0);
  // A morph that goes nowhere is not evenly paced.
  return { places, travel, unevenness: travel === 0 ? Infinity : coefficientOfVariation(steps) };
}
