// The paper's measures end to end: FS%, faces found, FID with a feature graph, FIQ and morph
// pacing on the demo bundle (synthetic faces, always run), and `npm run eval` on real photos with
// the embedded default (when ../shared/faces is present).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { decodeRgb } from '@diffid/shared/image';
import { facePattern } from '@diffid/shared/testing';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { buildDemoBundle } from '../src/bundles/demo-bundle.ts';
import { GraphBuilder } from '../src/bundles/onnx-graph.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { evalTable, evaluate } from '../src/eval/evaluate.ts';
import { tempDir } from './helpers.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../../..');
const PHOTOS = join(ROOT, '../shared/faces/photos');
const SECOND = join(ROOT, '../shared/faces/models/mobilefacenet_facegate.onnx');

/** A stand-in feature graph: 32² input, 4×4 average colours as 48 features. */
function featureGraph(): Uint8Array {
  const g = new GraphBuilder('features');
  const x = g.input('images', 'float32', [1, 3, 32, 32]);
  g.op('Flatten', [g.op('AveragePool', [x], { kernel_shape: { ints: [8, 8] }, strides: { ints: [8, 8] } })], { axis: { int: 1 } }, 'pool');
  g.output('pool', 'float32', [1, 48]);
  return g.toBytes('4×4 mean colours: a small feature graph for testing FID');
}

t.test('demo bundle: FS%, faces found, FID and FIQ, morph travel', async (t) => {
  const dir = await tempDir(t, 'diffid-eval-');
  await writeBundle(join(dir, 'bundle'), buildDemoBundle());
  const features = join(dir, 'features.onnx');
  await writeFile(features, featureGraph());
  const bundle = await loadBundle(join(dir, 'bundle'));
  t.teardown(() => bundle.release());
  const photos = [1, 5, 9].map((seed) => ({ name: `face-${seed}`, image: facePattern(seed, 256, 256) }));
  // The bundle's own recognizer given as the second one must score exactly as the pipeline does.
  const own = { path: join(dir, 'bundle', bundle.manifest.models.face_embedder.file), entry: bundle.manifest.models.face_embedder };
  const report = await evaluate(bundle, photos, { prompts: ['a portrait', 'a photo'], imagesPerPrompt: 2, steps: 10, morphFrames: 3, inception: features, recognizer: own });
  t.comment(evalTable(report));
  t.equal(report.faces.length, 3);
  t.same(report.faces.map((f) => f.outputs), [4, 4, 4], '2 prompts × 2 images per face');
  t.equal(report.detectedShare, 1, 'without a detector every output is an aligned portrait');
  t.ok((report.fsPercent as number) > 90, `FS% ${report.fsPercent?.toFixed(1)}: the demo keeps the face (constructed recognizer)`);
  t.equal(report.recognizer, 'face_embedder.onnx');
  t.ok(Math.abs((report.fsPercentSecond as number) - (report.fsPercent as number)) < 1e-4, `the same recognizer as second: FS% ${report.fsPercentSecond?.toFixed(4)} = ${report.fsPercent?.toFixed(4)}`);
  t.same(report.faces.map((f) => f.fsPercentSecond?.toFixed(3)), report.faces.map((f) => f.fsPercent?.toFixed(3)), 'per face too');
  t.match(evalTable(report), /\| face \| FS% \| FS% by face_embedder\.onnx \| outputs \| with a face \|/);
  t.ok(report.fid !== null && report.fid >= 0, `FID ${report.fid?.toFixed(3)} from the feature graph`);
  t.equal(report.fiq, (100 * (report.fsPercent as number)) / (report.fid as number), 'FIQ = 100·FS%/FID');
  t.equal(report.morphs.length, 2, 'consecutive faces morphed');
  // The constructed recognizer tells these drawings apart only slightly: the frames move little,
  // but in the right direction.
  t.ok(report.morphs.every((m) => m.toA.length === 3 && (m.toA[0] as number) >= (m.toA[2] as number) && (m.toB[2] as number) >= (m.toB[0] as number) && m.travel > 0), `morphs travel from A to B (${report.morphs.map((m) => m.travel.toFixed(2)).join(', ')})`);
});

