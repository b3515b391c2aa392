// The tiny bundle: every role at small widths with seeded weights and real-export signatures.
// It proves shapes and plumbing, not behaviour (the demo bundle does behaviour).

import { SD15_SCHEDULER } from '@diffid/shared/diffusion';
import { type Manifest, type Normalization } from '@diffid/shared/bundle';
import {
  DIFFUSERS_FLAVOR,
  adapterGraph,
  faceEmbedderGraph,
  imageEncoderGraph,
  textEncoderGraph,
  unetGraph,
  vaeDecoderGraph,
  vaeEncoderGraph,
  type ExportFlavor,
  type TinyDims,
} from './tiny-graphs.ts';
import { tinyClipTokenizerFiles, tinyTokenizerBundlePart } from './tiny-tokenizer.ts';
import { toExternalData } from './external-data.ts';
import { graphEntry, type GeneratedBundle } from './write-bundle.ts';

/** CLIP ViT-L/14 preprocessing (docs/reference-values.md). */
export const CLIP_IMAGE_NORMALIZATION: Normalization = {
  channel_order: 'RGB',
  divide_by: 255,
  mean: [0.48145466, 0.4578275, 0.40821073],
  std: [0.26862954, 0.26130258, 0.27577711],
};

/** SD 1.5's VAE latent scaling factor (its vae/config.json). */
export const SD15_VAE_SCALING_FACTOR = 0.18215;

/** InsightFace ArcFace input: (p − 127.5) / 127.5, RGB. */
export const ARCFACE_NORMALIZATION: Normalization = { channel_order: 'RGB', divide_by: 1, mean: [127.5, 127.5, 127.5], std: [127.5, 127.5, 127.5] };

/** The ArcFace 5-point template for a 112×112 crop: eyes, nose, mouth corners. */
export const ARCFACE_TEMPLATE_112: Array<[number, number]> = [
  [38.2946, 51.6963],
  [73.5318, 51.5014],
  [56.0252, 71.7366],
  [41.5493, 92.3655],
  [70.7299, 92.2041],
];

export interface TinyOptions {
  seed?: number;
  flavor?: ExportFlavor;
  /** Overrides of the default widths (tests build mismatched graphs with these). */
  dims?: Partial<TinyDims>;
  /** Extra 512×512 matrix products per U-Net call: a deliberately slow graph for tests. */
  burnMatmuls?: number;
  /** Keep the U-Net's weights in a side file (ONNX external data), as exports of graphs over 2 GB do. */
  externalData?: boolean;
}

export function tinyDims(vocabSize: number, overrides: Partial<TinyDims> = {}): TinyDims {
  return {
    image: 64,
    latentChannels: 4,
    downscale: 8,
    vocabSize,
    textLength: 77,
    textWidth: 32,
    imageEmbedding: 24,
    faceEmbedding: 16,
    clipImageSize: 224,
    faceSize: 112,
    attentionWidth: 16,
    mlpHidden: 64,
    conditioningWidth: 32,
    unetChannels: 8,
    ...overrides,
  };
}

/** Builds the tiny bundle in memory; the same options give the same bytes. */
export function buildTinyBundle(options: TinyOptions = {}): GeneratedBundle {
  const seed = options.seed ?? 1;
  const flavor = options.flavor ?? DIFFUSERS_FLAVOR;
  const tok = tinyClipTokenizerFiles();
  const d = tinyDims(tok.vocabSize, options.dims);
  const identityTokens = 4;
  const conditioningTokens = identityTokens + d.textLength;
  const tokenizer = tinyTokenizerBundlePart(tok, d.textLength);
  const files = new Map<string, Uint8Array>([
    ['text_encoder.onnx', textEncoderGraph(d, flavor, seed + 1)],
    ['image_encoder.onnx', imageEncoderGraph(d, seed + 2)],
    ['face_embedder.onnx', faceEmbedderGraph(d, seed + 3)],
    ['adapter.onnx', adapterGraph(d, seed + 4)],
    ['unet.onnx', unetGraph(d, flavor, conditioningTokens, seed + 5, options.burnMatmuls ?? 0)],
    ['vae_encoder.onnx', vaeEncoderGraph(d, flavor, seed + 6)],
    ['vae_decoder.onnx', vaeDecoderGraph(d, seed + 7)],
    ...tokenizer.files,
  ]);
  const vaeOut = flavor.vaeEncoderOutput === 'mean_logvar' ? 'latent_parameters' : 'latent_sample';
  const manifest: Manifest = {
    format: 'diffid-bundle',
    version: 1,
    name: 'tiny',
    description: 'Random-weight graphs with the signatures of real exports, for tests of shapes and plumbing. Outputs are noise.',
    image: { width: d.image, height: d.image },
    latent: { channels: d.latentChannels, downscale: d.downscale, scaling_factor: SD15_VAE_SCALING_FACTOR },
    scheduler: { ...SD15_SCHEDULER },
    tokenizer: tokenizer.spec,
    adapter: {
      architecture: 'diff-id',
      identity_tokens: identityTokens,
      text_tokens: d.textLength,
      pooling: 'over_modalities',
      fused_sequence: ['identity', 'attribute'],
      conditioning_tokens: conditioningTokens,
      conditioning_width: d.conditioningWidth,
    },
    models: {
      text_encoder: graphEntry('text_encoder.onnx', { input_ids: 'input_ids' }, { hidden_states: 'last_hidden_state' }),
      image_encoder: {
        ...graphEntry('image_encoder.onnx', { pixels: 'pixel_values' }, { embedding: 'image_embeds' }),
        preprocess: { ...CLIP_IMAGE_NORMALIZATION, size: d.clipImageSize, resize: 'shortest_side_center_crop' },
      },
      face_embedder: {
        ...graphEntry('face_embedder.onnx', { pixels: 'data' }, { embedding: 'fc1' }),
        preprocess: { ...ARCFACE_NORMALIZATION, size: d.faceSize, template: ARCFACE_TEMPLATE_112 },
      },
      adapter: graphEntry('adapter.onnx', { face_embedding: 'face_embedding', image_embedding: 'image_embedding', text_embedding: 'text_embedding' }, { conditioning: 'conditioning' }),
      unet: graphEntry('unet.onnx', { sample: 'sample', timestep: 'timestep', encoder_hidden_states: 'encoder_hidden_states' }, { noise: 'out_sample' }),
      vae_encoder: { ...graphEntry('vae_encoder.onnx', { pixels: 'sample' }, { latent: vaeOut }), output_kind: flavor.vaeEncoderOutput },
      vae_decoder: graphEntry('vae_decoder.onnx', { latent: 'latent_sample' }, { pixels: 'sample' }),
    },
  };
  if (options.externalData) {
    // As exporters lay it out: unet/model.onnx naming model.onnx_data beside it.
    const { graph, data } = toExternalData(files.get('unet.onnx') as Uint8Array, 'model.onnx_data');
    files.delete('unet.onnx');
    files.set('unet/model.onnx', graph);
    files.set('unet/model.onnx_data', data);
    manifest.models.unet = { ...manifest.models.unet, file: 'unet/model.onnx', external_data: [{ file: 'unet/model.onnx_data', sha256: '' }] };
  }
  return { files, manifest };
}
