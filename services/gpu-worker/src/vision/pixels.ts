// Pixel math on RGB bytes and NCHW floats: resampling, cropping, normalisation, affine warps.
// TypeScript (and, for the VAE's output, WebAssembly assembled in TypeScript: pixel-kernels.ts), so
// that it runs inside the inference thread next to the graphs.

import type { Normalization } from '@diffid/shared/bundle';
import { planarSignedToRgb } from './pixel-kernels.ts';

/** Interleaved 8-bit RGB, row-major (the same shape as image.ts's RgbImage). */
export interface Rgb {
  data: Uint8Array;
  width: number;
  height: number;
  /** For an upload decoded smaller than it was sent: upload pixels per pixel here (results report upload pixels). */
  scale?: number;
}

type Filter = 'bilinear' | 'bicubic';

/** Filter kernels as Pillow defines them (bicubic with a = −0.5). */
const KERNELS: Record<Filter, { support: number; fn: (x: number) => number }> = {
  bilinear: { support: 1, fn: (x) => Math.max(0, 1 - Math.abs(x)) },
  bicubic: {
    support: 2,
    fn: (x) => {
      const a = -0.5;
      const t = Math.abs(x);
      if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
      if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
      return 0;
    },
  },
};

/** Per output index: first source index and normalised weights, widened when downsampling (antialias). */
function coefficients(inSize: number, outSize: number, filter: Filter): Array<{ start: number; weights: Float64Array }> {
  const { support, fn } = KERNELS[filter];
  const scale = inSize / outSize;
  const stretch = Math.max(1, scale);
  const reach = support * stretch;
  const out: Array<{ start: number; weights: Float64Array }> = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    const start = Math.max(0, Math.floor(center - reach));
    const end = Math.min(inSize, Math.ceil(center + reach));
    const weights = new Float64Array(end - start);
    let sum = 0;
    for (let i = start; i < end; i++) {
      const w = fn((i + 0.5 - center) / stretch);
      weights[i - start] = w;
      sum += w;
    }
    for (let k = 0; k < weights.length; k++) weights[k] = (weights[k] as number) / (sum || 1);
    out.push({ start, weights });
  }
  return out;
}

/** Separable resize with antialiasing; values rounded and clamped to 0…255. */
export function resizeRgb(img: Rgb, width: number, height: number, filter: Filter = 'bicubic'): Rgb {
  if (img.width === width && img.height === height) return { data: img.data.slice(), width, height };
  const cx = coefficients(img.width, width, filter);
  const cy = coefficients(img.height, height, filter);
  const tmp = new Float64Array(width * img.height * 3);
  for (let y = 0; y < img.height; y++) {
    for (let x = 0; x < width; x++) {
      const { start, weights } = cx[x] as { start: number; weights: Float64Array };
      let r = 0;
      let g = 0;
      let b = 0;
      for (let k = 0; k < weights.length; k++) {
        const w = weights[k] as number;
        const i = (y * img.width + start + k) * 3;
        r += w * (img.data[i] as number);
        g += w * (img.data[i + 1] as number);
        b += w * (img.data[i + 2] as number);
      }
      const o = (y * width + x) * 3;
      tmp[o] = r;
      tmp[o + 1] = g;
      tmp[o + 2] = b;
    }
  }
  // Vertical pass row by row: each output row is a weighted sum of whole intermediate rows.
  const data = new Uint8Array(width * height * 3);
  const rowLength = width * 3;
  const acc = new Float64Array(rowLength);
  for (let y = 0; y < height; y++) {
    const { start, weights } = cy[y] as { start: number; weights: Float64Array };
    acc.fill(0);
    for (let k = 0; k < weights.length; k++) {
      const w = weights[k] as number;
      const from = (start + k) * rowLength;
      for (let i = 0; i < rowLength; i++) acc[i] = (acc[i] as number) + w * (tmp[from + i] as number);
    }
    const to = y * rowLength;
    for (let i = 0; i < rowLength; i++) data[to + i] = Math.min(255, Math.max(0, Math.round(acc[i] as number)));
  }
  return { data, width, height };
}

/** The top-left corner of a width × height box centred on an image (rounded as centerCrop cuts it). */
function centredOrigin(img: { width: number; height: number }, width: number, height: number): { left: number; top: number } {
  return { left: Math.round((img.width - width) / 2), top: Math.round((img.height - height) / 2) };
}

