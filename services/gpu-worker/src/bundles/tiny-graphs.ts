// The tiny bundle's graphs: small widths, seeded weights, and the input/output signatures of real
// exports (docs/reference-values.md). The adapter is the paper's architecture (§3.2, eqs. 5–15).

import { SeededRandom, fillGaussian } from '@diffid/shared/diffusion';
import { GraphBuilder, type ElemType } from './onnx-graph.ts';

/** Widths of the tiny bundle; real SD1.5 would be text 768, cross-attention 768. */
export interface TinyDims {
  image: number;
  latentChannels: number;
  downscale: number;
  vocabSize: number;
  textLength: number;
  textWidth: number;
  imageEmbedding: number;
  faceEmbedding: number;
  clipImageSize: number;
  faceSize: number;
  attentionWidth: number;
  mlpHidden: number;
  conditioningWidth: number;
  unetChannels: number;
}

/** Export-format differences the pipeline must adapt to (docs/reference-values.md, "ONNX exports"). */
export interface ExportFlavor {
  inputIds: 'int32' | 'int64';
  timestep: 'float32_batch' | 'int64_batch' | 'float32_scalar';
  vaeEncoderOutput: 'latent' | 'mean_logvar';
}

export const DIFFUSERS_FLAVOR: ExportFlavor = { inputIds: 'int32', timestep: 'float32_batch', vaeEncoderOutput: 'latent' };
export const OPTIMUM_FLAVOR: ExportFlavor = { inputIds: 'int64', timestep: 'int64_batch', vaeEncoderOutput: 'mean_logvar' };

/** Seeded weight factory: N(0, gain²/fan_in) entries, drawn in call order. */
class Weights {
  private readonly rng: SeededRandom;
  constructor(seed: number) {
    this.rng = new SeededRandom(seed);
  }
  normal(dims: number[], fanIn: number, gain = 1): Float32Array {
    const data = fillGaussian(this.rng, new Float32Array(dims.reduce((a, b) => a * b, 1)));
    const s = gain / Math.sqrt(fanIn);
    for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) * s;
    return data;
  }
  constant(size: number, value: number): Float32Array {
    return new Float32Array(size).fill(value);
  }
}

/** x·W (no bias), W of shape [inDim, outDim]. */
function project(g: GraphBuilder, w: Weights, x: string, name: string, inDim: number, outDim: number): string {
  return g.op('MatMul', [x, g.weight(name, [inDim, outDim], w.normal([inDim, outDim], inDim))]);
}

/** x·W + b. */
function linear(g: GraphBuilder, w: Weights, x: string, name: string, inDim: number, outDim: number, out?: string): string {
  const b = g.weight(`${name}.bias`, [outDim], w.normal([outDim], 1, 0.1));
  return g.op('Add', [project(g, w, x, `${name}.weight`, inDim, outDim), b], {}, out);
}

/** CLIP text encoder signature: input_ids [B, L] → last_hidden_state [B, L, W]. */
export function textEncoderGraph(d: TinyDims, flavor: ExportFlavor, seed: number): Uint8Array {
  const g = new GraphBuilder('text_encoder');
  const w = new Weights(seed);
  const ids = g.input('input_ids', flavor.inputIds as ElemType, ['batch', d.textLength]);
  const tok = g.op('Gather', [g.weight('token_embedding', [d.vocabSize, d.textWidth], w.normal([d.vocabSize, d.textWidth], 1, 0.5)), ids], { axis: { int: 0 } });
  const pos = g.op('Add', [tok, g.weight('position_embedding', [d.textLength, d.textWidth], w.normal([d.textLength, d.textWidth], 1, 0.2))]);
  const h = g.op('Tanh', [linear(g, w, pos, 'mlp', d.textWidth, d.textWidth)]);
  const res = g.op('Add', [pos, h]);
  g.op('LayerNormalization', [res, g.weight('ln.weight', [d.textWidth], w.constant(d.textWidth, 1)), g.weight('ln.bias', [d.textWidth], w.constant(d.textWidth, 0))],
    { axis: { int: -1 }, epsilon: { float: 1e-5 } }, 'last_hidden_state');
  g.output('last_hidden_state', 'float32', ['batch', d.textLength, d.textWidth]);
  return g.toBytes('tiny CLIP text encoder: token + position embedding, one residual MLP, final LayerNorm');
}

