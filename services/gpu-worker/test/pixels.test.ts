// Pixel conversions checked by hand: VAE output → RGB bytes (signedToRgb; the torch reference test
// also compares it with diffusers' postprocess byte for byte when torch is present) and RGB bytes
// → normalised planes (normalizeToChw).
import t from 'tap';
import { normalizeToChw, signedToRgb } from '../src/vision/pixels.ts';
import { roundingTie } from './helpers.ts';

t.test('planes become interleaved bytes: x/2 + 0.5 in float32, ×255, clamped, halves rounded to even', async (t) => {
  const red = [-1, 1, 0, roundingTie(253), roundingTie(254), -7, 7, Number.NaN];
  const green = [roundingTie(100), roundingTie(101), -0, 0.5, -0.5, 1e-9, -1e-9, 0.999];
  const blue = [1, -1, 0, 0.2, -0.2, 7, -7, 0];
  const rgb = signedToRgb(Float32Array.from([...red, ...green, ...blue]), 4, 2);
  t.same([rgb.width, rgb.height], [4, 2]);
  t.type(rgb.data, Uint8Array);
  const channel = (c: number) => Array.from({ length: 8 }, (_, i) => rgb.data[3 * i + c]);
  t.same(channel(0), [0, 255, 128, 254, 254, 0, 255, 0], 'red: the ends, 127.5 → 128, 253.5 → 254 and 254.5 → 254, clamped, NaN → 0');
  t.same(channel(1), [100, 102, 128, 191, 64, 128, 128, 255], 'green: 100.5 → 100, 101.5 → 102');
  t.same(channel(2), [255, 0, 128, 153, 102, 255, 0, 128], 'blue: (0.2/2 + 0.5)·255 = 153');
  t.throws(() => signedToRgb(new Float32Array(5), 2, 1), /expected 6 values/);
});

t.test('signedToRgb on sizes that leave a partial vector, and on extremes, matches the formula through a clamped store', async (t) => {
  // The formula as diffusers' postprocess spells it: float32 steps, then a Uint8ClampedArray store
  // (clamp, round half to even, NaN → 0).
  const formula = (chw: Float32Array, n: number) => {
    const f = Math.fround;
    const out = new Uint8ClampedArray(3 * n);
    for (let c = 0; c < 3; c++) for (let i = 0; i < n; i++) out[3 * i + c] = f(f(f((chw[c * n + i] as number) * 0.5) + 0.5) * 255);
    return Array.from(out);
  };
  const extremes = [Infinity, -Infinity, 1e30, -1e30, 3e38, Number.NaN, -0, 1.0000001, -0.9999999];
  for (const [width, height] of [[1, 1], [5, 3], [37, 23]] as const) {
    const n = width * height;
    const chw = Float32Array.from({ length: 3 * n }, (_, k) => (k < extremes.length ? (extremes[k] as number) : Math.sin(k * 12.9898) * 1.3));
    t.same(Array.from(signedToRgb(chw, width, height).data), formula(chw, n), `${width}×${height}`);
  }
});

t.test('normalizeToChw: every byte value through (v / divide_by − mean) / std, planar or interleaved, RGB or BGR', async (t) => {
  // 256 pixels whose red, green and blue run through every byte value, each in its own order.
  const data = Uint8Array.from({ length: 256 * 3 }, (_, k) => ((k % 3) * 85 + Math.floor(k / 3) * 7) % 256);
  const img = { data, width: 16, height: 16 };
  const norm = { channel_order: 'BGR' as const, divide_by: 255, mean: [0.48, 0.46, 0.41] as [number, number, number], std: [0.27, 0.26, 0.28] as [number, number, number] };
  const expect = (i: number, c: number) => Math.fround(((data[i * 3 + (2 - c)] as number) / 255 - (norm.mean[c] as number)) / (norm.std[c] as number));
  const planar = normalizeToChw(img, norm);
  const interleaved = normalizeToChw(img, norm, 'NHWC');
  let same = 0;
  for (let i = 0; i < 256; i++) for (let c = 0; c < 3; c++) same += Number(planar[c * 256 + i] === expect(i, c) && interleaved[i * 3 + c] === expect(i, c));
  t.equal(same, 768, 'all 768 values, both layouts');
  t.same(new Set(Array.from({ length: 256 }, (_, i) => data[i * 3])).size, 256, 'the red channel takes every byte value');
});
