// A bundle imported from an optimum-layout export folder (float16 ports, the U-Net's weights in
// a side file) serves generate and morph through the API, as the trained model's would.
import { join } from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import t from 'tap';
import { OPTIMUM_FLAVOR, buildTinyBundle, importExport, writeExportLayout } from '@diffid/gpu-worker';
import { finished, pollJob, postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

t.test('generate and morph through the API on a bundle imported from an fp16 optimum export with external data', async (t) => {
  const work = await mkdtemp(join(tmpdir(), 'diffid-import-api-'));
  t.teardown(() => rm(work, { recursive: true, force: true }));
  const s = await startStack(t, {
    prepare: async (dir) => {
      const tiny = buildTinyBundle({ flavor: OPTIMUM_FLAVOR });
      const layout = await writeExportLayout(work, tiny, { fp16: true, externalData: true });
      const embedder = { file: 'face_embedder.onnx', bytes: tiny.files.get('face_embedder.onnx') as Uint8Array, entry: tiny.manifest.models.face_embedder, width: 16 };
      await importExport({ from: layout.exportDir, out: dir, adapter: layout.adapter, imageEncoder: layout.imageEncoder, embedder, size: 64 });
    },
  });
  const face = { bytes: await faceFile(1) };
  const gen = await postForm(s.base, '/generate', { image: face, prompt: 'a photo', steps: 4, num_images: 2 });
  const g = await pollJob(s.base, ((await gen.json()) as { id: string }).id, finished);
  t.equal(g.status, 'succeeded', JSON.stringify(g.error ?? ''));
  t.equal(g.result.images.length, 2);
  t.equal((await fetch(`${s.base}${g.result.images[0].url}`)).status, 200);
  const morph = await postForm(s.base, '/morph', { image_a: face, image_b: { bytes: await faceFile(2) }, alphas: '0,0.5,1', steps: 4 });
  const m = await pollJob(s.base, ((await morph.json()) as { id: string }).id, finished);
  t.equal(m.status, 'succeeded', JSON.stringify(m.error ?? ''));
  t.same(m.result.images.map((i: { alpha: number }) => i.alpha), [0, 0.5, 1]);
});
