// The sampling loop's per-step arithmetic — classifier-free guidance and the DDIM step (eq. 25) —
// as one WebAssembly SIMD pass over memory that the U-Net reads its sample batch from and writes its
// output into, so a step costs no copies and no allocations on the host. The kernel computes in
// float32 lanes (f32x4) with the operations in the order of `classifierFreeGuidance` then `ddimStep`
// (ddim.ts, float32 as diffusers' float32 pipeline), and WebAssembly never fuses a multiply into an
// add, so its bytes equal theirs (shared/test/ddim-arena.test.ts). The module is assembled here
// rather than compiled from another language so that the repository holds its only source.
//
// One arena holds the rows of every job being sampled together (step-level batching): each job
// owns a contiguous range of rows, laid out as `RowGroup` says.

import type { PredictionType } from './schedule.ts';
import { F32, F64, I32, MAX_BYTES, PAGE, V128, functionBody, i32, kernelModuleBytes, lget, loopWhileBelow, lset, memarg, op, simd, sop, wasm, type WasmModule } from './wasm-assembler.ts';

/**
 * One job's rows in an arena, from row `first`: with guidance 2·images rows — rows
 * [first, first+images) are its latents z and its unconditional branch, rows
 * [first+images, first+2·images) repeat z for its conditional branch; without, `images` rows.
 */
export interface RowGroup {
  first: number;
  images: number;
  /** Guidance scale g; at or below 1 the unconditional branch is skipped (as callers do). */
  guidanceScale: number;
  prediction: PredictionType;
}

/** U-Net rows of a group of `images` at guidance scale g. */
export function groupRows(images: number, guidanceScale: number): number {
  return guidanceScale > 1 ? 2 * images : images;
}

/** Memory for `capacity` U-Net rows: sample, model output and conditioning, with the kernel bound to it. */
export interface DdimArena {
  readonly capacity: number;
  readonly latentSize: number;
  readonly contextSize: number;
  /** The U-Net's sample batch, [capacity, latentSize]. */
  readonly sample: Float32Array;
  /** Where the U-Net's output goes, [capacity, latentSize], in the row order of `sample`. */
  readonly modelOutput: Float32Array;
  /** The U-Net's conditioning, [capacity, contextSize], in the row order of `sample`. */
  readonly context: Float32Array;
  /**
   * Guidance (when on) and the DDIM step from level ᾱ_t to ᾱ_prev for one group: reads its rows
   * of `modelOutput`, updates its z in place and, with guidance, the copy of z.
   */
  step(group: RowGroup, alphaBarT: number, alphaBarPrev: number): void;
  /** Copies `count` rows of sample and conditioning from row `from` to row `to` (ranges may overlap). */
  moveRows(from: number, to: number, count: number): void;
}

