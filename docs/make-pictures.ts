// Makes the pictures in docs/images with the embedded default — the demo diffusion with the
// shipped BlazeFace detector and recognizer — from the two CC0 portraits in
// ../shared/faces/photos, as uploaded: the detector finds and aligns each face.
//   node --conditions=diffid-source --import tsx docs/make-pictures.ts
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MorphParams } from '@diffid/shared/contract';
import { decodeRgb, encodeAnimation, encodeGrid, encodeImage, encodePng } from '@diffid/shared/image';
import { buildDefaultBundle, loadBundle, writeBundle } from '@diffid/gpu-worker';
import type { Rgb } from '../services/gpu-worker/src/vision/pixels.ts';
import { generate } from '../services/gpu-worker/src/pipelines/generate.ts';
import { morph } from '../services/gpu-worker/src/pipelines/morph.ts';
import { stageContext } from '../services/gpu-worker/src/stages/context.ts';
import { morphStrategies, strategyGrid } from '../services/gpu-worker/src/eval/evaluate.ts';

const PHOTOS = join(import.meta.dirname, '../../shared/faces/photos');

function row(images: Rgb[]): Rgb {
  const h = images[0]!.height;
  const w = images.reduce((s, i) => s + i.width, 0);
  const data = new Uint8Array(w * h * 3);
  let x0 = 0;
  for (const img of images) {
    for (let y = 0; y < h; y++) data.set(img.data.subarray(y * img.width * 3, (y + 1) * img.width * 3), (y * w + x0) * 3);
    x0 += img.width;
  }
  return { data, width: w, height: h };
}

const dir = await mkdtemp(join(tmpdir(), 'diffid-pictures-'));
await writeBundle(dir, await buildDefaultBundle());
const bundle = await loadBundle(dir);
const luciano = await decodeRgb(await readFile(join(PHOTOS, 'max_Luciano.png')));
const bryan = await decodeRgb(await readFile(join(PHOTOS, 'max_Bryan.png')));

const gen = await generate(stageContext(bundle), { images: { image: [luciano] }, params: { prompt: 'a portrait photo', negative_prompt: '', num_images: 4, steps: 30, guidance_scale: 1, seed: 1, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } });
// A morph's parameters as the API settles a form that gives only the factors (openapi.yaml's MorphForm).
const morphParams: Omit<MorphParams, 'alphas'> = { strategy: 'slerp', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal', prompt: '', steps: 50, seed: 0, pacing: 'linear', background: 'morph', animation: [], fps: 12, boomerang: false };
const m = await morph(stageContext(bundle, { maxBatch: 8 }), { images: { image_a: luciano, image_b: bryan }, params: { ...morphParams, alphas: [0, 0.25, 0.5, 0.75, 1] } });
await writeFile(join(import.meta.dirname, 'images/generate.png'), await encodePng(row(gen.images.map((g) => g.rgb))));
await writeFile(join(import.meta.dirname, 'images/morph-strip.png'), await encodePng(row(m.images.map((f) => f.rgb))));
// The animation: 24 evenly paced frames, forward and back at 12 frames a second.
const frames = Array.from({ length: 24 }, (_, i) => i / 23);
const clip = await morph(stageContext(bundle, { maxBatch: 8 }), { images: { image_a: luciano, image_b: bryan }, params: { ...morphParams, alphas: frames, pacing: 'even' } });
const webp = await encodeAnimation(clip.images.map((f) => f.rgb), { format: 'webp', fps: 12, boomerang: true });
await writeFile(join(import.meta.dirname, 'images/morph.webp'), webp.bytes);
// The paper's Fig. 8 as `npm run eval -- --morph-strategies` draws it, kept as JPEG (a tenth the bytes).
const alphas = [0, 0.25, 0.5, 0.75, 1];
const strategies = await morphStrategies(bundle, luciano, bryan, { alphas, prompt: '', seed: 0, steps: 50 });
const grid = await encodeGrid(strategyGrid(strategies, alphas));
await writeFile(join(import.meta.dirname, 'images/morph-strategies.jpg'), await encodeImage(await decodeRgb(grid), 'jpeg', 85));
process.stdout.write(
  `strategies: ${strategies.map((r) => `${r.strategy} A ${r.toA.map((v) => v.toFixed(2)).join(' ')} / B ${r.toB.map((v) => v.toFixed(2)).join(' ')}`).join('; ')}\n` +
  `generate similarities ${gen.images.map((g) => g.facts.arcface_similarity?.toFixed(3)).join(', ')}\n` +
    `morph A→B: ${m.images.map(({ facts: f }) => `α ${f.alpha}: ${f.arcface_similarity_a?.toFixed(3)}/${f.arcface_similarity_b?.toFixed(3)}`).join('  ')}\n` +
    `animation: ${webp.frames} frames, ${webp.bytes.length} bytes; pacing evenness ${clip.facts.pacing_evenness?.toFixed(4)} (first, linear pass ${clip.facts.pacing_evenness_linear?.toFixed(4)})\n`,
);
await bundle.release();
await rm(dir, { recursive: true, force: true });
