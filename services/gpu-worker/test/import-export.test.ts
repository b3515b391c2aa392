// Importing a diffusers/optimum ONNX export folder: the tiny bundle written in that layout (both
// flavours, float16 ports, the U-Net's weights outside) becomes a bundle that loads and runs,
// its large graphs linked unless copying is asked for.
import { lstat, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { SD15_SCHEDULER } from '@diffid/shared/diffusion';
import { facePattern } from '@diffid/shared/testing';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { writeExportLayout } from '../src/bundles/export-layout.ts';
import { importExport } from '../src/bundles/import-export.ts';
import { buildTinyBundle } from '../src/bundles/tiny-bundle.ts';
import { DIFFUSERS_FLAVOR, OPTIMUM_FLAVOR } from '../src/bundles/tiny-graphs.ts';
import { generate } from '../src/pipelines/generate.ts';
import { stageContext } from '../src/stages/context.ts';
import { tempDir } from './helpers.ts';

const params = { prompt: 'x', negative_prompt: '', num_images: 1, steps: 3, guidance_scale: 3, seed: 4, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;

t.test('an export folder imports to a bundle that loads and runs: both flavours, fp16, external data', async (t) => {
  const cases = [
    { name: 'diffusers', flavor: DIFFUSERS_FLAVOR, fp16: false, externalData: false },
    { name: 'optimum, fp16, external data', flavor: OPTIMUM_FLAVOR, fp16: true, externalData: true },
  ];
  for (const c of cases) {
    const dir = await tempDir(t, 'diffid-import-');
    const tiny = buildTinyBundle({ flavor: c.flavor });
    const layout = await writeExportLayout(dir, tiny, { fp16: c.fp16, externalData: c.externalData });
    const embedder = { file: 'face_embedder.onnx', bytes: tiny.files.get('face_embedder.onnx') as Uint8Array, entry: tiny.manifest.models.face_embedder, width: 16 };
    const out = join(dir, 'bundle');
    const manifest = await importExport({ from: layout.exportDir, out, adapter: layout.adapter, imageEncoder: layout.imageEncoder, embedder, size: 64 });
    t.same(manifest.scheduler, SD15_SCHEDULER, `${c.name}: the scheduler read from scheduler_config.json`);
    t.same(manifest.image, tiny.manifest.image, `${c.name}: the image size (the tiny U-Net leaves it symbolic, as exports do: --size)`);
    t.equal(manifest.models.vae_encoder.output_kind, c.flavor.vaeEncoderOutput === 'mean_logvar' ? 'mean_logvar' : 'latent', `${c.name}: the VAE encoder's output kind from its output name`);
    t.same(manifest.models.unet.external_data?.map((d) => d.file) ?? [], c.externalData ? ['unet/model.onnx_data'] : [], `${c.name}: external data listed`);
    t.ok((await lstat(join(out, 'unet/model.onnx'))).isSymbolicLink(), `${c.name}: the U-Net is linked, not copied`);
    t.equal(await readlink(join(out, 'unet/model.onnx')), join(layout.exportDir, 'unet/model.onnx'));
    const bundle = await loadBundle(out);
    t.teardown(() => bundle.release());
    t.equal(bundle.ports.unet.inputs.sample.dtype, c.fp16 ? 'float16' : 'float32');
    const result = await generate(stageContext(bundle), { images: { image: [facePattern(2, 64, 64)] }, params });
    t.equal(result.images.length, 1, `${c.name}: generate runs on the imported bundle`);
  }
});

t.test('copying is by request; a folder that is not an export, or a scheduler the core lacks, is refused by name', async (t) => {
  const dir = await tempDir(t, 'diffid-import-');
  const tiny = buildTinyBundle();
  const layout = await writeExportLayout(dir, tiny, { externalData: true });
  const embedder = { file: 'face_embedder.onnx', bytes: tiny.files.get('face_embedder.onnx') as Uint8Array, entry: tiny.manifest.models.face_embedder, width: 16 };
  const copied = join(dir, 'copied');
  await importExport({ from: layout.exportDir, out: copied, adapter: layout.adapter, imageEncoder: layout.imageEncoder, embedder, copy: true, size: 64 });
  t.notOk((await lstat(join(copied, 'unet/model.onnx_data'))).isSymbolicLink(), 'with copy: a real file');
  await t.rejects(importExport({ from: dir, out: join(dir, 'x'), adapter: layout.adapter, imageEncoder: layout.imageEncoder, embedder }), /is not a diffusers\/optimum ONNX export folder: it has no model_index\.json/);
  await writeFile(join(layout.exportDir, 'scheduler/scheduler_config.json'), JSON.stringify({ beta_schedule: 'scaled_linear', beta_start: 0.00085, beta_end: 0.012, clip_sample: false, thresholding: true }));
  await t.rejects(importExport({ from: layout.exportDir, out: join(dir, 'y'), adapter: layout.adapter, imageEncoder: layout.imageEncoder, embedder }), /scheduler_config\.json: thresholding is true; the DDIM core does not implement it/);
});

t.test("without --size the image side is unet/config.json's sample_size × 8, as diffusers writes it", async (t) => {
  const dir = await tempDir(t, 'diffid-import-');
  const tiny = buildTinyBundle();
  const layout = await writeExportLayout(dir, tiny, {});
  const embedder = { file: 'face_embedder.onnx', bytes: tiny.files.get('face_embedder.onnx') as Uint8Array, entry: tiny.manifest.models.face_embedder, width: 16 };
  // The tiny U-Net works in 8×8 latents: a 64-px image; an SD 2.x export would say 96 (768 px).
  await writeFile(join(layout.exportDir, 'unet/config.json'), JSON.stringify({ sample_size: 8, in_channels: 4 }));
  const fromConfig = await importExport({ from: layout.exportDir, out: join(dir, 'a'), adapter: layout.adapter, imageEncoder: layout.imageEncoder, embedder });
  t.same([fromConfig.image.width, fromConfig.image.height], [64, 64], 'sample_size 8 → 64 px');
  const given = await importExport({ from: layout.exportDir, out: join(dir, 'b'), adapter: layout.adapter, imageEncoder: layout.imageEncoder, embedder, size: 128 });
  t.same([given.image.width, given.image.height], [128, 128], '--size wins over the config');
});