/** Allocates an arena of `capacity` rows (capacity·(2·latentSize + contextSize) floats). */
export function ddimArena(capacity: number, latentSize: number, contextSize: number): DdimArena {
  for (const [what, v] of [['capacity', capacity], ['latentSize', latentSize], ['contextSize', contextSize]] as const) {
    if (!(Number.isInteger(v) && v >= 1)) throw new RangeError(`${what} must be a positive integer, got ${v}`);
  }
  const bytes = capacity * (2 * latentSize + contextSize) * 4;
  if (bytes > MAX_BYTES) throw new RangeError(`an arena of ${capacity} rows × (2·${latentSize} + ${contextSize}) values needs ${bytes} bytes, over WebAssembly's ${MAX_BYTES}`);
  const memory = new wasm.Memory({ initial: Math.max(1, Math.ceil(bytes / PAGE)) });
  const kernels = new wasm.Instance(kernelModule(), { env: { memory } }).exports;
  const outBase = capacity * latentSize * 4;
  const sample = new Float32Array(memory.buffer, 0, capacity * latentSize);
  const context = new Float32Array(memory.buffer, 2 * outBase, capacity * contextSize);
  return {
    capacity,
    latentSize,
    contextSize,
    sample,
    modelOutput: new Float32Array(memory.buffer, outBase, capacity * latentSize),
    context,
    step(group, alphaBarT, alphaBarPrev) {
      const { first, images, guidanceScale: g, prediction } = group;
      if (!Number.isFinite(g)) throw new RangeError('guidance scale must be finite');
      const variant = KERNELS[prediction];
      if (variant === undefined) throw new RangeError(`prediction type "${String(prediction)}" is not supported`);
      const rows = groupRows(images, g);
      if (!(Number.isInteger(first) && first >= 0 && Number.isInteger(images) && images >= 1 && first + rows <= capacity)) {
        throw new RangeError(`rows [${first}, ${first + rows}) are not in the arena's ${capacity}`);
      }
      assertAlpha(alphaBarT, 'alphaBarT');
      assertAlpha(alphaBarPrev, 'alphaBarPrev');
      const guided = rows > images;
      const count = images * latentSize;
      const z = first * latentSize * 4;
      const u = outBase + z;
      // Guided: ε_u is the group's first `images` output rows, ε_c the next; z's copy follows z.
      const c = guided ? u + count * 4 : u;
      const copy = guided ? z + count * 4 : 0;
      const kernel = kernels[`${variant}_${guided ? 'guided' : 'plain'}`] as (...args: number[]) => void;
      kernel(z, u, c, copy, count, g, Math.sqrt(alphaBarT), Math.sqrt(1 - alphaBarT), Math.sqrt(alphaBarPrev), Math.sqrt(1 - alphaBarPrev));
    },
    moveRows(from, to, count) {
      sample.copyWithin(to * latentSize, from * latentSize, (from + count) * latentSize);
      context.copyWithin(to * contextSize, from * contextSize, (from + count) * contextSize);
    },
  };
}

function assertAlpha(value: number, name: string): void {
  if (!(value > 0 && value <= 1)) throw new RangeError(`${name} must be in (0, 1], got ${value}`);
}

const KERNELS: Partial<Record<string, 'eps' | 'v'>> = { epsilon: 'eps', v_prediction: 'v' };

let compiled: WasmModule | undefined;
function kernelModule(): WasmModule {
  compiled ??= new wasm.Module(kernelBytes());
  return compiled;
}

// ---- The module, assembled. -------------------------------------------------------------------
// Each exported function is (z, u, c, copy: i32 byte offsets, count: i32 elements,
// g, √ᾱ_t, √(1−ᾱ_t), √ᾱ_prev, √(1−ᾱ_prev): f64) → (), and updates z[0, count) in place (and its copy
// when guided). The coefficients are rounded to float32 once; four elements per iteration in one
// f32x4 vector, then the remainder one at a time with the same operations on scalars.

/** An expression over the formula's named values; the same tree is emitted for lanes and scalars. */
type Expr = { get: Name } | { op: 'add' | 'sub' | 'mul' | 'div'; a: Expr; b: Expr };
type Name = 'u' | 'c' | 'z' | 'e' | Coefficient;
type Coefficient = 'g' | 'sa' | 'sb' | 'sa2' | 'sb2';
const COEFFICIENTS = ['g', 'sa', 'sb', 'sa2', 'sb2'] as const;

const get = (name: Name): Expr => ({ get: name });
const add = (a: Expr, b: Expr): Expr => ({ op: 'add', a, b });
const sub = (a: Expr, b: Expr): Expr => ({ op: 'sub', a, b });
const mul = (a: Expr, b: Expr): Expr => ({ op: 'mul', a, b });
const div = (a: Expr, b: Expr): Expr => ({ op: 'div', a, b });

// classifierFreeGuidance: u + g·(c − u).
const GUIDED = add(get('u'), mul(get('g'), sub(get('c'), get('u'))));
// ddim.ts moveToLevel, with the model output read from `e`.
const STEP: Record<'eps' | 'v', Expr> = {
  eps: add(mul(get('sa2'), div(sub(get('z'), mul(get('sb'), get('e'))), get('sa'))), mul(get('sb2'), get('e'))),
  v: add(
    mul(get('sa2'), sub(mul(get('sa'), get('z')), mul(get('sb'), get('e')))),
    mul(get('sb2'), add(mul(get('sa'), get('e')), mul(get('sb'), get('z')))),
  ),
};

