// The demo bundle: graphs whose right answers are known, so that outputs mean something without
// trained Diff-ID weights. It does not understand language and makes no new faces; it is a
// correctness instrument and a working default (docs/demo-bundle.md).
//
// - VAE: the latent IS the aligned face canvas at half resolution (encoder: 2×2 average pool;
//   decoder: 2× cubic upsampling), so it is an exactly invertible linear map of the downsampled
//   image, with scaling factor 1.
// - CLIP image encoder: the same pooling, flattened — it exposes the face's latent.
// - Adapter: places that latent, scaled by the face embedding's length (1 for one face, less for
//   a linear mix of two), in 64 tokens of width 768 and adds a colour tint computed from the
//   prompt, so that different prompts give different images: μ_c = ‖e_arc‖·latent + tint(prompt).
// - U-Net: the exact optimal noise predictor for latents distributed N(μ_c, σ²I),
//   ε*(z_t, t, c) = √(1−ᾱ_t)·(z_t − √ᾱ_t·μ_c)/(ᾱ_t·σ² + 1 − ᾱ_t), with ᾱ_t gathered in the graph
//   from the SD1.5 schedule. DDIM sampling therefore draws faces from a known distribution around
//   the input face (σ sets how much they vary with the seed), and inversion followed by sampling
//   reconstructs the input.
// - Face embedder (replaceable by a real one with --embedder): the aligned 112² crop in grey,
//   pooled to 16×16 and mean-centred; cosine similarity compares those thumbnails.

import { SD15_SCHEDULER, SeededRandom, fillGaussian, makeSchedule } from '@diffid/shared/diffusion';
import { type Manifest } from '@diffid/shared/bundle';
import type { LinkedModel } from './link-models.ts';
import type { FaceDetectorEntry, FaceEmbedderEntry } from '@diffid/shared/bundle';
import { GraphBuilder } from './onnx-graph.ts';
import { ARCFACE_NORMALIZATION, ARCFACE_TEMPLATE_112 } from './tiny-bundle.ts';
import { CLIP_SPECIAL_TOKENS, tinyClipTokenizerFiles, tinyTokenizerBundlePart } from './tiny-tokenizer.ts';
import { graphEntry, type GeneratedBundle } from './write-bundle.ts';

export interface DemoOptions {
  /** Standard deviation of the latent distribution around the face, in [−1, 1] pixel units. */
  sigma?: number;
  /** Largest colour shift a prompt can make, in [−1, 1] pixel units. */
  tint?: number;
  seed?: number;
  embedder?: LinkedModel<FaceEmbedderEntry> & { width: number };
  detector?: LinkedModel<FaceDetectorEntry>;
}

const IMAGE = 256;
const GRID = 128; // latent grid: IMAGE / 2
const CH = 3;
const LATENT = CH * GRID * GRID; // 49152
const TOKENS = 64;
const WIDTH = 768; // TOKENS · WIDTH = LATENT
const TEXT_LENGTH = 77;
const TEXT_WIDTH = 16;
const THUMB = 16;

function randn(rng: SeededRandom, n: number, scale: number): Float32Array {
  const x = fillGaussian(rng, new Float32Array(n));
  for (let i = 0; i < n; i++) x[i] = (x[i] as number) * scale;
  return x;
}

function pool2(g: GraphBuilder, x: string): string {
  return g.op('AveragePool', [x], { kernel_shape: { ints: [2, 2] }, strides: { ints: [2, 2] } });
}

function vaeEncoder(): Uint8Array {
  const g = new GraphBuilder('vae_encoder');
  const x = g.input('sample', 'float32', ['batch', CH, IMAGE, IMAGE]);
  g.op('Identity', [pool2(g, x)], {}, 'latent_sample');
  g.output('latent_sample', 'float32', ['batch', CH, GRID, GRID]);
  return g.toBytes('demo VAE encoder: the latent is the image at half resolution (2×2 mean)');
}

function vaeDecoder(): Uint8Array {
  const g = new GraphBuilder('vae_decoder');
  const z = g.input('latent_sample', 'float32', ['batch', CH, GRID, GRID]);
  const roi = g.weight('roi', [0], new Float32Array(0));
  const scales = g.weight('scales', [4], new Float32Array([1, 1, 2, 2]));
  g.op('Resize', [z, roi, scales], { mode: { string: 'cubic' }, coordinate_transformation_mode: { string: 'half_pixel' } }, 'sample');
  g.output('sample', 'float32', ['batch', CH, IMAGE, IMAGE]);
  return g.toBytes('demo VAE decoder: 2× cubic upsampling of the latent');
}

function imageEncoder(): Uint8Array {
  const g = new GraphBuilder('image_encoder');
  const x = g.input('pixel_values', 'float32', ['batch', CH, IMAGE, IMAGE]);
  g.op('Flatten', [pool2(g, x)], { axis: { int: 1 } }, 'image_embeds');
  g.output('image_embeds', 'float32', ['batch', LATENT]);
  return g.toBytes("demo image encoder: exposes the aligned face's latent, flattened");
}

