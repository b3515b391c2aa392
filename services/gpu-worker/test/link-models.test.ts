// Linking real face models into generated bundles: names and widths from the graphs,
// preprocessing from InsightFace's defaults or a sidecar JSON.
import { existsSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { loadBundle } from '../src/bundle-loader.ts';
import { linkEmbedder } from '../src/bundles/link-models.ts';
import { tempDir } from './helpers.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../../..');
const MODELS = join(ROOT, '../shared/faces/models');
const detector = join(MODELS, 'scrfd_500m_bnkps.onnx');
const embedder = join(MODELS, 'mobilefacenet_facegate.onnx');
const skip = (!existsSync(detector) || !existsSync(embedder)) && `../shared/faces/models is absent (looked in ${MODELS}); linking real models not tested`;

t.test('npm run bundle links a real detector and embedder into the demo bundle', { skip }, async (t) => {
  const out = await tempDir(t);
  const { stdout } = await run('npx', ['tsx', 'services/gpu-worker/src/bundles/cli.ts', '--kind', 'demo', '--out', out, '--detector', detector, '--embedder', embedder], { cwd: ROOT });
  t.match(stdout, /wrote the demo bundle .*linked: embedder .*mobilefacenet_facegate.onnx, detector .*scrfd_500m_bnkps.onnx/);
  const m = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
  t.same(m.models.face_embedder.inputs, { pixels: 'input0' });
  t.same(m.models.face_embedder.outputs, { embedding: 'output0' });
  t.same(m.models.face_detector.strides, [8, 16, 32]);
  t.same(m.models.face_detector.preprocess.std, [128, 128, 128]);
  const b = await loadBundle(out);
  t.teardown(() => b.release());
  t.equal(b.dims.faceEmbedding, 128, "the adapter was built for the recognizer's 128-d output");
});

t.test('a sidecar JSON overrides the embedder\'s preprocessing', { skip }, async (t) => {
  const dir = await tempDir(t);
  const copy = join(dir, 'recognizer.onnx');
  await copyFile(embedder, copy);
  await writeFile(join(dir, 'recognizer.json'), JSON.stringify({ preprocess: { channel_order: 'BGR', mean: [127, 127, 127], std: [128, 128, 128] } }));
  const linked = linkEmbedder(copy);
  t.equal(linked.width, 128);
  t.equal(linked.entry.preprocess.channel_order, 'BGR');
  t.same(linked.entry.preprocess.mean, [127, 127, 127]);
  t.equal(linked.entry.preprocess.size, 112, 'the crop size still comes from the graph');
});

t.test('linking a file that is not an ONNX model fails with a usage message', async (t) => {
  const dir = await tempDir(t);
  const bogus = join(dir, 'bogus.onnx');
  await writeFile(bogus, 'not a model');
  const err = await run('npx', ['tsx', 'services/gpu-worker/src/bundles/cli.ts', '--kind', 'demo', '--out', join(dir, 'out'), '--embedder', bogus], { cwd: ROOT }).catch((e: { code: number; stderr: string }) => e);
  t.match(err, { code: 2, stderr: /usage: npm run bundle/ });
});
