// `npm run bundle -- --kind import --from DIR …`: a bundle from a diffusers/optimum ONNX export
// folder — model_index.json; unet/, text_encoder/, vae_encoder/, vae_decoder/ each with
// model.onnx (and model.onnx_data when the weights are outside); tokenizer/vocab.json and
// merges.txt; scheduler/scheduler_config.json — plus the adapter and the CLIP image encoder,
// which such an export does not hold, and the face models (the shipped ones unless given).
// Large graphs are linked, not copied, unless asked; every file's sha256 goes in the manifest.
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { MANIFEST_FILE, validateManifest, type AdapterSpec, type BundleFile, type FaceDetectorEntry, type FaceEmbedderEntry, type GraphEntry, type Manifest } from '@diffid/shared/bundle';
import { schedulerFromDiffusers } from '@diffid/shared/diffusion';
import { sha256File } from '../runtime/bundle-loader.ts';
import { CLIP_IMAGE_NORMALIZATION, SD15_VAE_SCALING_FACTOR } from './tiny-bundle.ts';
import { CLIP_SPECIAL_TOKENS } from './tiny-tokenizer.ts';
import { LinkError, type LinkedModel } from './link-models.ts';
import { externalDataLocations, inspectGraph, type GraphIo } from '../runtime/onnx-inspect.ts';

export interface ImportOptions {
  from: string;
  out: string;
  adapter: string;
  imageEncoder: string;
  detector?: LinkedModel<FaceDetectorEntry>;
  embedder: LinkedModel<FaceEmbedderEntry> & { width: number };
  /** Copy the export's graphs instead of linking them (they may be gigabytes). */
  copy?: boolean;
  /** Image side when the U-Net does not fix it (exports usually leave it symbolic); else unet/config.json's sample_size × 8, else 512. */
  size?: number;
}

const EXPORT_GRAPHS = ['unet', 'text_encoder', 'vae_encoder', 'vae_decoder'] as const;

async function readJson(path: string, what: string): Promise<Record<string, unknown>> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch (err) {
    throw new LinkError(`${what}: cannot read ${path} (${(err as Error).message})`);
  }
}

const dimAt = (io: GraphIo['inputs'][number] | undefined, axis: number) => (typeof io?.shape[axis] === 'number' ? (io.shape[axis] as number) : undefined);

function named(io: GraphIo, side: 'inputs' | 'outputs', want: string[], role: string): string {
  const found = io[side].find((t) => want.includes(t.name));
  if (!found) throw new LinkError(`${role}: no ${side.slice(0, -1)} named ${want.map((w) => `"${w}"`).join(' or ')}; the graph's ${side} are ${io[side].map((t) => `"${t.name}"`).join(', ')}`);
  return found.name;
}

