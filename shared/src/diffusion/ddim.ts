// Deterministic DDIM (η = 0) steps and classifier-free guidance, elementwise over Float32Array.
// Paper: eq. 17 defines the forward process z_t = √ᾱ_t·z_0 + √(1−ᾱ_t)·ε; eq. 22 is the inversion
// Φ⁻¹ and eq. 25 the sampling that these steps make up. Formulas follow diffusers' DDIMScheduler
// and DDIMInverseScheduler (docs/reference-values.md).

import type { PredictionType } from './schedule.ts';

function sameLength(a: Float32Array, b: Float32Array, what: string): void {
  if (a.length !== b.length) throw new RangeError(`${what}: lengths differ (${a.length} vs ${b.length})`);
}

function assertAlpha(value: number, name: string): void {
  if (!(value > 0 && value <= 1)) throw new RangeError(`${name} must be in (0, 1], got ${value}`);
}

// Float32 arithmetic, as diffusers' float32 pipeline does it: the coefficients rounded to float32,
// every operation rounded to float32 (fround of a double result is the float32 result for +, −, ×,
// ÷), in diffusers' order. The WebAssembly step (ddim-arena.ts) computes the same in float32 lanes,
// byte for byte.
const f = Math.fround;

/**
 * The model output turned into (ẑ_0, ε̂) at level ᾱ, by eq. 17 read backwards:
 * ε-prediction: ẑ_0 = (z − √(1−ᾱ)·ε)/√ᾱ; v-prediction: ẑ_0 = √ᾱ·z − √(1−ᾱ)·v, ε̂ = √ᾱ·v + √(1−ᾱ)·z.
 * Then z' = √ᾱ'·ẑ_0 + √(1−ᾱ')·ε̂ moves the latent to level ᾱ'.
 */
function moveToLevel(
  z: Float32Array,
  modelOutput: Float32Array,
  alphaBarFrom: number,
  alphaBarTo: number,
  prediction: PredictionType,
  out: Float32Array,
): Float32Array {
  const sa = f(Math.sqrt(alphaBarFrom));
  const sb = f(Math.sqrt(1 - alphaBarFrom));
  const sa2 = f(Math.sqrt(alphaBarTo));
  const sb2 = f(Math.sqrt(1 - alphaBarTo));
  if (prediction === 'epsilon') {
    for (let i = 0; i < z.length; i++) {
      const eps = modelOutput[i] as number;
      const x0 = f(f((z[i] as number) - f(sb * eps)) / sa);
      out[i] = f(sa2 * x0) + f(sb2 * eps);
    }
  } else if (prediction === 'v_prediction') {
    for (let i = 0; i < z.length; i++) {
      const v = modelOutput[i] as number;
      const zi = z[i] as number;
      const x0 = f(f(sa * zi) - f(sb * v));
      const eps = f(f(sa * v) + f(sb * zi));
      out[i] = f(sa2 * x0) + f(sb2 * eps);
    }
  } else {
    throw new RangeError(`prediction type "${String(prediction)}" is not supported`);
  }
  return out;
}

function checkedMove(
  what: string,
  z: Float32Array,
  modelOutput: Float32Array,
  from: [string, number],
  to: [string, number],
  prediction: PredictionType,
  out: Float32Array,
): Float32Array {
  sameLength(z, modelOutput, what);
  sameLength(z, out, `${what} output`);
  assertAlpha(from[1], from[0]);
  assertAlpha(to[1], to[0]);
  return moveToLevel(z, modelOutput, from[1], to[1], prediction, out);
}

/**
 * One DDIM sampling step with η = 0 (Song et al., eq. 12 with σ_t = 0): from z_t at ᾱ_t to
 * z_prev at ᾱ_prev, given the model output at t. Writes into `out` when given (may alias z_t).
 */
export function ddimStep(
  zT: Float32Array,
  modelOutput: Float32Array,
  alphaBarT: number,
  alphaBarPrev: number,
  prediction: PredictionType,
  out: Float32Array = new Float32Array(zT.length),
): Float32Array {
  return checkedMove('ddimStep', zT, modelOutput, ['alphaBarT', alphaBarT], ['alphaBarPrev', alphaBarPrev], prediction, out);
}

/**
 * One DDIM inversion step (eq. 22, step by step): from z_s at ᾱ_s up to level ᾱ_t, with the
 * model output evaluated at the target t on z_s — the usual approximation ε(z_t, t) ≈ ε(z_s, t).
 */
export function ddimInverseStep(
  zS: Float32Array,
  modelOutput: Float32Array,
  alphaBarS: number,
  alphaBarT: number,
  prediction: PredictionType,
  out: Float32Array = new Float32Array(zS.length),
): Float32Array {
  return checkedMove('ddimInverseStep', zS, modelOutput, ['alphaBarS', alphaBarS], ['alphaBarT', alphaBarT], prediction, out);
}

/** Sample standard deviation with Bessel's correction, as torch.std, accumulated in float64. */
export function std(x: Float32Array): number {
  if (x.length < 2) throw new RangeError('std needs at least two values');
  let mean = 0;
  for (let i = 0; i < x.length; i++) mean += x[i] as number;
  mean /= x.length;
  let ss = 0;
  for (let i = 0; i < x.length; i++) {
    const d = (x[i] as number) - mean;
    ss += d * d;
  }
  return Math.sqrt(ss / (x.length - 1));
}

/**
 * Classifier-free guidance for one image: ε = ε_u + g·(ε_c − ε_u), in float32 (g rounded to it).
 * With guidance_rescale φ > 0 (Lin et al. 2023, eq. 15–16): ε ← φ·ε·std(ε_c)/std(ε) + (1 − φ)·ε,
 * stds over the whole image, in float64. Callers skip the unconditional branch entirely when
 * g ≤ 1; this function still computes it.
 */
export function classifierFreeGuidance(
  epsUncond: Float32Array,
  epsCond: Float32Array,
  guidanceScale: number,
  guidanceRescale = 0,
  out: Float32Array = new Float32Array(epsCond.length),
): Float32Array {
  sameLength(epsUncond, epsCond, 'classifierFreeGuidance');
  sameLength(epsCond, out, 'classifierFreeGuidance output');
  if (!Number.isFinite(guidanceScale)) throw new RangeError('guidance scale must be finite');
  if (!(guidanceRescale >= 0 && guidanceRescale <= 1)) throw new RangeError('guidance_rescale must be in [0, 1]');
  const g = f(guidanceScale);
  for (let i = 0; i < out.length; i++) {
    const u = epsUncond[i] as number;
    out[i] = u + f(g * f((epsCond[i] as number) - u));
  }
  if (guidanceRescale > 0) {
    const sCfg = std(out);
    // All-zero guided noise has no scale to correct.
    const factor = sCfg > 0 ? std(epsCond) / sCfg : 1;
    const keep = 1 - guidanceRescale;
    for (let i = 0; i < out.length; i++) {
      const e = out[i] as number;
      out[i] = guidanceRescale * e * factor + keep * e;
    }
  }
  return out;
}