// Locals: parameters first, then i32 {i, end}, v128 {g, sa, sb, sa2, sb2, u, c, z, e, out},
// f32 {g, sa, sb, sa2, sb2, u, c, z, e}: each named value as lanes and as a scalar.
const P = { z: 0, u: 1, c: 2, copy: 3, count: 4, g: 5, sa: 6, sb: 7, sa2: 8, sb2: 9 } as const;
const L = { i: 10, end: 11 } as const;
const V = { g: 12, sa: 13, sb: 14, sa2: 15, sb2: 16, u: 17, c: 18, z: 19, e: 20, out: 21 } as const;
const S = { g: 22, sa: 23, sb: 24, sa2: 25, sb2: 26, u: 27, c: 28, z: 29, e: 30 } as const;

function emit(e: Expr, lanes: boolean): number[] {
  if ('get' in e) return lget((lanes ? V : S)[e.get]);
  return [...emit(e.a, lanes), ...emit(e.b, lanes), ...(lanes ? sop(simd.f32x4[e.op]) : [op.f32[e.op]])];
}

/** address = base + i */
const at = (base: number): number[] => [...lget(base), ...lget(L.i), op.i32Add];

function kernelBody(variant: 'eps' | 'v', guided: boolean): number[] {
  const sources: Array<['u' | 'c' | 'z', number]> = guided ? [['u', P.u], ['c', P.c], ['z', P.z]] : [['c', P.c], ['z', P.z]];
  const model = guided ? GUIDED : get('c');
  const code: number[] = [];
  for (const k of COEFFICIENTS) code.push(...lget(P[k]), op.f32Demote, ...lset(S[k]), ...lget(S[k]), ...sop(simd.f32x4Splat), ...lset(V[k]));
  // Four at a time up to the last whole group of four.
  code.push(...lget(P.count), ...i32(-4), op.i32And, ...i32(2), op.i32Shl, ...lset(L.end));
  const lanes: number[] = [];
  for (const [n, base] of sources) lanes.push(...at(base), ...sop(simd.load), ...memarg(2), ...lset(V[n]));
  lanes.push(...emit(model, true), ...lset(V.e), ...emit(STEP[variant], true), ...lset(V.out));
  lanes.push(...at(P.z), ...lget(V.out), ...sop(simd.store), ...memarg(2));
  if (guided) lanes.push(...at(P.copy), ...lget(V.out), ...sop(simd.store), ...memarg(2));
  code.push(...loopWhileBelow(L.i, L.end, 16, lanes));
  // The remainder, one element at a time.
  code.push(...lget(P.count), ...i32(2), op.i32Shl, ...lset(L.end));
  const scalars: number[] = [];
  for (const [n, base] of sources) scalars.push(...at(base), op.f32Load, ...memarg(2), ...lset(S[n]));
  scalars.push(...emit(model, false), ...lset(S.e), ...at(P.z), ...emit(STEP[variant], false), op.f32Store, ...memarg(2));
  if (guided) scalars.push(...at(P.copy), ...at(P.z), op.f32Load, ...memarg(2), op.f32Store, ...memarg(2));
  code.push(...loopWhileBelow(L.i, L.end, 4, scalars));
  return functionBody([[2, I32], [10, V128], [9, F32]], code);
}

function kernelBytes(): Uint8Array {
  const variants = [['eps', true], ['eps', false], ['v', true], ['v', false]] as const;
  const params = [I32, I32, I32, I32, I32, F64, F64, F64, F64, F64];
  return kernelModuleBytes(variants.map(([v, guided]) => ({ name: `${v}_${guided ? 'guided' : 'plain'}`, params, body: kernelBody(v, guided) })));
}
