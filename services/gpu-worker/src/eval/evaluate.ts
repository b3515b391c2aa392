// The paper's measures of a bundle on a folder of face photos (§4.1): for each face, N images per
// prompt with fixed seeds; FS% under the bundle's recognizer (per face and overall) and the share
// of outputs in which a face is found; FID against the photos when an Inception feature graph is
// given, and FIQ = 100·FS%/FID; for morphs between consecutive faces, identity to A and B along
// the frames and how evenly they travel. With a second recognizer, FS% under it too: a score from
// the recognizer the model was conditioned on is known to run high.
import { readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type FaceEmbedderEntry } from '@diffid/shared/bundle';
import type { MorphStrategy } from '@diffid/shared/contract';
import type { GridFigure } from '@diffid/shared/image';
import { cosineSimilarity } from '@diffid/shared/diffusion';
import { settleJob } from '@diffid/shared/job-params';
import { componentSchema } from '@diffid/shared/openapi';
import type { LoadedBundle } from '../runtime/bundle-loader.ts';
import { openGraph, type Graph } from '../runtime/onnx.ts';
import { normalizeToChw, resizeRgb, type Rgb } from '../vision/pixels.ts';
import { generate } from '../pipelines/generate.ts';
import { morph } from '../pipelines/morph.ts';
import { stageContext } from '../stages/context.ts';
import { largestFaceCrop, locateFaces } from '../stages/find-face.ts';
import { faceSimilarityPercent, fiq, frechetDistance, gaussianOf, morphPacing } from './metrics.ts';

/** The most images one generate job makes (the contract's num_images maximum). */
const MAX_NUM_IMAGES = (componentSchema('GenerateForm') as { properties: { num_images: { maximum: number } } }).properties.num_images.maximum;

export interface EvalOptions {
  prompts: string[];
  imagesPerPrompt: number;
  /** DDIM steps; left out: the bundle's recommendation, else the service's default. */
  steps?: number;
  morphFrames: number;
  /** An Inception-style feature graph (one image input NCHW in [−1, 1], one feature output). */
  inception?: string;
  /** A second face recognizer to report FS% with; `entry` says how to crop and normalise for it. */
  recognizer?: { path: string; entry: FaceEmbedderEntry };
}

export interface FaceReport {
  face: string;
  fsPercent: number | null;
  /** FS% under the second recognizer, when one is given. */
  fsPercentSecond: number | null;
  outputs: number;
  /** Outputs in which the bundle's detector finds a face. */
  withFace: number;
}

export interface MorphReport {
  a: string;
  b: string;
  toA: number[];
  toB: number[];
  travel: number;
  unevenness: number;
}

export interface EvalReport {
  bundle: string;
  /** The second recognizer's file, when one is given. */
  recognizer: string | null;
  faces: FaceReport[];
  fsPercent: number | null;
  fsPercentSecond: number | null;
  detectedShare: number;
  fid: number | null;
  fiq: number | null;
  morphs: MorphReport[];
}

/** Image files of a folder, by name. */
export async function facePhotos(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((f) => /\.(jpe?g|png|webp)$/i.test(f)).sort().map((f) => join(dir, f));
}

async function features(path: string, images: Rgb[]): Promise<Float32Array[]> {
  const graph = await openGraph(path, { executionProvider: 'cpu' });
  try {
    const input = graph.signature.inputs[0];
    const output = graph.signature.outputs[0];
    if (!input || !output) throw new Error(`${path}: a feature graph needs one input and one output`);
    const size = typeof input.shape[2] === 'number' ? input.shape[2] : 299;
    const rows: Float32Array[] = [];
    for (const img of images) {
      const data = normalizeToChw(resizeRgb(img, size, size, 'bicubic'), { channel_order: 'RGB', divide_by: 255, mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5] });
      const out = await graph.run({ [input.name]: { dtype: 'float32', data, dims: [1, 3, size, size] } });
      rows.push(Float32Array.from(out[output.name]?.data as Float32Array));
    }
    return rows;
  } finally {
    await graph.release();
  }
}

/**
 * Embeds the largest face of an image, found by the bundle's detector, with a recognizer — the
 * bundle's own or a linked one — aligned and normalised as its entry says (null: no face).
 */