function faceEmbedder(): Uint8Array {
  const g = new GraphBuilder('face_embedder');
  const x = g.input('data', 'float32', ['batch', 3, 112, 112]);
  const grey = g.op('Conv', [x, g.weight('luma', [1, 3, 1, 1], new Float32Array([0.299, 0.587, 0.114]))]);
  const k = 112 / THUMB;
  const thumb = g.op('Flatten', [g.op('AveragePool', [grey], { kernel_shape: { ints: [k, k] }, strides: { ints: [k, k] } })], { axis: { int: 1 } });
  g.op('Sub', [thumb, g.op('ReduceMean', [thumb], { axes: { ints: [1] }, keepdims: { int: 1 } })], {}, 'fc1');
  g.output('fc1', 'float32', ['batch', THUMB * THUMB]);
  return g.toBytes('demo face embedder: mean-centred 16×16 grey thumbnail of the aligned crop');
}

function textEncoder(vocab: number, rng: SeededRandom): { bytes: Uint8Array; table: Float32Array } {
  const g = new GraphBuilder('text_encoder');
  const ids = g.input('input_ids', 'int32', ['batch', TEXT_LENGTH]);
  const table = randn(rng, vocab * TEXT_WIDTH, 1);
  g.op('Gather', [g.weight('token_embedding', [vocab, TEXT_WIDTH], table), ids], { axis: { int: 0 } }, 'last_hidden_state');
  g.output('last_hidden_state', 'float32', ['batch', TEXT_LENGTH, TEXT_WIDTH]);
  return { bytes: g.toBytes('demo text encoder: a token embedding table'), table };
}

function adapter(faceWidth: number, emptySum: Float32Array, tint: number, rng: SeededRandom): Uint8Array {
  const g = new GraphBuilder('adapter');
  const face = g.input('face_embedding', 'float32', ['batch', faceWidth]);
  const img = g.input('image_embedding', 'float32', ['batch', LATENT]);
  const text = g.input('text_embedding', 'float32', ['batch', TEXT_LENGTH, TEXT_WIDTH]);
  // tint = tanh((Σ_t e_t − Σ_t e_t of the empty prompt)·P)·tint: the empty prompt tints nothing,
  // and each word moves the colour whatever the padding around it.
  const sumText = g.op('Sub', [g.op('ReduceSum', [text, g.int64('axes_tokens', [1])], { keepdims: { int: 0 } }), g.weight('empty_prompt_sum', [TEXT_WIDTH], emptySum)]);
  const rgb = g.op('Mul', [g.op('Tanh', [g.op('MatMul', [sumText, g.weight('P', [TEXT_WIDTH, CH], randn(rng, TEXT_WIDTH * CH, 1 / Math.sqrt(2 * TEXT_WIDTH)))])]), g.scalar('tint_scale', tint)]);
  const perPixel = g.op('Expand', [g.op('Unsqueeze', [rgb, g.int64('axis_2', [2])]), g.int64('spread', [1, CH, GRID * GRID])]);
  const tintMap = g.op('Reshape', [perPixel, g.int64('flat', [-1, LATENT])]);
  // The identity's strength is the face embedding's length: the pipelines feed it unit length
  // (a recognizer's identity is a direction), zero for the unconditional branch, and shorter
  // for a linear mix of two faces (LERP; SLERP keeps it) — so a morph's strategy shows.
  const strength = g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [face, face]), g.int64('axes_1', [1])], { keepdims: { int: 1 } })]);
  const mu = g.op('Add', [g.op('Mul', [img, strength]), tintMap]);
  g.op('Reshape', [mu, g.int64('tokens', [-1, TOKENS, WIDTH])], {}, 'conditioning');
  g.output('conditioning', 'float32', ['batch', TOKENS, WIDTH]);
  return g.toBytes('demo adapter: μ_c = the face latent + a prompt-dependent colour tint, as 64 tokens of 768');
}

function unet(sigma: number): Uint8Array {
  const g = new GraphBuilder('unet');
  const z = g.input('sample', 'float32', ['batch', CH, GRID, GRID]);
  const t = g.input('timestep', 'float32', ['batch']);
  const ehs = g.input('encoder_hidden_states', 'float32', ['batch', TOKENS, WIDTH]);
  const mu = g.op('Reshape', [ehs, g.int64('latent_shape', [-1, CH, GRID, GRID])]);
  const acp = makeSchedule(SD15_SCHEDULER).alphasCumprod;
  const abar = g.op('Reshape', [g.op('Gather', [g.weight('alphas_cumprod', [acp.length], acp), g.op('Cast', [t], { to: { int: 7 } })], { axis: { int: 0 } }), g.int64('col', [-1, 1, 1, 1])]);
  const one = g.scalar('one', 1);
  const oneMinus = g.op('Sub', [one, abar]);
  // ε* = √(1−ᾱ)·(z − √ᾱ·μ) / (ᾱ·σ² + 1 − ᾱ)
  const numerator = g.op('Mul', [g.op('Sqrt', [oneMinus]), g.op('Sub', [z, g.op('Mul', [g.op('Sqrt', [abar]), mu])])]);
  const denominator = g.op('Add', [g.op('Mul', [abar, g.scalar('sigma_sq', sigma * sigma)]), oneMinus]);
  g.op('Div', [numerator, denominator], {}, 'out_sample');
  g.output('out_sample', 'float32', ['batch', CH, GRID, GRID]);
  return g.toBytes(`demo U-Net: the optimal noise predictor for N(μ_c, ${sigma}²I), ᾱ_t from the SD1.5 schedule`);
}

