import { existsSync } from 'node:fs';
import { copyFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { DiffIdError } from '@diffid/shared/contract';
import { GraphBuilder } from '../src/bundles/onnx-graph.ts';
import { buildTinyBundle, tinyDims } from '../src/bundles/tiny-bundle.ts';
import { OPTIMUM_FLAVOR, faceEmbedderGraph } from '../src/bundles/tiny-graphs.ts';
import { tinyClipTokenizerFiles } from '../src/bundles/tiny-tokenizer.ts';
import { loadBundle, sha256File } from '../src/runtime/bundle-loader.ts';
import { availableProviders } from '../src/runtime/onnx.ts';
import { readManifestJson, replaceGraph, tinyBundleDir, writeManifestJson } from './helpers.ts';

/** Asserts loadBundle rejects with the catalogue code and a message matching every pattern. */
async function rejects(t: Test, dir: string, code: string, ...patterns: RegExp[]): Promise<void> {
  const err = await loadBundle(dir).then(
    (b) => {
      void b.release();
      return null;
    },
    (e: unknown) => e,
  );
  t.type(err, DiffIdError, 'a DiffIdError');
  const e = err as DiffIdError;
  t.equal(e.code, code);
  for (const p of patterns) t.match(e.message, p);
}

/** An embedder graph with the tiny one's names but a chosen input dtype and shape. */
function oddEmbedder(dtype: 'float32' | 'int32', shape: Array<number | string>, width = 16): Uint8Array {
  const g = new GraphBuilder('face_embedder');
  const x = g.input('data', dtype, shape);
  const f = dtype === 'float32' ? x : g.op('Cast', [x], { to: { int: 1 } });
  const pooled = g.op('ReduceMean', [f], { axes: { ints: shape.slice(2).map((_, i) => i + 2) }, keepdims: { int: 0 } });
  g.op('MatMul', [pooled, g.weight('w', [3, width], new Float32Array(3 * width).fill(0.1))], {}, 'fc1');
  g.output('fc1', 'float32', ['batch', width]);
  return g.toBytes();
}

t.test('a complete tiny bundle loads, with dimensions read from the graphs', async (t) => {
  const b = await loadBundle(await tinyBundleDir(t));
  t.teardown(() => b.release());
  t.same(b.dims, {
    faceEmbedding: 16, imageEmbedding: 24, textLength: 77, textWidth: 32,
    conditioningTokens: 81, conditioningWidth: 32, latentChannels: 4, latentHeight: 8, latentWidth: 8,
  });
  t.equal(b.ports.text_encoder.inputs.input_ids.dtype, 'int32');
  t.same(b.ports.unet.inputs.timestep.shape, ['batch']);
  t.equal(b.tokenizer.maxLength, 77);
});

t.test('the optimum flavour loads too, and the ports say how it differs', async (t) => {
  const b = await loadBundle(await tinyBundleDir(t, { flavor: OPTIMUM_FLAVOR }));
  t.teardown(() => b.release());
  t.equal(b.ports.text_encoder.inputs.input_ids.dtype, 'int64');
  t.equal(b.ports.unet.inputs.timestep.dtype, 'int64');
  t.equal(b.ports.vae_encoder.outputs.latent.name, 'latent_parameters');
  t.same(b.ports.vae_encoder.outputs.latent.shape, ['batch', 8, 'latent_height', 'latent_width'], 'mean ‖ logvar: 8 channels');
  t.equal(b.manifest.models.vae_encoder.output_kind, 'mean_logvar');
});

t.test('a larger embedder width is read from the graph, not assumed', async (t) => {
  const b = await loadBundle(await tinyBundleDir(t, { dims: { faceEmbedding: 128 } }));
  t.teardown(() => b.release());
  t.equal(b.dims.faceEmbedding, 128);
});

t.test('rejects a bundle with a missing file, naming role and file', async (t) => {
  const dir = await tinyBundleDir(t);
  await rm(join(dir, 'unet.onnx'));
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_FILE_MISSING', /^unet: file "unet.onnx" is missing/);
});

t.test('rejects a missing manifest', async (t) => {
  const dir = await tinyBundleDir(t);
  await rm(join(dir, 'manifest.json'));
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_FILE_MISSING', /no manifest.json in the bundle directory/);
});

t.test('refuses a file whose sha256 differs from the manifest', async (t) => {
  const dir = await tinyBundleDir(t);
  const bytes = buildTinyBundle({ seed: 9 }).files.get('vae_decoder.onnx') as Uint8Array;
  await writeFile(join(dir, 'vae_decoder.onnx'), bytes);
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_CHECKSUM_MISMATCH', /^vae_decoder: file "vae_decoder.onnx" has sha256 [0-9a-f]{64}, the manifest says [0-9a-f]{64}; refusing/);
});

t.test('rejects a manifest input name the graph does not have', async (t) => {
  const dir = await tinyBundleDir(t);
  const m = await readManifestJson(dir);
  m.models.unet.inputs.sample = 'latents';
  await writeManifestJson(dir, m);
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH',
    /unet \(unet.onnx\): input port "sample" names "latents", but the graph's inputs are "sample", "timestep", "encoder_hidden_states"/,
    /unet \(unet.onnx\): the graph needs input "sample", which the manifest does not map/);
});

