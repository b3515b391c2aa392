import { readFile, writeFile } from 'node:fs/promises';
import { decodeRgb, encodePng } from '@diffid/shared/image';
import { cosineSimilarity } from '@diffid/shared';
import { loadBundle } from './src/bundle-loader.ts';
import { stageContext, inferenceMs } from './src/stages/context.ts';
import { generate } from './src/pipelines/generate.ts';
import { morph } from './src/pipelines/morph.ts';
import { findFace } from './src/stages/find-face.ts';
import { embedFaces } from './src/stages/embed-face.ts';
const b = await loadBundle('/tmp/demoreal');
const ctx = stageContext(b);
const P = '/work/shared/faces/photos/';
const load = async (f: string) => decodeRgb(await readFile(P + f));
const names = ['fr_obama.jpg', 'fr_obama2.jpg', 'fr_biden.jpg', 'max_Bryan.png', 'max_Luciano.png', 'fr_two_people.jpg', 'nasa_apollo11_crew.jpg', 'nasa_apollo11_aldrin_visor.jpg'];
const emb: Record<string, Float32Array> = {};
for (const n of names) {
  try { const f = await findFace(ctx, await load(n), n); console.log(n, 'faces', f.faces, 'score', f.score.toFixed(3), f.box.map(v => v.toFixed(0)).join(',')); emb[n] = (await embedFaces(ctx, [f.crop]))[0]!; }
  catch (e) { console.log(n, 'ERR', (e as Error).message); }
}
const c = (a: string, bb: string) => cosineSimilarity(emb[a]!, emb[bb]!).toFixed(3);
console.log('obama~obama2', c('fr_obama.jpg','fr_obama2.jpg'), 'obama~biden', c('fr_obama.jpg','fr_biden.jpg'), 'obama2~biden', c('fr_obama2.jpg','fr_biden.jpg'), 'bryan~luciano', c('max_Bryan.png','max_Luciano.png'));
let t0 = performance.now();
const g = await generate(ctx, await load('max_Luciano.png'), { prompt: 'a portrait', negative_prompt: '', num_images: 4, steps: 30, guidance_scale: 1, seed: 1 }, () => {});
console.log('generate ms', (performance.now()-t0).toFixed(0), 'sims', g.images.map(i => i.similarity?.toFixed(3)));
for (const [i, im] of g.images.entries()) await writeFile(`/tmp/gen${i}.png`, await encodePng(im.image));
t0 = performance.now();
const m = await morph(ctx, await load('max_Luciano.png'), await load('max_Bryan.png'), { alphas: [0, 0.25, 0.5, 0.75, 1], interpolation: 'slerp', prompt: '', steps: 50, seed: 0 }, 8, () => {});
console.log('morph ms', (performance.now()-t0).toFixed(0), 'ab', m.similarityAB.toFixed(3), m.frames.map(f => `${f.alpha}: ${f.similarityA?.toFixed(3)}/${f.similarityB?.toFixed(3)}`).join('  '));
for (const [i, f] of m.frames.entries()) await writeFile(`/tmp/morph${i}.png`, await encodePng(f.image));