/** Pools an image to 8×8, flattens and projects: a stand-in with an encoder's signature. */
function pooledEncoder(name: string, input: string, output: string, size: number, outDim: number, seed: number, doc: string): Uint8Array {
  const g = new GraphBuilder(name);
  const w = new Weights(seed);
  const x = g.input(input, 'float32', ['batch', 3, size, size]);
  const k = size / 8;
  const pooled = g.op('AveragePool', [x], { kernel_shape: { ints: [k, k] }, strides: { ints: [k, k] } });
  const flat = g.op('Flatten', [pooled], { axis: { int: 1 } });
  linear(g, w, g.op('Tanh', [linear(g, w, flat, 'fc1', 192, 64)]), 'fc2', 64, outDim, output);
  g.output(output, 'float32', ['batch', outDim]);
  return g.toBytes(doc);
}

/** CLIP image encoder signature: pixel_values [B, 3, 224, 224] → image_embeds [B, E]. */
export function imageEncoderGraph(d: TinyDims, seed: number): Uint8Array {
  return pooledEncoder('image_encoder', 'pixel_values', 'image_embeds', d.clipImageSize, d.imageEmbedding, seed,
    'tiny CLIP image encoder: 8×8 average pool, two-layer MLP');
}

/** ArcFace-style signature: data [B, 3, 112, 112] → fc1 [B, D]. */
export function faceEmbedderGraph(d: TinyDims, seed: number): Uint8Array {
  return pooledEncoder('face_embedder', 'data', 'fc1', d.faceSize, d.faceEmbedding, seed,
    'tiny face embedder: 8×8 average pool, two-layer MLP; D read from this graph by the loader');
}

/**
 * The Diff-ID adapter, eqs. 5–15, with the shape decisions of docs/adapter.md:
 * e'_arc = W_arc·e_arc, e'_i = W_i·e_i (5); e_img = [e'_arc; e'_i] as two tokens; e_max, e_avg
 * pool over those tokens; e_id = [e'_arc; e'_i; e_max; e_avg], four tokens (6); ẽ_id = W_s·e_id,
 * ẽ_t = W_s·e_t with one shared W_s (7); both cross-attention branches without softmax (8–12);
 * e_fused = [e_identity; e_attribute] along the token axis (13); e_refined = ReLU(W_2·ReLU(W_1·x
 * + b_1) + b_2) per token (14–15).
 */
export function adapterGraph(d: TinyDims, seed: number): Uint8Array {
  const g = new GraphBuilder('adapter');
  const w = new Weights(seed);
  const W = d.textWidth;
  const eArc = g.input('face_embedding', 'float32', ['batch', d.faceEmbedding]);
  const eI = g.input('image_embedding', 'float32', ['batch', d.imageEmbedding]);
  const eT = g.input('text_embedding', 'float32', ['batch', d.textLength, W]);
  const axis1 = g.int64('axis_1', [1]);
  // (5) projections into the text width, so that W_s can be shared with e_t.
  const arcP = g.op('Unsqueeze', [project(g, w, eArc, 'W_arc', d.faceEmbedding, W), axis1]);
  const imgP = g.op('Unsqueeze', [project(g, w, eI, 'W_i', d.imageEmbedding, W), axis1]);
  const eImg = g.op('Concat', [arcP, imgP], { axis: { int: 1 } });
  const eMax = g.op('ReduceMax', [eImg], { axes: { ints: [1] }, keepdims: { int: 1 } });
  const eAvg = g.op('ReduceMean', [eImg], { axes: { ints: [1] }, keepdims: { int: 1 } });
  // (6)
  const eId = g.op('Concat', [arcP, imgP, eMax, eAvg], { axis: { int: 1 } });
  // (7) one W_s for both branches.
  const Ws = g.weight('W_s', [W, W], w.normal([W, W], W));
  const idT = g.op('MatMul', [eId, Ws]);
  const tT = g.op('MatMul', [eT, Ws]);
  const scale = g.scalar('inv_sqrt_d', 1 / Math.sqrt(d.attentionWidth));
  // (8) e = (Q·Kᵀ/√d)·V, no softmax.
  const attend = (q: string, kv: string, branch: string): string => {
    const Q = project(g, w, q, `W_q_${branch}`, W, d.attentionWidth);
    const K = project(g, w, kv, `W_k_${branch}`, W, d.attentionWidth);
    const V = project(g, w, kv, `W_v_${branch}`, W, d.attentionWidth);
    const scores = g.op('Mul', [g.op('MatMul', [Q, g.op('Transpose', [K], { perm: { ints: [0, 2, 1] } })]), scale]);
    return g.op('MatMul', [scores, V]);
  };
  const eIdentity = attend(idT, tT, 'id'); // (9–10): ẽ_id queries ẽ_t
  const eAttribute = attend(tT, idT, 'attr'); // (11–12): ẽ_t queries ẽ_id
  // (13)
  const fused = g.op('Concat', [eIdentity, eAttribute], { axis: { int: 1 } });
  // (14–15)
  const h = g.op('Relu', [linear(g, w, fused, 'mlp.0', d.attentionWidth, d.mlpHidden)]);
  g.op('Relu', [linear(g, w, h, 'mlp.2', d.mlpHidden, d.conditioningWidth)], {}, 'conditioning');
  g.output('conditioning', 'float32', ['batch', 4 + d.textLength, d.conditioningWidth]);
  return g.toBytes('Diff-ID adapter (paper eqs. 5-15) at tiny widths with seeded weights');
}