t.test('rejects a wrong input dtype', async (t) => {
  const dir = await tinyBundleDir(t);
  await replaceGraph(dir, 'face_embedder', oddEmbedder('int32', ['batch', 3, 112, 112]));
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH', /face_embedder \(face_embedder.onnx\): input "data" \(port pixels\) has dtype int32, expected float32/);
});

t.test('rejects a wrong input rank', async (t) => {
  const dir = await tinyBundleDir(t);
  await replaceGraph(dir, 'face_embedder', oddEmbedder('float32', ['batch', 3, 112]));
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH', /face_embedder \(face_embedder.onnx\): input "data" \(port pixels\) has rank 3 \[batch, 3, 112\], expected rank 4/);
});

t.test('rejects a wrong fixed dimension with the manifest field it contradicts', async (t) => {
  const dir = await tinyBundleDir(t);
  await replaceGraph(dir, 'face_embedder', oddEmbedder('float32', ['batch', 3, 96, 96]));
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH', /input "data" \(port pixels\) has size 96 on axis 2 \[batch, 3, 96, 96\], expected 112 \(preprocess.size is 112\)/);
});

t.test('rejects an embedder whose embedding size the adapter does not take', async (t) => {
  const dir = await tinyBundleDir(t);
  const tok = tinyClipTokenizerFiles();
  await replaceGraph(dir, 'face_embedder', faceEmbedderGraph(tinyDims(tok.vocabSize, { faceEmbedding: 512 }), 4));
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH',
    /adapter \(adapter.onnx\): input "face_embedding" \(port face_embedding\) has size 16 on axis 1 \[batch, 16\], expected 512 \(face_embedder \(face_embedder.onnx\) emits 512\)/);
});

t.test('rejects a manifest that fails the schema, listing each problem', async (t) => {
  const dir = await tinyBundleDir(t);
  const m = (await readManifestJson(dir)) as unknown as Record<string, Record<string, unknown>>;
  delete m.latent;
  (m.image as Record<string, unknown>).depth = 3;
  await writeManifestJson(dir, m);
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_MANIFEST_INVALID', /manifest: missing field "latent"/, /image: unknown field "depth"/);
});

t.test('rejects an unsupported scheduler option and a file outside the bundle', async (t) => {
  const dir = await tinyBundleDir(t);
  const m = await readManifestJson(dir);
  (m.scheduler as unknown as Record<string, unknown>).timestep_spacing = 'linspace';
  await writeManifestJson(dir, m);
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_MANIFEST_INVALID', /timestep_spacing "linspace" is not supported/);
  const m2 = await readManifestJson(dir);
  m2.scheduler.timestep_spacing = 'leading';
  m2.models.unet.file = '../../etc/passwd';
  await writeManifestJson(dir, m2);
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_MANIFEST_INVALID', /models.unet.file/);
});

t.test('rejects corrupt graph bytes that still match their sha256', async (t) => {
  const dir = await tinyBundleDir(t);
  await replaceGraph(dir, 'vae_decoder', new TextEncoder().encode('not an onnx model'));
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_GRAPH_UNREADABLE', /^vae_decoder: onnxruntime cannot open "vae_decoder.onnx"/);
});

