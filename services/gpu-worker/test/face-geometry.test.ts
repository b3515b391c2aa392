import t from 'tap';
import { applySimilarity, portraitLandmarks, similarityTransform, templateOnCanvas, warpSimilarity, type Point } from '../src/face-geometry.ts';
import { nonMaxSuppression, letterbox } from '../src/stages/detect-faces.ts';
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
