// Writes a generated bundle's diffusion graphs in the folder layout diffusers' and optimum's ONNX
// exporters produce, optionally with float16 ports and the U-Net's weights outside, with the
// adapter and image encoder beside it (an export holds neither). Tests import from it.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { SD15_SCHEDULER } from '@diffid/shared/diffusion';
import { toExternalData } from './external-data.ts';
import { withHalfBoundary } from './fp16-io.ts';
import type { GeneratedBundle } from './write-bundle.ts';

export interface ExportLayoutOptions {
  fp16?: boolean;
  externalData?: boolean;
}

/** Returns the export folder and the adapter and image encoder files written beside it. */
export async function writeExportLayout(dir: string, bundle: GeneratedBundle, options: ExportLayoutOptions = {}): Promise<{ exportDir: string; adapter: string; imageEncoder: string }> {
  const graph = (name: string) => {
    const bytes = bundle.files.get(name);
    if (!bytes) throw new Error(`the bundle has no ${name}`);
    return options.fp16 ? withHalfBoundary(bytes) : bytes;
  };
  const exportDir = join(dir, 'export');
  const out = new Map<string, Uint8Array>();
  const enc = new TextEncoder();
  out.set('model_index.json', enc.encode(JSON.stringify({ _class_name: 'ORTStableDiffusionPipeline', _diffusers_version: '0.30.0' })));
  const unet = graph('unet.onnx');
  if (options.externalData) {
    const { graph: g, data } = toExternalData(unet, 'model.onnx_data');
    out.set('unet/model.onnx', g);
    out.set('unet/model.onnx_data', data);
  } else {
    out.set('unet/model.onnx', unet);
  }
  for (const role of ['text_encoder', 'vae_encoder', 'vae_decoder']) out.set(`${role}/model.onnx`, graph(`${role}.onnx`));
  for (const name of ['vocab.json', 'merges.txt']) out.set(`tokenizer/${name}`, bundle.files.get(`tokenizer/${name}`) as Uint8Array);
  // SD 1.5's own scheduler file (a PNDM one; its schedule is DDIM's).
  const s = SD15_SCHEDULER;
  out.set('scheduler/scheduler_config.json', enc.encode(JSON.stringify({ _class_name: 'PNDMScheduler', _diffusers_version: '0.6.0', beta_end: s.beta_end, beta_schedule: s.beta_schedule, beta_start: s.beta_start, num_train_timesteps: s.num_train_timesteps, set_alpha_to_one: s.set_alpha_to_one, skip_prk_steps: true, steps_offset: s.steps_offset, trained_betas: null, clip_sample: false })));
  out.set('vae_decoder/config.json', enc.encode(JSON.stringify({ scaling_factor: bundle.manifest.latent.scaling_factor })));
  for (const [name, bytes] of out) {
    await mkdir(dirname(join(exportDir, name)), { recursive: true });
    await writeFile(join(exportDir, name), bytes);
  }
  const adapter = join(dir, 'adapter.onnx');
  const imageEncoder = join(dir, 'image_encoder.onnx');
  await writeFile(adapter, graph('adapter.onnx'));
  await writeFile(imageEncoder, graph('image_encoder.onnx'));
  return { exportDir, adapter, imageEncoder };
}