t.test('rejects a tokenizer without its start token', async (t) => {
  const dir = await tinyBundleDir(t);
  const m = await readManifestJson(dir);
  m.tokenizer.bos_token = '<|begin|>';
  await writeManifestJson(dir, m);
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_TOKENIZER_INVALID', /^tokenizer: .*<\|begin\|>/);
});

const cudaInstalled = availableProviders().includes('cuda');
t.test('a requested execution provider that is not installed fails clearly', { skip: cudaInstalled && 'this machine has the CUDA provider installed' }, async (t) => {
  const dir = await tinyBundleDir(t);
  const err = (await loadBundle(dir, { executionProvider: 'cuda' }).catch((e: unknown) => e)) as DiffIdError;
  t.equal(err.code, 'DIFFID_ERR_EXECUTION_PROVIDER_UNAVAILABLE');
  t.match(err.message, /execution provider "cuda" is not in this onnxruntime-node build \(it has: cpu\)/);
});

const FACES = join(import.meta.dirname, '../../../../shared/faces/models');
const embedder = join(FACES, 'mobilefacenet_facegate.onnx');
const detector = join(FACES, 'scrfd_500m_bnkps.onnx');
const facesAbsent = !existsSync(embedder) || !existsSync(detector);

t.test('real face models from ../shared/faces load as a bundle\'s embedder and detector', {
  skip: facesAbsent && `../shared/faces/models is absent (looked in ${FACES}); real-model loading not tested`,
}, async (t) => {
  const dir = await tinyBundleDir(t, { dims: { faceEmbedding: 128 } });
  const m = await readManifestJson(dir);
  await copyFile(embedder, join(dir, 'face_embedder.onnx'));
  await copyFile(detector, join(dir, 'face_detector.onnx'));
  m.models.face_embedder.inputs = { pixels: 'input0' };
  m.models.face_embedder.outputs = { embedding: 'output0' };
  m.models.face_embedder.sha256 = await sha256File(join(dir, 'face_embedder.onnx'));
  const strides = [8, 16, 32];
  m.models.face_detector = {
    file: 'face_detector.onnx',
    sha256: await sha256File(join(dir, 'face_detector.onnx')),
    layout: 'scrfd',
    inputs: { pixels: 'input.1' },
    outputs: Object.fromEntries(strides.flatMap((s) => [[`score_${s}`, `score_${s}`], [`bbox_${s}`, `bbox_${s}`], [`kps_${s}`, `kps_${s}`]])),
    preprocess: { channel_order: 'RGB', divide_by: 1, mean: [127.5, 127.5, 127.5], std: [128, 128, 128], size: 640, resize: 'letterbox_top_left' },
    strides,
    anchors_per_cell: 2,
    score_threshold: 0.5,
    nms_iou: 0.4,
  };
  await writeManifestJson(dir, m);
  const b = await loadBundle(dir);
  t.teardown(() => b.release());
  t.equal(b.dims.faceEmbedding, 128, 'the real recognizer is 128-d, read from its graph');
  t.same(b.ports.face_embedder.inputs.pixels.shape, [1, 3, 112, 112], 'its batch is fixed at 1');
  t.same(b.ports.face_detector?.outputs.score_8?.shape, [1, 12800, 1]);
  t.same(b.ports.face_detector?.outputs.kps_32?.shape, [1, 800, 10]);

  // The adapter built for 128-d refuses once the manifest points the embedder at a 16-d graph.
  await copyFile(join(await tinyBundleDir(t), 'face_embedder.onnx'), join(dir, 'face_embedder.onnx'));
  m.models.face_embedder.inputs = { pixels: 'data' };
  m.models.face_embedder.outputs = { embedding: 'fc1' };
  m.models.face_embedder.sha256 = await sha256File(join(dir, 'face_embedder.onnx'));
  await writeManifestJson(dir, m);
  await rejects(t, dir, 'DIFFID_ERR_BUNDLE_GRAPH_MISMATCH', /expected 16 \(face_embedder \(face_embedder.onnx\) emits 16\)/);
});