/** Builds the demo bundle in memory; the same options give the same bytes. */
export function buildDemoBundle(options: DemoOptions = {}): GeneratedBundle {
  const sigma = options.sigma ?? 0.15;
  const tint = options.tint ?? 0.2;
  const rng = new SeededRandom(options.seed ?? 7);
  const tok = tinyClipTokenizerFiles();
  const vocab = JSON.parse(tok.vocabJson) as Record<string, number>;
  const text = textEncoder(tok.vocabSize, rng);
  // The empty prompt is <|startoftext|> then 76 × <|endoftext|> (its padding).
  const bos = vocab[CLIP_SPECIAL_TOKENS.bos_token] as number;
  const eos = vocab[CLIP_SPECIAL_TOKENS.eos_token] as number;
  const emptySum = new Float32Array(TEXT_WIDTH);
  for (let j = 0; j < TEXT_WIDTH; j++) emptySum[j] = (text.table[bos * TEXT_WIDTH + j] as number) + 76 * (text.table[eos * TEXT_WIDTH + j] as number);
  const faceWidth = options.embedder?.width ?? THUMB * THUMB;
  const tokenizer = tinyTokenizerBundlePart(tok, TEXT_LENGTH);
  const files = new Map<string, Uint8Array>([
    ['text_encoder.onnx', text.bytes],
    ['image_encoder.onnx', imageEncoder()],
    ['face_embedder.onnx', options.embedder?.bytes ?? faceEmbedder()],
    ['adapter.onnx', adapter(faceWidth, emptySum, tint, rng)],
    ['unet.onnx', unet(sigma)],
    ['vae_encoder.onnx', vaeEncoder()],
    ['vae_decoder.onnx', vaeDecoder()],
    ...tokenizer.files,
  ]);
  if (options.detector) files.set(options.detector.file, options.detector.bytes);
  const signed = { channel_order: 'RGB' as const, divide_by: 255, mean: [0.5, 0.5, 0.5] as [number, number, number], std: [0.5, 0.5, 0.5] as [number, number, number] };
  const manifest: Manifest = {
    format: 'diffid-bundle',
    version: 1,
    name: 'demo',
    description:
      `Analytic demo (σ = ${sigma}): the U-Net is the exact optimal noise predictor for a Gaussian around the input face's latent. ` +
      'It does not understand language (a prompt only tints the colours) and makes no new faces. A correctness instrument and a working default.',
    image: { width: IMAGE, height: IMAGE },
    latent: { channels: CH, downscale: IMAGE / GRID, scaling_factor: 1 },
    scheduler: { ...SD15_SCHEDULER },
    tokenizer: tokenizer.spec,
    adapter: {
      architecture: 'analytic-demo',
      identity_tokens: TOKENS,
      text_tokens: TEXT_LENGTH,
      pooling: 'over_modalities',
      fused_sequence: ['identity'],
      conditioning_tokens: TOKENS,
      conditioning_width: WIDTH,
    },
    reference: { kind: 'aligned_face', face_fraction: 0.5 },
    // Guidance above 1 would extrapolate away from the zero-identity branch and scale the face's
    // contrast; this analytic model is exact at 1.
    defaults: { steps: 30, guidance_scale: 1 },
    models: {
      text_encoder: graphEntry('text_encoder.onnx', { input_ids: 'input_ids' }, { hidden_states: 'last_hidden_state' }),
      image_encoder: { ...graphEntry('image_encoder.onnx', { pixels: 'pixel_values' }, { embedding: 'image_embeds' }), preprocess: { ...signed, size: IMAGE, resize: 'shortest_side_center_crop' } },
      face_embedder: options.embedder?.entry ?? {
        ...graphEntry('face_embedder.onnx', { pixels: 'data' }, { embedding: 'fc1' }),
        preprocess: { ...ARCFACE_NORMALIZATION, size: 112, template: ARCFACE_TEMPLATE_112 },
      },
      ...(options.detector ? { face_detector: options.detector.entry } : {}),
      adapter: graphEntry('adapter.onnx', { face_embedding: 'face_embedding', image_embedding: 'image_embedding', text_embedding: 'text_embedding' }, { conditioning: 'conditioning' }),
      unet: graphEntry('unet.onnx', { sample: 'sample', timestep: 'timestep', encoder_hidden_states: 'encoder_hidden_states' }, { noise: 'out_sample' }),
      vae_encoder: { ...graphEntry('vae_encoder.onnx', { pixels: 'sample' }, { latent: 'latent_sample' }), output_kind: 'latent' },
      vae_decoder: graphEntry('vae_decoder.onnx', { latent: 'latent_sample' }, { pixels: 'sample' }),
    },
  };
  return { files, manifest };
}