export async function embedLargestFace(bundle: LoadedBundle, graph: Graph, entry: FaceEmbedderEntry, image: Rgb): Promise<Float32Array | null> {
  const pre = entry.preprocess;
  const crop = await largestFaceCrop(stageContext(bundle), image, pre);
  if (!crop) return null;
  // Port names as the manifest (or linkEmbedder) maps them; an embedder entry always has both.
  const input = entry.inputs.pixels as string;
  const out = await graph.run({ [input]: { dtype: 'float32', data: normalizeToChw(crop, pre), dims: [1, 3, pre.size, pre.size] } });
  return Float32Array.from(out[entry.outputs.embedding as string]?.data as Float32Array);
}

/** What settleJob needs to settle parameters as the API does: the files, the bundle's defaults. */
const settling = (bundle: LoadedBundle, files: Record<string, Rgb[]>) => ({ files, bundle: { defaults: bundle.manifest.defaults ?? {} } });

/** Runs the evaluation; `photos` are decoded images with their names. */
export async function evaluate(bundle: LoadedBundle, photos: Array<{ name: string; image: Rgb }>, o: EvalOptions): Promise<EvalReport> {
  // Parameters settled as the API settles a request's (the bundle's defaults where not given);
  // generate takes at most the contract's num_images a job, so a prompt's images run in chunks.
  const context = (files: Record<string, Rgb[]>) => settling(bundle, files);
  const generateParams = (image: Rgb, prompt: string, count: number, seed: number) =>
    settleJob('generate', { prompt, num_images: count, seed, ...(o.steps === undefined ? {} : { steps: o.steps }) }, context({ image: [image] })).params;
  const steps = photos[0] ? generateParams(photos[0].image, 'a', 1, 0).steps : 0;
  const faces: FaceReport[] = [];
  const generated: Rgb[] = [];
  let outputs = 0;
  let withFace = 0;
  const allPairs: number[] = [];
  const allSecond: number[] = [];
  const second = o.recognizer ? { graph: await openGraph(o.recognizer.path, { executionProvider: 'cpu' }), entry: o.recognizer.entry } : null;
  for (const { name, image } of photos) {
    const sims: number[] = [];
    const secondSims: number[] = [];
    const source = second ? await embedLargestFace(bundle, second.graph, second.entry, image) : null;
    let n = 0;
    let found = 0;
    for (const prompt of o.prompts) {
      const images = [];
      for (let seed = 0; seed < o.imagesPerPrompt; seed += MAX_NUM_IMAGES) {
        const params = generateParams(image, prompt, Math.min(MAX_NUM_IMAGES, o.imagesPerPrompt - seed), seed);
        images.push(...(await generate(stageContext(bundle), { images: { image: [image] }, params })).images);
      }
      for (const img of images) {
        n++;
        generated.push(img.rgb);
        // Found by the detector itself (the job's score may fall back to the canvas layout).
        if ((await locateFaces(stageContext(bundle), img.rgb)).length > 0) found++;
        const s = img.facts.arcface_similarity;
        if (typeof s === 'number') sims.push(s);
        if (second && source) {
          const e = await embedLargestFace(bundle, second.graph, second.entry, img.rgb);
          if (e) secondSims.push(cosineSimilarity(e, source));
        }
      }
    }
    outputs += n;
    withFace += found;
    allPairs.push(...sims);
    allSecond.push(...secondSims);
    faces.push({ face: name, fsPercent: faceSimilarityPercent(sims), fsPercentSecond: second ? faceSimilarityPercent(secondSims) : null, outputs: n, withFace: found });
  }
  await second?.graph.release();
  // Each output's similarity is to its own source face, as the pipeline scored it.
  const fsPercent = faceSimilarityPercent(allPairs);
  let fid: number | null = null;
  if (o.inception) {
    const real = await features(o.inception, photos.map((p) => p.image));
    const fake = await features(o.inception, generated);
    fid = frechetDistance(gaussianOf(real), gaussianOf(fake));
  }
  const morphs: MorphReport[] = [];
  for (let i = 0; i + 1 < photos.length && o.morphFrames >= 2; i++) {
    const a = photos[i] as { name: string; image: Rgb };
    const b = photos[i + 1] as { name: string; image: Rgb };
    const { params } = settleJob('morph', { frames: o.morphFrames, prompt: o.prompts[0] ?? '', steps, seed: 0 }, context({ image_a: [a.image], image_b: [b.image] }));
    const m = await morph(stageContext(bundle), { images: { image_a: a.image, image_b: b.image }, params });
    const toA = m.images.map((f) => f.facts.arcface_similarity_a ?? 0);
    const toB = m.images.map((f) => f.facts.arcface_similarity_b ?? 0);
    const pacing = morphPacing(toA, toB);
    morphs.push({ a: a.name, b: b.name, toA, toB, travel: pacing.travel, unevenness: pacing.unevenness });
  }
  const fsPercentSecond = second ? faceSimilarityPercent(allSecond) : null;
  return { bundle: bundle.manifest.name, recognizer: o.recognizer ? basename(o.recognizer.path) : null, faces, fsPercent, fsPercentSecond, detectedShare: outputs ? withFace / outputs : 0, fid, fiq: fiq(fsPercent, fid), morphs };
}

