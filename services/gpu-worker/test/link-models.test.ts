// Linking real face models into generated bundles: names and widths from the graphs,
// preprocessing from InsightFace's defaults or a sidecar JSON.
import { existsSync } from 'node:fs';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import onnxProto from 'onnx-proto';
import type { DiffIdError } from '@diffid/shared/contract';
import { linkDetector, linkEmbedder } from '../src/bundles/link-models.ts';
import { buildDemoBundle } from '../src/bundles/demo-bundle.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { readShippedModel } from '../src/bundles/shipped-models.ts';
import { tempDir } from './helpers.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../../..');
const MODELS = join(ROOT, '../shared/faces/models');
const detector = join(MODELS, 'scrfd_500m_bnkps.onnx');
const embedder = join(MODELS, 'mobilefacenet_facegate.onnx');
const skip = (!existsSync(detector) || !existsSync(embedder)) && `../shared/faces/models is absent (looked in ${MODELS}); linking real models not tested`;

t.test('npm run bundle links a real detector and embedder into the demo bundle', { skip }, async (t) => {
  const out = await tempDir(t);
  const { stdout } = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', '--kind', 'demo', '--out', out, '--detector', detector, '--embedder', embedder], { cwd: ROOT });
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

t.test('linking a file that is not an ONNX model fails naming it, without the usage', async (t) => {
  const dir = await tempDir(t);
  const bogus = join(dir, 'bogus.onnx');
  await writeFile(bogus, 'not a model');
  const err = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', '--kind', 'demo', '--out', join(dir, 'out'), '--embedder', bogus], { cwd: ROOT }).catch((e: { code: number; stderr: string }) => e);
  t.match(err, { code: 1, stderr: /bogus\.onnx/ });
  t.notMatch((err as { stderr: string }).stderr, /usage:/, 'the usage does not bury the reason');
});

t.test('sidecar values are checked: a wrong value, an unknown key and a misplaced key are refused by name', async (t) => {
  const dir = await tempDir(t);
  const { path } = await readShippedModel('face_embedder');
  const copy = join(dir, 'rec.onnx');
  await copyFile(path, copy);
  const refused = async (sidecar: unknown, message: RegExp) => {
    await writeFile(join(dir, 'rec.json'), JSON.stringify(sidecar));
    t.throws(() => linkEmbedder(copy), message, JSON.stringify(sidecar));
  };
  await refused({ preprocess: { channel_order: 'bgr' } }, /rec\.json: preprocess\.channel_order must be one of "RGB", "BGR"/);
  await refused({ preproces: {} }, /rec\.json: unknown field "preproces"/);
  await refused({ channel_order: 'BGR' }, /rec\.json: "channel_order" belongs inside "preprocess"/);
  await writeFile(join(dir, 'rec.json'), '{ not json');
  t.throws(() => linkEmbedder(copy), /rec\.json is not valid JSON/);
  await writeFile(join(dir, 'rec.json'), JSON.stringify({ preprocess: { channel_order: 'BGR' } }));
  t.equal(linkEmbedder(copy).entry.preprocess.channel_order, 'BGR', 'a valid sidecar applies');
});

t.test('the shipped BlazeFace graph is recognised by its outputs; wrong strides are refused when the bundle loads', async (t) => {
  const dir = await tempDir(t);
  const { path } = await readShippedModel('face_detector');
  const linked = linkDetector(path);
  t.equal(linked.entry.layout, 'blazeface');
  t.same(linked.entry.strides, [16, 32], 'from the row counts: 512 = 16² × 2, 384 = 8² × 6');
  t.same(linked.entry.outputs, { score_16: 'Identity:0', regressors_16: 'Identity_2:0', score_32: 'Identity_1:0', regressors_32: 'Identity_3:0' });
  t.equal(linked.entry.preprocess.tensor_layout, 'NHWC');
  // Anchors that do not fit the graph: the signature check names the port and the count.
  const wrong = buildDemoBundle({ detector: { ...linked, entry: { ...linked.entry, anchors_per_cell: [2, 2] } } });
  await writeBundle(dir, wrong);
  const err = await loadBundle(dir).catch((e: unknown) => e);
  t.equal((err as DiffIdError).code, 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH');
  t.match((err as Error).message, /score_32.*has size 384 on axis 1.*expected 128 \(8×8 cells × 2 anchors at stride 32 on a 256² input\)/);
  // …and refused already when linked, where the graph fixes its row counts.
  const linkDir = await tempDir(t);
  const copy = join(linkDir, 'blazeface.onnx');
  await copyFile(path, copy);
  await writeFile(join(linkDir, 'blazeface.json'), JSON.stringify({ anchors_per_cell: [2, 2] }));
  t.throws(() => linkDetector(copy), /blazeface\.json: score_32 \("Identity_1:0"\) has 384 rows, but 8×8 cells × 2 anchors at stride 32 on a 256² input make 128/);
  const unknown = join(dir, 'strange.onnx');
  await copyFile(join(dir, 'adapter.onnx'), unknown);
  t.throws(() => linkDetector(unknown), /not a layout this service recognises \(scrfd, blazeface\)\. Map them in strange\.json, for example:\n\{/);
});

t.test('an SCRFD export with numbered outputs links by shapes and order', { skip }, async (t) => {
  const dir = await tempDir(t);
  const model = onnxProto.onnx.ModelProto.decode(await readFile(detector));
  const graph = model.graph as onnxProto.onnx.GraphProto;
  // Rename the outputs as InsightFace's plain export numbers them (443, 468, …; here above the graph's own numbers).
  const numbered = new Map((graph.output ?? []).map((o, i) => [o.name as string, String(90443 + 25 * i)]));
  for (const node of graph.node ?? []) node.output = (node.output ?? []).map((n) => numbered.get(n) ?? n);
  for (const o of graph.output ?? []) o.name = numbered.get(o.name as string) ?? o.name;
  const path = join(dir, 'scrfd_numbered.onnx');
  await writeFile(path, onnxProto.onnx.ModelProto.encode(model).finish());
  const linked = linkDetector(path);
  t.equal(linked.entry.layout, 'scrfd');
  t.same(linked.entry.strides, [8, 16, 32]);
  t.equal(linked.entry.outputs.score_8, numbered.get('score_8'));
  t.equal(linked.entry.outputs.kps_32, numbered.get('kps_32'));
  const out = join(dir, 'bundle');
  await writeBundle(out, buildDemoBundle({ detector: linked }));
  const b = await loadBundle(out);
  t.teardown(() => b.release());
  t.equal(b.ports.face_detector?.outputs.bbox_16?.name, numbered.get('bbox_16'));
});

t.test('npm run bundle --check-colour says which channel order separates same from different', { skip }, async (t) => {
  const photos = ['fr_obama.jpg', 'fr_obama2.jpg', 'fr_biden.jpg'].map((p) => join(MODELS, '../photos', p)).join(',');
  const { stdout } = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', '--check-colour', photos, '--embedder', embedder], { cwd: ROOT });
  t.comment(stdout);
  const margin = (order: string) => Number(new RegExp(`${order}  same \\S+  different \\S+  margin (\\S+)`).exec(stdout)?.[1]);
  t.ok(margin('RGB') > margin('BGR'), `RGB (as the recognizer was trained) has the larger margin: ${margin('RGB')} against ${margin('BGR')}`);
  t.match(stdout, /RGB separates same from different better/);
  t.match(stdout, /Write it in the sidecar mobilefacenet_facegate\.json: \{ "preprocess": \{ "channel_order": "RGB" \} \}/);
  const err = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', '--check-colour', photos], { cwd: ROOT }).catch((e: { code: number; stderr: string }) => e);
  t.equal((err as { code: number }).code, 2);
  t.match((err as { stderr: string }).stderr, /--check-colour needs the recognizer to check: --embedder FILE/);
});
