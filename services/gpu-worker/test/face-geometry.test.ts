import t from 'tap';
import { alignmentPairs, applySimilarity, portraitLandmarks, similarityTransform, templateOnCanvas, warpSimilarity, type Point } from '../src/vision/face-geometry.ts';
import { decodeDetections, nonMaxSuppression, letterbox } from '../src/vision/detect-faces.ts';
import type { FaceDetectorEntry } from '@diffid/shared/bundle';
import { ARCFACE_TEMPLATE_112 } from '../src/bundles/tiny-bundle.ts';

const T = ARCFACE_TEMPLATE_112 as Point[];

t.test('the similarity transform recovers a known rotation, scale and translation exactly', async (t) => {
  const angle = 0.3;
  const scale = 2.5;
  const truth = { a: scale * Math.cos(angle), b: scale * Math.sin(angle), tx: 40, ty: -12 };
  const src: Point[] = [[10, 20], [50, 22], [30, 40], [15, 60], [45, 61]];
  const dst = src.map((p) => applySimilarity(truth, p));
  const m = similarityTransform(src, dst);
  for (const k of ['a', 'b', 'tx', 'ty'] as const) t.ok(Math.abs(m[k] - truth[k]) < 1e-9, `${k} = ${m[k]}`);
});

t.test('with noisy points it is the least-squares fit and never reflects', async (t) => {
  const src: Point[] = [[0, 0], [10, 0], [0, 10]];
  const mirrored: Point[] = [[0, 0], [-10, 0], [0, 10]]; // a reflection fits these exactly
  const m = similarityTransform(src, mirrored);
  t.ok(m.a * m.a + m.b * m.b < 1, 'a reflection cannot be matched: the best proper similarity shrinks');
  const p = applySimilarity(similarityTransform(T, T), [56, 71]);
  t.ok(Math.abs(p[0] - 56) < 1e-9 && Math.abs(p[1] - 71) < 1e-9, 'template onto itself is the identity');
  t.throws(() => similarityTransform([[1, 1], [1, 1]], [[0, 0], [1, 1]]), /coincide/);
});

t.test('warping by a pure translation moves pixels and fills the border with black', async (t) => {
  const img = { width: 4, height: 4, data: Uint8Array.from({ length: 48 }, (_, i) => Math.floor(i / 3) * 10) };
  const out = warpSimilarity(img, { a: 1, b: 0, tx: 1, ty: 0 }, 4, 4);
  t.same(Array.from(out.data.subarray(0, 3)), [0, 0, 0], 'column 0 came from outside');
  t.same(Array.from(out.data.subarray(3, 6)), [0, 0, 0], 'column 1 shows source pixel 0 (value 0)');
  t.same(Array.from(out.data.subarray(6, 9)), [10, 10, 10], 'column 2 shows source pixel 1');
});

t.test('templates on canvases and portraits', async (t) => {
  const c = templateOnCanvas(T, 112, 256, 0.5);
  t.ok(Math.abs((c[0] as Point)[0] - (38.2946 * 128 / 112 + 64)) < 1e-9, 'the 112 box spans half of 256, centred');
  const p = portraitLandmarks({ width: 300, height: 200, data: new Uint8Array(0) }, T, 112);
  const m = similarityTransform(p, T);
  t.ok(Math.abs(m.b) < 1e-12 && Math.abs(m.a - 112 / 200) < 1e-12, 'a portrait maps its centred square onto the crop');
});

t.test('NMS keeps the best of overlapping boxes; letterbox pads at the bottom-right', async (t) => {
  const f = (x: number, score: number) => ({ box: [x, 0, x + 10, 10] as [number, number, number, number], score, landmarks: [] });
  const kept = nonMaxSuppression([f(0, 0.6), f(1, 0.9), f(30, 0.7)], 0.4);
  t.same(kept.map((k) => k.score), [0.9, 0.7]);
  const { canvas, scale } = letterbox({ width: 20, height: 10, data: new Uint8Array(600).fill(200) }, 40);
  t.equal(scale, 2);
  t.equal(canvas.data[(5 * 40 + 5) * 3], 200, 'image at the top-left');
  t.equal(canvas.data[(30 * 40 + 5) * 3], 0, 'padding below');
});

