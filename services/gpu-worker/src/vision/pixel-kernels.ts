// The VAE's output to RGB bytes in WebAssembly SIMD: in JavaScript, a clamped store per value took
// 1.15 ms per 256² image, in f32x4 lanes 0.16 ms (docs/benchmarks.md). The call copies its input
// into the module's memory and its output out, so callers keep plain typed arrays. Same bytes as
// the formula in pixels.ts (services/gpu-worker/test/pixels.test.ts).
import {
  I32,
  MAX_BYTES,
  PAGE,
  V128,
  f32,
  functionBody,
  i32,
  kernelModuleBytes,
  lget,
  loopWhileBelow,
  lset,
  memarg,
  op,
  simd,
  sop,
  wasm,
  type WasmMemory,
} from '@diffid/shared/wasm';

interface Kernels {
  memory: WasmMemory;
  /** (src, tmp, dst, n, n4): 3 planes of n4 floats at src → n interleaved RGB pixels at dst. */
  signedToRgb: (src: number, tmp: number, dst: number, n: number, n4: number) => void;
}

let kernels: Kernels | undefined;

/** The thread's kernels, their memory grown to at least `bytes`. */
function withMemory(bytes: number): Kernels {
  if (bytes > MAX_BYTES) throw new RangeError(`a pixel kernel needs ${bytes} bytes, over WebAssembly's ${MAX_BYTES}`);
  if (!kernels) {
    const memory = new wasm.Memory({ initial: 1 });
    const exports = new wasm.Instance(new wasm.Module(moduleBytes()), { env: { memory } }).exports;
    kernels = { memory, signedToRgb: exports.signed_to_rgb as Kernels['signedToRgb'] };
  }
  const short = bytes - kernels.memory.buffer.byteLength;
  if (short > 0) kernels.memory.grow(Math.ceil(short / PAGE));
  return kernels;
}

const align16 = (n: number) => Math.ceil(n / 16) * 16;

/**
 * Planar float32 [3, n] in [−1, 1] → interleaved RGB bytes: clamp(x·0.5 + 0.5)·255 in float32,
 * rounded half to even — f32x4 lanes, rounded by f32x4.nearest, clamped by saturating narrows
 * (NaN becomes 0, as a Uint8ClampedArray stores it).
 */
export function planarSignedToRgb(chw: Float32Array, n: number): Uint8Array {
  const n4 = Math.ceil(n / 4) * 4;
  const tmp = align16(3 * n4 * 4);
  const dst = align16(tmp + 3 * n4);
  const k = withMemory(dst + 3 * n);
  const floats = new Float32Array(k.memory.buffer, 0, 3 * n4);
  // Each plane starts on a whole vector; the padding's bytes are computed and never read.
  for (let c = 0; c < 3; c++) floats.set(chw.subarray(c * n, (c + 1) * n), c * n4);
  k.signedToRgb(0, tmp, dst, n, n4);
  return new Uint8Array(k.memory.buffer, dst, 3 * n).slice();
}

// ---- The module, assembled. -------------------------------------------------------------------

function signedToRgbBody(): number[] {
  const [src, tmp, dst, n, n4] = [0, 1, 2, 3, 4];
  const [i, end, half, k255, v] = [5, 6, 7, 8, 9];
  const code: number[] = [];
  code.push(...f32(0.5), ...sop(simd.f32x4Splat), ...lset(half), ...f32(255), ...sop(simd.f32x4Splat), ...lset(k255));
  // Every plane's floats, four at a time: byte offset i of the floats, i/4 of the bytes at tmp.
  code.push(...lget(n4), ...i32(12), op.i32Mul, ...lset(end));
  code.push(
    ...loopWhileBelow(i, end, 16, [
      ...lget(tmp), ...lget(i), ...i32(2), op.i32ShrU, op.i32Add,
      ...lget(src), ...lget(i), op.i32Add, ...sop(simd.load), ...memarg(4),
      ...lget(half), ...sop(simd.f32x4.mul), ...lget(half), ...sop(simd.f32x4.add), ...lget(k255), ...sop(simd.f32x4.mul),
      ...sop(simd.f32x4Nearest), ...sop(simd.i32x4TruncSatF32x4S), ...lset(v),
      ...lget(v), ...lget(v), ...sop(simd.i16x8NarrowI32x4S), ...lset(v),
      ...lget(v), ...lget(v), ...sop(simd.i8x16NarrowI16x8U),
      ...sop(simd.store32Lane), ...memarg(2), 0,
    ]),
  );
  // Interleave: pixel p's bytes from the three planes.
  code.push(...i32(0), ...lset(i));
  const plane = (c: number): number[] => [...lget(tmp), ...(c === 0 ? [] : [...lget(n4), ...i32(c), op.i32Mul, op.i32Add]), ...lget(i), op.i32Add, op.i32Load8U, ...memarg(0)];
  const pixel = [...lget(dst), ...lget(i), ...i32(3), op.i32Mul, op.i32Add];
  code.push(...loopWhileBelow(i, n, 1, [0, 1, 2].flatMap((c) => [...pixel, ...plane(c), op.i32Store8, ...memarg(0, c)])));
  return functionBody([[2, I32], [3, V128]], code);
}

function moduleBytes(): Uint8Array {
  return kernelModuleBytes([
    { name: 'signed_to_rgb', params: [I32, I32, I32, I32, I32], body: signedToRgbBody() },
  ]);
}
