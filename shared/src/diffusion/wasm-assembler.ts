// What the project's hand-assembled WebAssembly kernels share: the binary format's encodings, the
// opcodes they use, and the part of the WebAssembly API they call. Kernels are assembled from
// TypeScript (ddim-arena.ts here, the worker's pixel-kernels.ts) rather than compiled from another
// language, so that the repository holds their only source.

/** Value types. */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const F64 = 0x7c;
export const V128 = 0x7b;

/** One-byte opcodes. */
export const op = {
  block: 0x02, loop: 0x03, br: 0x0c, brIf: 0x0d, end: 0x0b,
  localGet: 0x20, localSet: 0x21,
  i32Load8U: 0x2d, i32Store8: 0x3a,
  i32Const: 0x41, i32Add: 0x6a, i32Mul: 0x6c, i32And: 0x71, i32Shl: 0x74, i32ShrU: 0x76, i32GeU: 0x4f,
  f32Const: 0x43, f32Load: 0x2a, f32Store: 0x38, f32Demote: 0xb6,
  f32: { add: 0x92, sub: 0x93, mul: 0x94, div: 0x95 },
} as const;

/** SIMD instructions (after the 0xfd prefix, see `sop`). */
export const simd = {
  load: 0x00, store: 0x0b, store32Lane: 0x5a, f32x4Splat: 0x13,
  f32x4: { add: 0xe4, sub: 0xe5, mul: 0xe6, div: 0xe7 },
  f32x4Nearest: 0x6a,
  i32x4TruncSatF32x4S: 0xf8,
  i16x8NarrowI32x4S: 0x85,
  i8x16NarrowI16x8U: 0x66,
} as const;

export function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

export function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0)) return [...out, byte];
    out.push(byte | 0x80);
  }
}

export const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
export const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
export const name = (s: string): number[] => vec([...new TextEncoder().encode(s)].map((b) => [b]));
export const sop = (code: number): number[] => [0xfd, ...uleb(code)];
export const lget = (i: number): number[] => [op.localGet, ...uleb(i)];
export const lset = (i: number): number[] => [op.localSet, ...uleb(i)];
export const i32 = (n: number): number[] => [op.i32Const, ...sleb(n)];
/** A memory access's alignment (log2 bytes) and constant offset. */
export const memarg = (align: number, offset = 0): number[] => [...uleb(align), ...uleb(offset)];

/** `f32.const v`, little-endian. */
export function f32(v: number): number[] {
  return [op.f32Const, ...new Uint8Array(new Float32Array([v]).buffer)];
}

/** `while (local[i] < local[end]) { body; local[i] += step }`, unsigned. */
export function loopWhileBelow(i: number, end: number, step: number, body: number[]): number[] {
  return [op.block, 0x40, op.loop, 0x40, ...lget(i), ...lget(end), op.i32GeU, op.brIf, 1, ...body, ...lget(i), ...i32(step), op.i32Add, ...lset(i), op.br, 0, op.end, op.end];
}

/** A function body: its locals as [count, type] runs, then its code (which this closes with `end`). */
export function functionBody(locals: Array<[number, number]>, code: number[]): number[] {
  const body = [...vec(locals.map(([n, t]) => [...uleb(n), t])), ...code, op.end];
  return [...uleb(body.length), ...body];
}

/** A kernel function: its exported name, parameter types (no results) and body. */
export interface KernelFunction {
  name: string;
  params: number[];
  body: number[];
}

/** A module importing `env.memory` and exporting each function, one type per function. */
export function kernelModuleBytes(functions: KernelFunction[]): Uint8Array {
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(functions.map((f) => [0x60, ...vec(f.params.map((t) => [t])), ...vec([])]))),
    ...section(2, vec([[...name('env'), ...name('memory'), 0x02, 0x00, 0x01]])),
    ...section(3, vec(functions.map((_, i) => uleb(i)))),
    ...section(7, vec(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]))),
    ...section(10, vec(functions.map((f) => f.body))),
  ];
  return Uint8Array.from(bytes);
}

// The part of the WebAssembly API used here, typed locally: the project's TypeScript libraries
// (ES2023 and @types/node) do not declare it, and the DOM's declarations are not ours to add.
export interface WasmModule {
  readonly kind: 'wasm-module';
}
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Memory: new (descriptor: { initial: number }) => WasmMemory;
  Instance: new (module: WasmModule, imports: Record<string, Record<string, unknown>>) => { readonly exports: Record<string, unknown> };
}
export const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;

/** Bytes per WebAssembly page, and the most a 32-bit memory holds. */
export const PAGE = 65536;
export const MAX_BYTES = 65536 * PAGE - PAGE;