t.test('warps repeat the edge outside the photo: no black wedge where the canvas leaves the image', async (t) => {
  const img = { width: 8, height: 8, data: new Uint8Array(8 * 8 * 3).fill(200) };
  // Shift by half the canvas: the left half of the output lies outside the photo.
  const out = warpSimilarity(img, { a: 1, b: 0, tx: 8, ty: 4 }, 16, 16);
  t.equal(Math.min(...out.data), 200, 'every pixel, inside or outside the photo, is the edge colour');
});

t.test('alignment pairs: five points one to one; BlazeFace mouth centre onto the mouth-corner midpoint, ears unused', async (t) => {
  const template: Point[] = [[30, 50], [70, 50], [50, 70], [36, 90], [64, 90]];
  const five = alignmentPairs('scrfd', template, template);
  t.same(five.dst, template);
  const six: Point[] = [[1, 1], [2, 1], [1.5, 2], [1.5, 3], [0, 1], [3, 1]];
  const blaze = alignmentPairs('blazeface', six, template);
  t.same(blaze.src, six.slice(0, 4));
  t.same(blaze.dst, [[30, 50], [70, 50], [50, 70], [50, 90]]);
});

t.test('detector decoding: a known anchor of each layout lands where the layout says; wrong anchor counts are refused', async (t) => {
  // BlazeFace: a 32² input, stride 16 (2×2 cells, 2 anchors), stride 32 (1 cell, 6 anchors).
  const det = { layout: 'blazeface' as const, strides: [16, 32], anchors_per_cell: [2, 6], score_threshold: 0.5, preprocess: { size: 32 } as FaceDetectorEntry['preprocess'] };
  const scores16 = new Float32Array(8).fill(-10);
  const regs16 = new Float32Array(8 * 16);
  scores16[7] = 10; // cell (1, 1), second anchor: centre (24, 24)
  regs16.set([1, -2, 10, 12, -4, -3, 4, -3, 0, 0, 0, 4, -8, 0, 8, 0], 7 * 16);
  const outputs: Record<string, Float32Array> = { score_16: scores16, regressors_16: regs16, score_32: new Float32Array(6).fill(-10), regressors_32: new Float32Array(6 * 16) };
  const [face, ...rest] = decodeDetections(det, (p) => outputs[p]);
  t.equal(rest.length, 0);
  t.ok(face && face.score > 0.99);
  t.same(face?.box, [20, 16, 30, 28], 'box from the cell centre (24, 24) + offset (1, −2), size 10 × 12');
  t.same(face?.landmarks.slice(0, 4), [[20, 21], [28, 21], [24, 24], [24, 28]]);
  // SCRFD: distances from the cell corner in units of the stride.
  const scrfd = { layout: 'scrfd' as const, strides: [8], anchors_per_cell: 1, score_threshold: 0.5, preprocess: { size: 16 } as FaceDetectorEntry['preprocess'] };
  const s = new Float32Array(4);
  s[3] = 0.9; // cell (1, 1): corner (8, 8)
  const bbox = new Float32Array(16);
  bbox.set([0.5, 0.5, 1, 1], 12);
  const kps = new Float32Array(40);
  kps.set([0, 0, 1, 0, 0.5, 0.5, 0, 1, 1, 1], 30);
  const [f2] = decodeDetections(scrfd, (p) => ({ score_8: s, bbox_8: bbox, kps_8: kps })[p]);
  t.same(f2?.box, [4, 4, 16, 16]);
  t.same(f2?.landmarks, [[8, 8], [16, 8], [12, 12], [8, 16], [16, 16]]);
  t.throws(() => decodeDetections({ ...det, anchors_per_cell: [2, 2] }, (p) => outputs[p]), /score_32 has 6 rows, but 1×1 cells × 2 anchors at stride 32 on a 32² input make 2/);
});