t.test('npm run eval on real photos with the embedded default prints the table, FS% also by a second recognizer', { skip: !existsSync(SECOND) && `../shared/faces is absent (looked for ${SECOND})` }, async (t) => {
  const dir = await tempDir(t, 'diffid-eval-');
  const faces = join(dir, 'faces');
  await mkdir(faces);
  for (const f of ['fr_obama.jpg', 'fr_biden.jpg', 'max_Luciano.png']) await copyFile(join(PHOTOS, f), join(faces, f));
  const { stdout } = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/eval/cli.ts', '--faces', faces, '--images', '2', '--steps', '20', '--frames', '5', '--recognizer', SECOND, '--json', join(dir, 'report.json')], { cwd: ROOT });
  t.comment(stdout);
  t.match(stdout, /^bundle demo: FS% \d+\.\d \(mobilefacenet_facegate\.onnx: \d+\.\d\), faces found in \d+ % of outputs, FID —, FIQ —/);
  t.match(stdout, /\| fr_obama\.jpg \| \d+\.\d \| \d+\.\d \| 2 \|/);
  t.match(stdout, /\| fr_biden\.jpg → fr_obama\.jpg \|/);
  const report = JSON.parse(await readFile(join(dir, 'report.json'), 'utf8')) as { fsPercent: number; fsPercentSecond: number };
  t.ok(report.fsPercent > 50, `FS% ${report.fsPercent.toFixed(1)} with the shipped recognizer`);
  t.ok(report.fsPercentSecond > 30, `FS% ${report.fsPercentSecond.toFixed(1)} with MobileFaceNet, which played no part in generating`);
});

t.test('npm run eval -- --morph-strategies draws the paper\'s Fig. 8: a row per strategy, a column per factor', { skip: !existsSync(PHOTOS) && `../shared/faces is absent (looked for ${PHOTOS})` }, async (t) => {
  const dir = await tempDir(t, 'diffid-fig8-');
  const a = join(PHOTOS, 'fr_obama.jpg');
  const b = join(PHOTOS, 'fr_biden.jpg');
  const { stdout } = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/eval/cli.ts', '--morph-strategies', a, b, '--out', dir, '--frames', '3', '--steps', '8'], { cwd: ROOT });
  t.comment(stdout);
  const figure = await decodeRgb(new Uint8Array(await readFile(join(dir, 'morph-strategies.png'))));
  const numbers = JSON.parse(await readFile(join(dir, 'morph-strategies.json'), 'utf8')) as { alphas: number[]; rows: Array<{ strategy: string; toA: number[]; toB: number[] }> };
  t.same(numbers.alphas, [0, 0.5, 1]);
  t.same(numbers.rows.map((r) => r.strategy), ['slerp', 'lerp', 'embedding_only'], 'the three strategies, in the contract\'s order');
  // The embedded default's frames are 256²: three rows of three, with labels around them.
  t.ok(figure.width > 3 * 256 && figure.height > 3 * 256, `a ${figure.width}×${figure.height} grid`);
  for (const r of numbers.rows) {
    t.ok((r.toA[0] as number) > (r.toA[2] as number) && (r.toB[2] as number) > (r.toB[0] as number), `${r.strategy}: from A (${r.toA.map((v) => v.toFixed(2)).join(' ')}) to B (${r.toB.map((v) => v.toFixed(2)).join(' ')})`);
  }
  t.match(stdout, /^slerp: similarity to A /m);
  // The labels are drawn: the strip left of the tiles is not all white.
  let dark = 0;
  for (let y = 0; y < figure.height; y++) for (let x = 0; x < 140; x++) if ((figure.data[(y * figure.width + x) * 3] as number) < 128) dark++;
  t.ok(dark > 50, `the row labels are written (${dark} dark pixels left of the tiles)`);
});
