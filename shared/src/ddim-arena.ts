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

const PAGE = 65536;
const MAX_BYTES = 65536 * PAGE - PAGE;
const KERNELS: Partial<Record<string, 'eps' | 'v'>> = { epsilon: 'eps', v_prediction: 'v' };

// The part of the WebAssembly API used here, typed locally: the project's TypeScript libraries
// (ES2023 and @types/node) do not declare it, and the DOM's declarations are not ours to add.
interface WasmModule {
  readonly kind: 'wasm-module';
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Memory: new (descriptor: { initial: number }) => { readonly buffer: ArrayBuffer };
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => { readonly exports: Record<string, unknown> };
}
const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

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

const I32 = 0x7f;
const F32 = 0x7d;
const F64 = 0x7c;
const V128 = 0x7b;
const op = {
  block: 0x02, loop: 0x03, br: 0x0c, brIf: 0x0d, end: 0x0b,
  localGet: 0x20, localSet: 0x21,
  i32Const: 0x41, i32Add: 0x6a, i32GeU: 0x4f, i32Shl: 0x74, i32And: 0x71,
  f32Load: 0x2a, f32Store: 0x38, f32Demote: 0xb6,
  f32: { add: 0x92, sub: 0x93, mul: 0x94, div: 0x95 },
} as const;
// SIMD instructions: the 0xfd prefix and a LEB128 opcode.
const simd = {
  load: 0x00, store: 0x0b, f32x4Splat: 0x13,
  f32x4: { add: 0xe4, sub: 0xe5, mul: 0xe6, div: 0xe7 },
} as const;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => vec([...new TextEncoder().encode(s)].map((b) => [b]));
const sop = (code: number): number[] => [0xfd, ...uleb(code)];
const lget = (i: number): number[] => [op.localGet, ...uleb(i)];
const lset = (i: number): number[] => [op.localSet, ...uleb(i)];
const memarg = (align: number): number[] => [align, 0];

function emit(e: Expr, lanes: boolean): number[] {
  if ('get' in e) return lget((lanes ? V : S)[e.get]);
  return [...emit(e.a, lanes), ...emit(e.b, lanes), ...(lanes ? sop(simd.f32x4[e.op]) : [op.f32[e.op]])];
}

/** address = base + i */
const at = (base: number): number[] => [...lget(base), ...lget(L.i), op.i32Add];

function functionBody(variant: 'eps' | 'v', guided: boolean): number[] {
  const sources: Array<['u' | 'c' | 'z', number]> = guided ? [['u', P.u], ['c', P.c], ['z', P.z]] : [['c', P.c], ['z', P.z]];
  const model = guided ? GUIDED : get('c');
  const code: number[] = [];
  for (const k of COEFFICIENTS) code.push(...lget(P[k]), op.f32Demote, ...lset(S[k]), ...lget(S[k]), ...sop(simd.f32x4Splat), ...lset(V[k]));
  // Four at a time up to the last whole group of four.
  code.push(...lget(P.count), op.i32Const, ...sleb(-4), op.i32And, op.i32Const, 2, op.i32Shl, ...lset(L.end));
  code.push(op.block, 0x40, op.loop, 0x40, ...lget(L.i), ...lget(L.end), op.i32GeU, op.brIf, 1);
  for (const [n, base] of sources) code.push(...at(base), ...sop(simd.load), ...memarg(2), ...lset(V[n]));
  code.push(...emit(model, true), ...lset(V.e), ...emit(STEP[variant], true), ...lset(V.out));
  code.push(...at(P.z), ...lget(V.out), ...sop(simd.store), ...memarg(2));
  if (guided) code.push(...at(P.copy), ...lget(V.out), ...sop(simd.store), ...memarg(2));
  code.push(...lget(L.i), op.i32Const, 16, op.i32Add, ...lset(L.i), op.br, 0, op.end, op.end);
  // The remainder, one element at a time.
  code.push(...lget(P.count), op.i32Const, 2, op.i32Shl, ...lset(L.end));
  code.push(op.block, 0x40, op.loop, 0x40, ...lget(L.i), ...lget(L.end), op.i32GeU, op.brIf, 1);
  for (const [n, base] of sources) code.push(...at(base), op.f32Load, ...memarg(2), ...lset(S[n]));
  code.push(...emit(model, false), ...lset(S.e), ...at(P.z), ...emit(STEP[variant], false), op.f32Store, ...memarg(2));
  if (guided) code.push(...at(P.copy), ...at(P.z), op.f32Load, ...memarg(2), op.f32Store, ...memarg(2));
  code.push(...lget(L.i), op.i32Const, 4, op.i32Add, ...lset(L.i), op.br, 0, op.end, op.end);
  code.push(op.end);
  const locals = vec([[2, I32], [10, V128], [9, F32]].map(([n, t]) => [...uleb(n as number), t as number]));
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

function kernelBytes(): Uint8Array {
  const variants = [['eps', true], ['eps', false], ['v', true], ['v', false]] as const;
  const type = [0x60, ...vec([I32, I32, I32, I32, I32, F64, F64, F64, F64, F64].map((t) => [t])), ...vec([])];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec([type])),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]])),
    ...section(3, vec(variants.map(() => [0]))),
    ...section(7, vec(variants.map(([v, guided], i) => [...name(`${v}_${guided ? 'guided' : 'plain'}`), 0x00, i]))),
    ...section(10, vec(variants.map(([v, guided]) => functionBody(v, guided)))),
  ];
  return Uint8Array.from(bytes);
}