/**
 * U-Net signature: (sample [B, C, h, w], timestep, encoder_hidden_states [B, N, W]) → out_sample.
 * One conv, a sinusoidal time embedding, one softmax cross-attention over the conditioning tokens,
 * SiLU, one conv back to C channels.
 */
export function unetGraph(d: TinyDims, flavor: ExportFlavor, conditioningTokens: number, seed: number, burnMatmuls = 0): Uint8Array {
  const g = new GraphBuilder('unet');
  const w = new Weights(seed);
  const C = d.latentChannels;
  const H = d.unetChannels;
  const sample = g.input('sample', 'float32', ['batch', C, 'height', 'width']);
  const timestep =
    flavor.timestep === 'float32_scalar'
      ? g.input('timestep', 'float32', [])
      : g.input('timestep', flavor.timestep === 'int64_batch' ? 'int64' : 'float32', ['batch']);
  const ehs = g.input('encoder_hidden_states', 'float32', ['batch', conditioningTokens, d.conditioningWidth]);
  const h1 = g.op('Conv', [sample, g.weight('conv_in.weight', [H, C, 3, 3], w.normal([H, C, 3, 3], C * 9)), g.weight('conv_in.bias', [H], w.constant(H, 0))],
    { pads: { ints: [1, 1, 1, 1] } });
  // Time embedding: t/1000 times four frequencies, sin and cos, projected to H channels.
  const tFloat = flavor.timestep === 'int64_batch' ? g.op('Cast', [timestep], { to: { int: 1 } }) : timestep;
  const tCol = g.op('Reshape', [tFloat, g.int64('shape_col', [-1, 1])]);
  const freqs = g.weight('time_freqs', [1, H / 2], Float32Array.from({ length: H / 2 }, (_, i) => Math.PI * 2 ** i / 1000));
  const phase = g.op('Mul', [tCol, freqs]);
  const temb = linear(g, w, g.op('Concat', [g.op('Sin', [phase]), g.op('Cos', [phase])], { axis: { int: 1 } }), 'time_proj', H, H);
  const tembMap = g.op('Unsqueeze', [temb, g.int64('axes_23', [2, 3])]);
  // Cross-attention: pixels query the conditioning tokens.
  const seq = g.op('Transpose', [g.op('Reshape', [h1, g.int64('shape_seq', [0, H, -1])])], { perm: { ints: [0, 2, 1] } });
  const Q = project(g, w, seq, 'attn.q', H, H);
  const K = project(g, w, ehs, 'attn.k', d.conditioningWidth, H);
  const V = project(g, w, ehs, 'attn.v', d.conditioningWidth, H);
  const scores = g.op('Mul', [g.op('MatMul', [Q, g.op('Transpose', [K], { perm: { ints: [0, 2, 1] } })]), g.scalar('attn.scale', 1 / Math.sqrt(H))]);
  const attended = g.op('MatMul', [g.op('Softmax', [scores], { axis: { int: -1 } }), V]);
  const back = g.op('Reshape', [g.op('Transpose', [attended], { perm: { ints: [0, 2, 1] } }), g.op('Shape', [h1])]);
  let h = g.op('Add', [g.op('Add', [h1, tembMap]), back]);
  if (burnMatmuls > 0) h = g.op('Add', [h, burn(g, new Weights(seed + 1000), sample, burnMatmuls)]);
  const act = g.op('Mul', [h, g.op('Sigmoid', [h])]);
  g.op('Conv', [act, g.weight('conv_out.weight', [C, H, 3, 3], w.normal([C, H, 3, 3], H * 9)), g.weight('conv_out.bias', [C], w.constant(C, 0))],
    { pads: { ints: [1, 1, 1, 1] } }, 'out_sample');
  g.output('out_sample', 'float32', ['batch', C, 'height', 'width']);
  return g.toBytes('tiny U-Net: conv, time embedding, cross-attention over the conditioning tokens, conv');
}

