// VAE output → RGB bytes (signedToRgb), checked by hand here; the torch reference test compares it
// with diffusers' postprocess byte for byte when torch is present.
import t from 'tap';
import { signedToRgb } from '../src/pixels.ts';
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