/** The centred crop of the given size (Pillow/torchvision rounding of the offset). */
export function centerCrop(img: Rgb, width: number, height: number): Rgb {
  if (width > img.width || height > img.height) throw new RangeError(`crop ${width}×${height} exceeds image ${img.width}×${img.height}`);
  const { left, top } = centredOrigin(img, width, height);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const from = ((top + y) * img.width + left) * 3;
    data.set(img.data.subarray(from, from + width * 3), y * width * 3);
  }
  return { data, width, height };
}

/** CLIP's preprocessing geometry: shortest side to `size` (bicubic), then a centred size² crop. */
export function resizeShortestSideAndCrop(img: Rgb, size: number): Rgb {
  const scale = size / Math.min(img.width, img.height);
  const w = Math.max(size, Math.round(img.width * scale));
  const h = Math.max(size, Math.round(img.height * scale));
  return centerCrop(resizeRgb(img, w, h, 'bicubic'), size, size);
}

/** `inside` where the mask is 1, `outside` where it is 0, mixed between (same sizes). */
export function blendByMask(inside: Rgb, outside: Rgb, mask: Float32Array): Rgb {
  const n = inside.width * inside.height;
  if (outside.width !== inside.width || outside.height !== inside.height || mask.length !== n) throw new RangeError('blendByMask: sizes differ');
  const data = new Uint8Array(3 * n);
  for (let i = 0; i < n; i++) {
    const m = mask[i] as number;
    for (let c = 0; c < 3; c++) data[i * 3 + c] = Math.round(m * (inside.data[i * 3 + c] as number) + (1 - m) * (outside.data[i * 3 + c] as number));
  }
  return { data, width: inside.width, height: inside.height };
}

/** Where squarePortrait takes its square from (as centerCrop places it) and how it scales it to size². */
export function squarePortraitGeometry(img: { width: number; height: number }, size: number): { side: number; left: number; top: number; scale: number } {
  const side = Math.min(img.width, img.height);
  return { side, ...centredOrigin(img, side, side), scale: size / side };
}

/** Largest centred square, resized to size² (an image taken to be an aligned portrait). */
export function squarePortrait(img: Rgb, size: number): Rgb {
  const { side } = squarePortraitGeometry(img, size);
  return resizeRgb(centerCrop(img, side, side), size, size, 'bicubic');
}

/**
 * RGB bytes → one float32 image, x = (p / divide_by − mean) / std, channels as ordered, in NCHW
 * (channel planes) or NHWC (interleaved) order.
 */
export function normalizeToChw(img: Rgb, norm: Normalization, layout: 'NCHW' | 'NHWC' = 'NCHW'): Float32Array {
  const n = img.width * img.height;
  const out = new Float32Array(3 * n);
  const order = norm.channel_order === 'BGR' ? [2, 1, 0] : [0, 1, 2];
  // A byte has 256 values: each channel's are computed once, then looked up per pixel.
  const table = new Float32Array(256);
  for (let c = 0; c < 3; c++) {
    const src = order[c] as number;
    const mean = norm.mean[c] as number;
    const std = norm.std[c] as number;
    for (let v = 0; v < 256; v++) table[v] = (v / norm.divide_by - mean) / std;
    if (layout === 'NHWC') {
      for (let i = 0; i < n; i++) out[i * 3 + c] = table[img.data[i * 3 + src] as number] as number;
    } else {
      for (let i = 0, at = c * n; i < n; i++, at++) out[at] = table[img.data[i * 3 + src] as number] as number;
    }
  }
  return out;
}

/** RGB bytes → NCHW in [−1, 1] (2x − 1), as the VAE encoder takes pixels. */
export function rgbToSigned(img: Rgb): Float32Array {
  return normalizeToChw(img, { channel_order: 'RGB', divide_by: 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
}

/**
 * NCHW in [−1, 1] → RGB bytes as diffusers' postprocess makes them: clamp(x/2 + 0.5, 0, 1)·255 in
 * float32, rounded half to even (numpy's round).
 */
export function signedToRgb(chw: Float32Array, width: number, height: number): Rgb {
  const n = width * height;
  if (chw.length !== 3 * n) throw new RangeError(`expected ${3 * n} values for ${width}×${height}×3, got ${chw.length}`);
  return { data: planarSignedToRgb(chw, n), width, height };
}