/**
 * Deliberate work for tests of slow graphs: a chain of 512×512 matrix products that depends on
 * the input (so it cannot be folded away at load time) and contributes exactly zero.
 */
function burn(g: GraphBuilder, w: Weights, input: string, count: number): string {
  const n = 512;
  const gate = g.op('Sigmoid', [g.op('ReduceMean', [input], { keepdims: { int: 0 } })]);
  let m = g.op('Mul', [g.weight('burn.start', [n, n], w.normal([n, n], n)), gate]);
  const step = g.weight('burn.step', [n, n], w.normal([n, n], n));
  for (let i = 0; i < count; i++) m = g.op('Tanh', [g.op('MatMul', [m, step])]);
  return g.op('Mul', [g.op('ReduceMean', [m], { keepdims: { int: 0 } }), g.scalar('burn.zero', 0)]);
}

/** VAE encoder signature: sample [B, 3, H, W] → latent_sample [B, C, H/f, W/f] (or mean‖logvar). */
export function vaeEncoderGraph(d: TinyDims, flavor: ExportFlavor, seed: number): Uint8Array {
  const g = new GraphBuilder('vae_encoder');
  const w = new Weights(seed);
  const f = d.downscale;
  const outC = flavor.vaeEncoderOutput === 'mean_logvar' ? 2 * d.latentChannels : d.latentChannels;
  const outName = flavor.vaeEncoderOutput === 'mean_logvar' ? 'latent_parameters' : 'latent_sample';
  const x = g.input('sample', 'float32', ['batch', 3, 'height', 'width']);
  g.op('Conv', [x, g.weight('patch.weight', [outC, 3, f, f], w.normal([outC, 3, f, f], 3 * f * f, 2)), g.weight('patch.bias', [outC], w.constant(outC, 0))],
    { kernel_shape: { ints: [f, f] }, strides: { ints: [f, f] } }, outName);
  g.output(outName, 'float32', ['batch', outC, 'latent_height', 'latent_width']);
  return g.toBytes(`tiny VAE encoder: one ${f}×${f} stride-${f} patch convolution`);
}

/** VAE decoder signature: latent_sample [B, C, h, w] → sample [B, 3, f·h, f·w] in [−1, 1]. */
export function vaeDecoderGraph(d: TinyDims, seed: number): Uint8Array {
  const g = new GraphBuilder('vae_decoder');
  const w = new Weights(seed);
  const f = d.downscale;
  const C = d.latentChannels;
  const z = g.input('latent_sample', 'float32', ['batch', C, 'latent_height', 'latent_width']);
  const up = g.op('ConvTranspose', [z, g.weight('unpatch.weight', [C, 3, f, f], w.normal([C, 3, f, f], C)), g.weight('unpatch.bias', [3], w.constant(3, 0))],
    { kernel_shape: { ints: [f, f] }, strides: { ints: [f, f] } });
  g.op('Tanh', [up], {}, 'sample');
  g.output('sample', 'float32', ['batch', 3, 'height', 'width']);
  return g.toBytes(`tiny VAE decoder: one ${f}×${f} stride-${f} transposed convolution, tanh`);
}
