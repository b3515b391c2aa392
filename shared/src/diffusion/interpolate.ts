// Embedding and latent mixing: morph interpolation (paper §3.4, appendix A.1.5) — SLERP of
// identity embeddings (eq. 23), LERP of inverted latents (eq. 24) — and the averages that join
// several photos of one person. Pure functions over Float32Array, accumulated in float64.

/** |cos ω| above which SLERP falls back to LERP: sin ω is too small to divide by safely. */
export const SLERP_PARALLEL_THRESHOLD = 0.9995;
const COS_CLAMP = 1 - 1e-7;

function assertAlphaUnit(alpha: number): void {
  if (!(alpha >= 0 && alpha <= 1)) throw new RangeError(`alpha must be in [0, 1], got ${alpha}`);
}

function assertSameLength(a: Float32Array, b: Float32Array): void {
  if (a.length !== b.length) throw new RangeError(`vectors differ in length (${a.length} vs ${b.length})`);
  if (a.length === 0) throw new RangeError('vectors are empty');
}

/**
 * Spherical interpolation, eq. 23:
 * e_mix = sin((1−α)ω)/sin ω · e_1 + sin(αω)/sin ω · e_2, ω = arccos(e_1·e_2 / (‖e_1‖‖e_2‖)).
 * The coefficients apply to the vectors as given, so two vectors of equal norm stay on their
 * sphere. cos ω is clamped to ±(1 − 1e-7); when |cos ω| > 0.9995 the result is LERP (eq. 24).
 * A zero vector has no direction: that throws.
 */
export function slerp(e1: Float32Array, e2: Float32Array, alpha: number): Float32Array {
  assertSameLength(e1, e2);
  assertAlphaUnit(alpha);
  const { dot, n1, n2 } = dotAndNorms(e1, e2);
  if (n1 === 0 || n2 === 0) throw new RangeError('slerp of a zero vector is undefined');
  const cos = Math.min(COS_CLAMP, Math.max(-COS_CLAMP, dot / Math.sqrt(n1 * n2)));
  if (Math.abs(cos) > SLERP_PARALLEL_THRESHOLD) return lerp(e1, e2, alpha);
  const omega = Math.acos(cos);
  const sinOmega = Math.sin(omega);
  const c1 = Math.sin((1 - alpha) * omega) / sinOmega;
  const c2 = Math.sin(alpha * omega) / sinOmega;
  const out = new Float32Array(e1.length);
  for (let i = 0; i < out.length; i++) out[i] = c1 * (e1[i] as number) + c2 * (e2[i] as number);
  return out;
}

/** Options of {@link lerp}. */
export interface LerpOptions {
  /**
   * Divide by √((1−α)² + α²). For independent standard-normal z_1, z_2 (DDIM-inverted latents are
   * approximately that), plain LERP has variance (1−α)² + α², 0.5 at α = 0.5: the norm shrinks to
   * ≈0.707× and the decoded image goes flat. The division restores unit variance exactly for
   * independent Gaussians and is the identity at α = 0 and α = 1.
   *
   * Morph does not use it: it follows the paper's eq. 24 (plain LERP), and the division's
   * premise — two independent latents — does not hold for the inversions of two faces aligned
   * on the same canvas, whose latents share their layout (correlation ρ > 0 makes the variance
   * (1−α)² + α² + 2α(1−α)ρ, which the division would over-correct). It is for interpolating
   * independent noise, such as two seeds' starting latents.
   */
  preserveNorm?: boolean;
}

/** Linear interpolation, eq. 24: z_mix = (1−α)·z_1 + α·z_2. */
export function lerp(z1: Float32Array, z2: Float32Array, alpha: number, options: LerpOptions = {}): Float32Array {
  assertSameLength(z1, z2);
  assertAlphaUnit(alpha);
  const scale = options.preserveNorm ? 1 / Math.sqrt((1 - alpha) ** 2 + alpha ** 2) : 1;
  const c1 = (1 - alpha) * scale;
  const c2 = alpha * scale;
  const out = new Float32Array(z1.length);
  for (let i = 0; i < out.length; i++) out[i] = c1 * (z1[i] as number) + c2 * (z2[i] as number);
  return out;
}

/**
 * Identity strength s (identity_scale) on the adapter's conditioning tokens:
 * c_s = (1−s)·c_∅ + s·c, where c is the conditioning of the photo with the prompt and c_∅ that of
 * the prompt alone (zero identity embeddings). s = 0 gives c_∅ and s = 1 gives c exactly; above 1
 * it extrapolates past c, as classifier-free guidance does past its conditional branch.
 */
export function scaleIdentity(cPrompt: Float32Array, c: Float32Array, s: number): Float32Array {
  assertSameLength(cPrompt, c);
  if (!(s >= 0 && Number.isFinite(s))) throw new RangeError(`identity scale must be a finite number ≥ 0, got ${s}`);
  const out = new Float32Array(c.length);
  for (let i = 0; i < out.length; i++) out[i] = (1 - s) * (cPrompt[i] as number) + s * (c[i] as number);
  return out;
}

/** a·b, ‖a‖² and ‖b‖², accumulated in float64. */
function dotAndNorms(a: Float32Array, b: Float32Array): { dot: number; n1: number; n2: number } {
  let dot = 0;
  let n1 = 0;
  let n2 = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    dot += x * y;
    n1 += x * x;
    n2 += y * y;
  }
  return { dot, n1, n2 };
}

/** Cosine similarity in float64; a zero vector scores 0. */
export function cosineSimilarity(a: Float32Array, b: Float32Array): number {
  assertSameLength(a, b);
  const { dot, n1, n2 } = dotAndNorms(a, b);
  if (n1 === 0 || n2 === 0) return 0;
  return Math.max(-1, Math.min(1, dot / Math.sqrt(n1 * n2)));
}

function assertSome(vectors: Float32Array[]): Float32Array {
  const first = vectors[0];
  if (!first) throw new RangeError('no vectors to average');
  for (const v of vectors) assertSameLength(first, v);
  return first;
}

/**
 * The identity of several photos of one person: each embedding normalised to unit length,
 * averaged, and the mean normalised again (a recognizer's identity is a direction; a photo's
 * norm says how confident the network was, not who it is).
 */
export function averageIdentity(embeddings: Float32Array[]): Float32Array {
  const first = assertSome(embeddings);
  const sum = new Float64Array(first.length);
  for (const e of embeddings) {
    const { n1 } = dotAndNorms(e, e);
    if (n1 === 0) throw new RangeError('a zero identity embedding has no direction');
    const inv = 1 / Math.sqrt(n1);
    for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (e[i] as number) * inv;
  }
  let norm = 0;
  for (const v of sum) norm += v * v;
  if (norm === 0) throw new RangeError('the identity embeddings cancel out');
  const inv = 1 / Math.sqrt(norm);
  return Float32Array.from(sum, (v) => v * inv);
}

/** The element-wise mean of embeddings (image embeddings, whose norms carry content). */
export function averageEmbedding(embeddings: Float32Array[]): Float32Array {
  const first = assertSome(embeddings);
  const sum = new Float64Array(first.length);
  for (const e of embeddings) for (let i = 0; i < sum.length; i++) sum[i] = (sum[i] as number) + (e[i] as number);
  // A loop, not Float32Array.from(sum, fn): the mapping form runs element by element through the
  // iterator protocol, 12 ms for one CLIP hidden-state embedding.
  const out = new Float32Array(sum.length);
  for (let i = 0; i < sum.length; i++) out[i] = (sum[i] as number) / embeddings.length;
  return out;
}