/** The report as a markdown table. */
export function evalTable(r: EvalReport): string {
  const f = (v: number | null, d = 1) => (v === null ? '—' : v.toFixed(d));
  const second = r.recognizer !== null;
  const lines = [
    `bundle ${r.bundle}: FS% ${f(r.fsPercent)}${second ? ` (${r.recognizer}: ${f(r.fsPercentSecond)})` : ''}, faces found in ${(100 * r.detectedShare).toFixed(0)} % of outputs, FID ${f(r.fid, 2)}, FIQ ${f(r.fiq, 2)}`,
    '',
    `| face | FS% |${second ? ` FS% by ${r.recognizer} |` : ''} outputs | with a face |`,
    `|---|---|${second ? '---|' : ''}---|---|`,
    ...r.faces.map((x) => `| ${x.face} | ${f(x.fsPercent)} |${second ? ` ${f(x.fsPercentSecond)} |` : ''} ${x.outputs} | ${x.withFace} |`),
  ];
  if (r.morphs.length > 0) {
    lines.push('', '| morph | similarity to A along the frames | to B | travel | unevenness |', '|---|---|---|---|---|');
    for (const m of r.morphs) lines.push(`| ${m.a} → ${m.b} | ${m.toA.map((v) => v.toFixed(2)).join(' ')} | ${m.toB.map((v) => v.toFixed(2)).join(' ')} | ${m.travel.toFixed(2)} | ${m.unevenness.toFixed(2)} |`);
  }
  return lines.join('\n');
}

/** The morph strategies, in the contract's order. */
export const MORPH_STRATEGIES = (componentSchema('MorphForm') as { properties: { strategy: { enum: MorphStrategy[] } } }).properties.strategy.enum;

/** One strategy's row of the paper's Fig. 8: its frames, and each frame's similarity to A and to B. */
export interface StrategyRow {
  strategy: MorphStrategy;
  frames: Rgb[];
  toA: number[];
  toB: number[];
}

/**
 * Morphs A into B at the same factors by every strategy, as the paper's Fig. 8 compares them;
 * parameters are settled as the API settles a request's.
 */
export async function morphStrategies(bundle: LoadedBundle, a: Rgb, b: Rgb, o: { alphas: number[]; prompt: string; seed: number; steps?: number }): Promise<StrategyRow[]> {
  const rows: StrategyRow[] = [];
  for (const strategy of MORPH_STRATEGIES) {
    const fields = { alphas: o.alphas.join(','), strategy, prompt: o.prompt, seed: o.seed, ...(o.steps === undefined ? {} : { steps: o.steps }) };
    const { params } = settleJob('morph', fields, settling(bundle, { image_a: [a], image_b: [b] }));
    const m = await morph(stageContext(bundle), { images: { image_a: a, image_b: b }, params });
    rows.push({ strategy, frames: m.images.map((f) => f.rgb), toA: m.images.map((f) => f.facts.arcface_similarity_a ?? 0), toB: m.images.map((f) => f.facts.arcface_similarity_b ?? 0) });
  }
  return rows;
}

/** The figure of strategy rows: a row per strategy, a column per factor, each frame's similarities under it. */
export function strategyGrid(rows: StrategyRow[], alphas: number[]): GridFigure {
  return {
    tiles: rows.map((r) => r.frames),
    rows: rows.map((r) => r.strategy),
    columns: alphas.map((x) => `α = ${x.toFixed(2)}`),
    captions: rows.map((r) => r.toA.map((s, i) => `A ${s.toFixed(2)} · B ${(r.toB[i] ?? 0).toFixed(2)}`)),
  };
}
