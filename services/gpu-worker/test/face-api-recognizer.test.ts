// The shipped evaluation recognizer: face-api's TensorFlow.js weights read as the format says
// (uint8 as min + q·scale), rebuilt as an ONNX graph by `npm run models`, linked with its sidecar,
// and on real photos (when ../shared/faces is present) putting the same person within and other
// people beyond the Euclidean distance 0.6 that dlib documents for this network.
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { decodeRgb } from '@diffid/shared/image';
import { FACE_API_INPUT, readWeights } from '../src/bundles/face-api-recognizer.ts';
import { linkEmbedder } from '../src/bundles/link-models.ts';
import { evaluationRecognizerPath, readShippedModel } from '../src/bundles/shipped-models.ts';
import { buildDefaultBundle } from '../src/bundles/default-bundle.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { openGraph } from '../src/runtime/onnx.ts';
import { embedLargestFace } from '../src/eval/evaluate.ts';
import { tempDir } from './helpers.ts';

const PHOTOS = join(import.meta.dirname, '../../../../shared/faces/photos');

t.test('weights manifests are read as TensorFlow.js writes them', async (t) => {
  const manifest = JSON.stringify([
    {
      paths: ['x.bin'],
      weights: [
        { name: 'q', shape: [2, 2], dtype: 'float32', quantization: { dtype: 'uint8', scale: 0.5, min: -1 } },
        { name: 'f', shape: [2], dtype: 'float32' },
      ],
    },
  ]);
  const bin = new Uint8Array([0, 1, 2, 255, ...new Uint8Array(new Float32Array([1.5, -2]).buffer)]);
  const w = readWeights(manifest, bin);
  t.same(Array.from(w.get('q')?.data ?? []), [-1, -0.5, 0, 126.5], 'uint8: min + q·scale');
  t.same(Array.from(w.get('f')?.data ?? []), [1.5, -2], 'float32 as it is');
  t.throws(() => readWeights(manifest, bin.subarray(0, 9)), /ends before f/);
  t.throws(() => readWeights(manifest, new Uint8Array([...bin, 0])), /1 bytes the manifest does not name/);
});

t.test('npm run models rebuilt it: 117 tensors, a 150² crop in, 128 numbers out', async (t) => {
  const manifest = await readShippedModel('evaluation_recognizer');
  const weights = await readShippedModel('evaluation_recognizer_weights');
  const w = readWeights(Buffer.from(manifest.bytes).toString('utf8'), weights.bytes);
  t.equal(w.size, 117, 'every tensor of the network');
  t.same(w.get('fc')?.shape, [256, 128]);
  const linked = linkEmbedder(evaluationRecognizerPath());
  t.equal(linked.width, 128);
  t.equal(linked.entry.preprocess.size, FACE_API_INPUT, 'the sidecar beside it sets the crop');
  t.same(linked.entry.preprocess.std, [1, 1, 1]);
});

t.test('on real photos: the same person within 0.6, other people beyond it', { skip: !existsSync(join(PHOTOS, 'fr_obama2.jpg')) && `../shared/faces is absent (looked in ${PHOTOS})` }, async (t) => {
  const dir = await tempDir(t, 'diffid-face-api-');
  await writeBundle(dir, await buildDefaultBundle());
  const bundle = await loadBundle(dir);
  t.teardown(() => bundle.release());
  const path = evaluationRecognizerPath();
  const { entry } = linkEmbedder(path);
  const graph = await openGraph(path, { executionProvider: 'cpu' });
  t.teardown(() => graph.release());
  const embed = async (name: string) => {
    const e = await embedLargestFace(bundle, graph, entry, await decodeRgb(new Uint8Array(await readFile(join(PHOTOS, name))), name, 2048));
    if (!e) throw new Error(`no face in ${name}`);
    return e;
  };
  const distance = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - (b[i] as number)) ** 2, 0));
  const [obama, obama2, biden, bryan, luciano] = await Promise.all(['fr_obama.jpg', 'fr_obama2.jpg', 'fr_biden.jpg', 'max_Bryan.png', 'max_Luciano.png'].map(embed)) as Float32Array[];
  const same = distance(obama as Float32Array, obama2 as Float32Array);
  t.ok(same < 0.6, `two photos of one person: ${same.toFixed(3)}`);
  const others = [
    [obama, biden],
    [obama2, biden],
    [obama, bryan],
    [biden, luciano],
    [bryan, luciano],
  ].map(([a, b]) => distance(a as Float32Array, b as Float32Array));
  t.ok(others.every((d) => d > 0.6), `different people: ${others.map((d) => d.toFixed(3)).join(', ')}`);
});
