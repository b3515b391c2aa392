// Face geometry: the similarity transform that maps detected landmarks onto a template
// (Umeyama's least squares, in closed form for 2-D), bilinear affine warps, and templates placed
// on square canvases.

import type { DetectorLayout } from '@diffid/shared/bundle';
import type { Rgb } from './pixels.ts';

export type Point = [number, number];

/** dst = [a −b; b a]·src + [tx ty]: rotation, uniform scale and translation, no reflection. */
export interface Similarity {
  a: number;
  b: number;
  tx: number;
  ty: number;
}

/**
 * The least-squares similarity transform taking `src` points onto `dst` (Umeyama 1991). In 2-D
 * with the reflection excluded, its solution is a = Σ(x·u + y·v)/Σ(x² + y²),
 * b = Σ(x·v − y·u)/Σ(x² + y²) over centred coordinates, t = mean(dst) − R·mean(src).
 */
export function similarityTransform(src: Point[], dst: Point[]): Similarity {
  if (src.length !== dst.length || src.length < 2) throw new RangeError('need at least two matching point pairs');
  const n = src.length;
  const mean = (ps: Point[]): Point => [ps.reduce((s, p) => s + p[0], 0) / n, ps.reduce((s, p) => s + p[1], 0) / n];
  const [sx, sy] = mean(src);
  const [dx, dy] = mean(dst);
  let num1 = 0;
  let num2 = 0;
  let den = 0;
  for (let i = 0; i < n; i++) {
    const x = (src[i] as Point)[0] - sx;
    const y = (src[i] as Point)[1] - sy;
    const u = (dst[i] as Point)[0] - dx;
    const v = (dst[i] as Point)[1] - dy;
    num1 += x * u + y * v;
    num2 += x * v - y * u;
    den += x * x + y * y;
  }
  if (den === 0) throw new RangeError('source points coincide');
  const a = num1 / den;
  const b = num2 / den;
  return { a, b, tx: dx - (a * sx - b * sy), ty: dy - (b * sx + a * sy) };
}

export function applySimilarity(m: Similarity, p: Point): Point {
  return [m.a * p[0] - m.b * p[1] + m.tx, m.b * p[0] + m.a * p[1] + m.ty];
}

/**
 * Warps `img` by `m` (source → destination pixel coordinates, integers at pixel centres as in
 * OpenCV's warpAffine) into a width×height image, sampling bilinearly. Outside the photo the edge
 * pixels are repeated, so a face near the border leaves no black wedge in a crop or a canvas.
 */
export function warpSimilarity(img: Rgb, m: Similarity, width: number, height: number): Rgb {
  const det = m.a * m.a + m.b * m.b;
  if (!(det > 0)) throw new RangeError('degenerate transform');
  // Inverse of [a −b; b a]: [a b; −b a]/det.
  const ia = m.a / det;
  const ib = m.b / det;
  const data = new Uint8Array(width * height * 3);
  const W = img.width;
  const H = img.height;
  const src = img.data;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const px = x - m.tx;
      const py = y - m.ty;
      const sx = ia * px + ib * py;
      const sy = -ib * px + ia * py;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const o = (y * width + x) * 3;
      // The four neighbours (clamped to the photo) and their weights, once for all channels.
      const xa = Math.min(W - 1, Math.max(0, x0));
      const xb = Math.min(W - 1, Math.max(0, x0 + 1));
      const ya = Math.min(H - 1, Math.max(0, y0)) * W;
      const yb = Math.min(H - 1, Math.max(0, y0 + 1)) * W;
      const p0 = (ya + xa) * 3;
      const p1 = (ya + xb) * 3;
      const p2 = (yb + xa) * 3;
      const p3 = (yb + xb) * 3;
      const w0 = (1 - fx) * (1 - fy);
      const w1 = fx * (1 - fy);
      const w2 = (1 - fx) * fy;
      const w3 = fx * fy;
      for (let c = 0; c < 3; c++) {
        // Summed in this order from 0, as the bytes of earlier crops were.
        const v = 0 + w0 * (src[p0 + c] as number) + w1 * (src[p1 + c] as number) + w2 * (src[p2 + c] as number) + w3 * (src[p3 + c] as number);
        data[o + c] = Math.min(255, Math.max(0, Math.round(v)));
      }
    }
  }
  return { data, width, height };
}

/**
 * The point pairs that align a face: the detector's landmarks (by layout) and where the 5-point
 * template puts them. Five points map one to one; BlazeFace's mouth centre maps to the midpoint
 * of the template's mouth corners, and its ear points are not used (the template has none).
 */
export function alignmentPairs(layout: DetectorLayout, landmarks: Point[], template: Point[]): { src: Point[]; dst: Point[] } {
  if (layout === 'scrfd') return { src: landmarks.slice(0, 5), dst: template };
  const [le, re, nose, ml, mr] = template as [Point, Point, Point, Point, Point];
  return { src: landmarks.slice(0, 4), dst: [le, re, nose, [(ml[0] + mr[0]) / 2, (ml[1] + mr[1]) / 2]] };
}

/**
 * A template given in a `templateSize`² box, scaled so the box spans `fraction` of a size²
 * canvas and centred on it.
 */
export function templateOnCanvas(template: Point[], templateSize: number, size: number, fraction: number): Point[] {
  const s = (fraction * size) / templateSize;
  const offset = ((1 - fraction) * size) / 2;
  return template.map(([x, y]) => [x * s + offset, y * s + offset]);
}

/**
 * The landmarks an aligned portrait would have: the template box spanning `fraction` of the
 * image's centred square, centred on it.
 */
export function portraitLandmarks(img: Rgb, template: Point[], templateSize: number, fraction = 1): Point[] {
  const side = Math.min(img.width, img.height);
  const box = side * fraction;
  const left = (img.width - box) / 2;
  const top = (img.height - box) / 2;
  // Pixel-centre convention: a templateSize box maps onto [−0.5, box − 0.5].
  const s = box / templateSize;
  return template.map(([x, y]) => [left + (x + 0.5) * s - 0.5, top + (y + 0.5) * s - 0.5]);
}

/**
 * A soft mask of a face from its eyes (the first two landmarks of every layout): an ellipse along
 * the face's own axes, centred a quarter of an eye distance e below the eyes' midpoint, with
 * semi-axes 1.35e across and 1.5e down — from the forehead to the chin of an ArcFace-aligned face,
 * whose mouth is 1.16e below the eyes — fading from 1 to 0 over its outer 15 %. Row-major, one
 * value per pixel.
 */
export function faceMask(width: number, height: number, eyes: [Point, Point]): Float32Array {
  const [[x1, y1], [x2, y2]] = eyes;
  const e = Math.hypot(x2 - x1, y2 - y1) || 1;
  const ux = (x2 - x1) / e;
  const uy = (y2 - y1) / e;
  // Down the face: the eye line turned a quarter, towards the mouth for upright faces.
  const vx = -uy;
  const vy = ux;
  const cx = (x1 + x2) / 2 + 0.25 * e * vx;
  const cy = (y1 + y2) / 2 + 0.25 * e * vy;
  const rx = 1.35 * e;
  const ry = 1.5 * e;
  const mask = new Float32Array(width * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const dx = x - cx;
      const dy = y - cy;
      const r = Math.hypot((dx * ux + dy * uy) / rx, (dx * vx + dy * vy) / ry);
      const t = Math.min(1, Math.max(0, (1 - r) / 0.15));
      mask[y * width + x] = t * t * (3 - 2 * t);
    }
  }
  return mask;
}
