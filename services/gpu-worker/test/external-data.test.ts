// Graphs whose weights sit in a side file (ONNX external data, as exports over 2 GB are): the
// bundle lists the file with its sha256, the loader checks it and refuses a graph that reads
// weights from a file the manifest does not list.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import type { DiffIdError } from '@diffid/shared/contract';
import { facePattern } from '@diffid/shared/testing';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { externalDataLocations } from '../src/runtime/onnx-inspect.ts';
import { buildTinyBundle } from '../src/bundles/tiny-bundle.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { generate } from '../src/pipelines/generate.ts';
import { stageContext } from '../src/stages/context.ts';
import { readManifestJson, tempDir, writeManifestJson } from './helpers.ts';

const params = { prompt: 'x', negative_prompt: '', num_images: 1, steps: 4, guidance_scale: 3, seed: 2, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;

t.test('a U-Net with external data loads, checks its weight file, and gives the same images', async (t) => {
  const plain = await tempDir(t);
  const split = await tempDir(t);
  await writeBundle(plain, buildTinyBundle());
  const manifest = await writeBundle(split, buildTinyBundle({ externalData: true }));
  t.same(manifest.models.unet.external_data?.map((d) => d.file), ['unet/model.onnx_data'], 'the weight file is listed');
  t.match(manifest.models.unet.external_data?.[0]?.sha256 ?? '', /^[0-9a-f]{64}$/, 'with its sha256');
  const graph = new Uint8Array(await readFile(join(split, 'unet/model.onnx')));
  const data = await readFile(join(split, 'unet/model.onnx_data'));
  t.same(externalDataLocations(graph), ['model.onnx_data'], 'the graph names its side file, relative to itself');
  t.ok(graph.length < data.length, `the graph is small (${graph.length} bytes), its weights beside it (${data.length} bytes)`);
  const a = await loadBundle(plain);
  const b = await loadBundle(split);
  t.teardown(async () => {
    await a.release();
    await b.release();
  });
  const face = facePattern(1, 64, 64);
  const [x, y] = await Promise.all([generate(stageContext(a), { images: { image: [face] }, params }), generate(stageContext(b), { images: { image: [face] }, params })]);
  t.same(Array.from(y.images[0]?.rgb.data ?? []), Array.from(x.images[0]?.rgb.data ?? []), 'the same weights give the same image');
});

t.test('an altered weight file, or one the manifest does not list, is refused by name', async (t) => {
  const dir = await tempDir(t);
  await writeBundle(dir, buildTinyBundle({ externalData: true }));
  const path = join(dir, 'unet/model.onnx_data');
  const original = await readFile(path);
  const altered = Buffer.from(original);
  altered[100] = (altered[100] as number) ^ 0xff;
  await writeFile(path, altered);
  const bad = (await loadBundle(dir).catch((e: unknown) => e)) as DiffIdError;
  t.equal(bad.code, 'DIFFID_ERR_BUNDLE_CHECKSUM_MISMATCH');
  t.match(bad.message, /unet external data: file "unet\/model\.onnx_data" has sha256/);
  await writeFile(path, original);
  const m = await readManifestJson(dir);
  delete m.models.unet.external_data;
  await writeManifestJson(dir, m);
  const unlisted = (await loadBundle(dir).catch((e: unknown) => e)) as DiffIdError;
  t.equal(unlisted.code, 'DIFFID_ERR_BUNDLE_MANIFEST_INVALID');
  t.match(unlisted.message, /unet: the graph "unet\/model\.onnx" keeps weights in "model\.onnx_data", which the manifest does not list; add it as models\.unet\.external_data: \[\{ "file": "unet\/model\.onnx_data"/);
});