/** Writes the bundle into `out`; returns its manifest. */
export async function importExport(o: ImportOptions): Promise<Manifest> {
  const from = resolve(o.from);
  if (!existsSync(join(from, 'model_index.json'))) throw new LinkError(`${from} is not a diffusers/optimum ONNX export folder: it has no model_index.json`);
  const schedulerPath = join(from, 'scheduler/scheduler_config.json');
  if (!existsSync(schedulerPath)) throw new LinkError(`scheduler: ${schedulerPath} is missing from the export`);
  const schedulerJson = await readJson(schedulerPath, 'scheduler');
  let scheduler: Manifest['scheduler'];
  try {
    scheduler = schedulerFromDiffusers(schedulerJson);
  } catch (err) {
    throw new LinkError((err as Error).message);
  }
  await mkdir(o.out, { recursive: true });
  const files: Array<{ source: string; target: string; link: boolean }> = [];
  const io: Record<string, GraphIo> = {};
  const entries: Record<string, { file: string; external: string[] }> = {};
  for (const role of EXPORT_GRAPHS) {
    const source = join(from, role, 'model.onnx');
    if (!existsSync(source)) throw new LinkError(`${role}: ${source} is missing from the export`);
    const bytes = new Uint8Array(await readFile(source));
    io[role] = inspectGraph(bytes);
    const external = externalDataLocations(bytes);
    files.push({ source, target: `${role}/model.onnx`, link: !o.copy });
    for (const location of external) files.push({ source: join(from, role, location), target: `${role}/${location}`, link: !o.copy });
    entries[role] = { file: `${role}/model.onnx`, external: external.map((l) => `${role}/${l}`) };
  }
  for (const name of ['vocab.json', 'merges.txt']) {
    const source = join(from, 'tokenizer', name);
    if (!existsSync(source)) throw new LinkError(`tokenizer: ${source} is missing from the export`);
    files.push({ source, target: `tokenizer/${name}`, link: false });
  }
  files.push({ source: resolve(o.adapter), target: 'adapter.onnx', link: false }, { source: resolve(o.imageEncoder), target: 'image_encoder.onnx', link: false });
  for (const f of files) {
    const target = join(o.out, f.target);
    await mkdir(dirname(target), { recursive: true });
    if (f.link) await symlink(f.source, target);
    else await copyFile(f.source, target);
  }
  const extra: Array<[string, Uint8Array]> = [['face_embedder.onnx', o.embedder.bytes]];
  if (o.detector) extra.push(['face_detector.onnx', o.detector.bytes]);
  for (const [name, bytes] of extra) await writeFile(join(o.out, name), bytes);

  const sum = async (file: string): Promise<BundleFile> => ({ file, sha256: await sha256File(join(o.out, file)) });
  const graph = async (role: (typeof EXPORT_GRAPHS)[number], inputs: Record<string, string>, outputs: Record<string, string>): Promise<GraphEntry> => {
    const e = entries[role] as { file: string; external: string[] };
    const entry: GraphEntry = { ...(await sum(e.file)), inputs, outputs };
    if (e.external.length > 0) entry.external_data = await Promise.all(e.external.map(sum));
    return entry;
  };

  const unet = io.unet as GraphIo;
  const sample = unet.inputs.find((t) => t.name === 'sample');
  const latentChannels = dimAt(sample, 1) ?? 4;
  const downscale = 8;
  // The image side: fixed in the graph, else --size, else unet/config.json's sample_size (in
  // latent pixels: 64 for SD 1.5, 96 for SD 2.x's 768-px models), else SD 1.5's 512.
  const unetConfig = existsSync(join(from, 'unet/config.json')) ? await readJson(join(from, 'unet/config.json'), 'unet') : {};
  const sampleSize = unetConfig.sample_size;
  const configured = typeof sampleSize === 'number' && Number.isInteger(sampleSize) && sampleSize > 0 ? sampleSize * downscale : undefined;
  const side = o.size ?? configured ?? 512;
  const height = (dimAt(sample, 2) ?? 0) * downscale || side;
  const width = (dimAt(sample, 3) ?? 0) * downscale || side;
  const vaeConfig = existsSync(join(from, 'vae_decoder/config.json')) ? await readJson(join(from, 'vae_decoder/config.json'), 'vae_decoder') : {};
  const textIds = (io.text_encoder as GraphIo).inputs[0];
  const textLength = dimAt(textIds, 1) ?? 77;
  const adapterIo = inspectGraph(new Uint8Array(await readFile(join(o.out, 'adapter.onnx'))));
  const conditioning = adapterIo.outputs.find((t) => t.name === 'conditioning');
  const tokens = typeof conditioning?.shape[1] === 'number' ? conditioning.shape[1] : undefined;
  const conditioningWidth = typeof conditioning?.shape[2] === 'number' ? conditioning.shape[2] : undefined;
  if (tokens === undefined || conditioningWidth === undefined) {
    throw new LinkError(`adapter: its output "conditioning" must have fixed tokens and width ([B, N, C]); the graph's outputs are ${adapterIo.outputs.map((t) => `"${t.name}" [${t.shape.join(', ')}]`).join(', ')}`);
  }
  const adapterSidecar = o.adapter.replace(/\.onnx$/, '') + '.json';
  // The exporter (services/gpu-worker/python) writes the adapter's manifest object beside it.
  const given = existsSync(adapterSidecar) ? ((await readJson(adapterSidecar, 'adapter sidecar')) as Partial<AdapterSpec>) : {};
  const architecture = given.architecture ?? 'diff-id';
  const adapter: AdapterSpec = {
    architecture,
    identity_tokens: tokens - textLength,
    text_tokens: textLength,
    ...(architecture === 'diff-id' ? { pooling: 'over_modalities' as const } : {}),
    fused_sequence: ['identity', 'attribute'],
    conditioning_tokens: tokens,
    conditioning_width: conditioningWidth,
    ...given,
  };
  const imageIo = inspectGraph(new Uint8Array(await readFile(join(o.out, 'image_encoder.onnx'))));
  const vaeLatent = named(io.vae_encoder as GraphIo, 'outputs', ['latent_sample', 'latent_parameters', 'latent_dist'], 'vae_encoder');
  const manifest: Manifest = {
    format: 'diffid-bundle',
    version: 1,
    name: 'imported',
    description: `Imported from ${from}`,
    image: { width, height },
    latent: { channels: latentChannels, downscale, scaling_factor: typeof vaeConfig.scaling_factor === 'number' ? vaeConfig.scaling_factor : SD15_VAE_SCALING_FACTOR },
    scheduler,
    tokenizer: { vocab: await sum('tokenizer/vocab.json'), merges: await sum('tokenizer/merges.txt'), max_length: textLength, ...CLIP_SPECIAL_TOKENS },
    adapter,
    models: {
      text_encoder: await graph('text_encoder', { input_ids: named(io.text_encoder as GraphIo, 'inputs', ['input_ids'], 'text_encoder') }, { hidden_states: named(io.text_encoder as GraphIo, 'outputs', ['last_hidden_state'], 'text_encoder') }),
      image_encoder: {
        ...(await sum('image_encoder.onnx')),
        inputs: { pixels: named(imageIo, 'inputs', ['pixel_values'], 'image_encoder') },
        outputs: { embedding: named(imageIo, 'outputs', ['image_embeds'], 'image_encoder') },
        preprocess: { ...CLIP_IMAGE_NORMALIZATION, size: dimAt(imageIo.inputs[0], 2) ?? 224, resize: 'shortest_side_center_crop' },
      },
      face_embedder: { ...o.embedder.entry, ...(await sum('face_embedder.onnx')) },
      ...(o.detector ? { face_detector: { ...o.detector.entry, ...(await sum('face_detector.onnx')) } } : {}),
      adapter: {
        ...(await sum('adapter.onnx')),
        inputs: Object.fromEntries(['face_embedding', 'image_embedding', 'text_embedding'].map((p) => [p, named(adapterIo, 'inputs', [p], 'adapter')])),
        outputs: { conditioning: 'conditioning' },
      },
      unet: await graph('unet', { sample: 'sample', timestep: named(unet, 'inputs', ['timestep'], 'unet'), encoder_hidden_states: named(unet, 'inputs', ['encoder_hidden_states'], 'unet') }, { noise: named(unet, 'outputs', ['out_sample'], 'unet') }),
      vae_encoder: { ...(await graph('vae_encoder', { pixels: named(io.vae_encoder as GraphIo, 'inputs', ['sample'], 'vae_encoder') }, { latent: vaeLatent })), output_kind: vaeLatent === 'latent_sample' ? 'latent' : 'mean_logvar' },
      vae_decoder: await graph('vae_decoder', { latent: named(io.vae_decoder as GraphIo, 'inputs', ['latent_sample'], 'vae_decoder') }, { pixels: named(io.vae_decoder as GraphIo, 'outputs', ['sample'], 'vae_decoder') }),
    },
  };
  const valid = validateManifest(manifest);
  await writeFile(join(o.out, MANIFEST_FILE), `${JSON.stringify(valid, null, 2)}\n`);
  return valid;
}
