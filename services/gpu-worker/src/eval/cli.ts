// npm run eval -- --faces DIR [--bundle DIR] [--prompts FILE] [--inception FILE]
//   [--recognizer FILE] [--images N] [--steps N] [--frames N] [--json FILE]
// npm run eval -- --morph-strategies A B --out DIR [--bundle DIR] [--frames N] [--steps N]
// Measures a bundle (the embedded default when --bundle is left out) on a folder of face photos,
// or draws the paper's Fig. 8 for two photos: a row per morph strategy, a column per factor.
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { type FaceEmbedderEntry } from '@diffid/shared/bundle';
import { WORKING_MAX_SIDE, decodeRgb, encodeGrid } from '@diffid/shared/image';
import { morphAlphas } from '@diffid/shared/job-params';
import { loadBundle } from '../runtime/bundle-loader.ts';
import { cliArgsAndFiles, inputError, usageError } from '../bundles/cli-args.ts';
import { ensureDefaultBundle } from '../bundles/default-bundle.ts';
import { LinkError, linkEmbedder } from '../bundles/link-models.ts';
import { evalTable, evaluate, facePhotos, morphStrategies, strategyGrid } from './evaluate.ts';

const USAGE =
  'usage: npm run eval -- --faces DIR [--bundle DIR] [--prompts FILE] [--inception FILE] [--recognizer FILE] [--images N] [--steps N] [--frames N] [--json FILE]\n' +
  '       npm run eval -- --morph-strategies A.jpg B.jpg --out DIR [--bundle DIR] [--frames N] [--steps N] [--prompts FILE]\n' +
  '  --steps defaults to the bundle\'s recommendation; --recognizer: a second ArcFace-style graph (FILE.json beside it may set its preprocess)';
// Declared with its type, so that the compiler knows a call to it does not return.
const fail: (message: string) => never = (message) => usageError(USAGE, message);
const { values, files } = cliArgsAndFiles(USAGE, {
  faces: { type: 'string' },
  'morph-strategies': { type: 'boolean' },
  out: { type: 'string' },
  bundle: { type: 'string' },
  prompts: { type: 'string' },
  inception: { type: 'string' },
  recognizer: { type: 'string' },
  images: { type: 'string', default: '4' },
  steps: { type: 'string' },
  frames: { type: 'string', default: '5' },
  json: { type: 'string' },
});
const count = (name: string, v: string, min: number, max: number) => {
  const n = /^[0-9]{1,4}$/.test(v) ? Number(v) : NaN;
  return n >= min && n <= max ? n : fail(`--${name} must be a whole number in ${min}…${max}`);
};
const strategies = values['morph-strategies'] === true;
if (strategies ? files.length !== 2 || !values.out : !values.faces || files.length > 0) {
  fail(strategies ? '--morph-strategies takes two photos, A and B, and --out DIR' : '--faces DIR or --morph-strategies A B is required');
}
const dir = values.bundle ?? (await ensureDefaultBundle(await mkdtemp(join(tmpdir(), 'diffid-eval-')))).dir;
const bundle = await loadBundle(dir);
const prompts = values.prompts ? (await readFile(values.prompts, 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean) : ['a portrait photo'];
const steps = values.steps === undefined ? {} : { steps: count('steps', values.steps, 1, Number.MAX_SAFE_INTEGER) };
const decoded = async (p: string) => {
  try {
    return await decodeRgb(new Uint8Array(await readFile(p)), basename(p), WORKING_MAX_SIDE);
  } catch (err) {
    return inputError(`${p}: ${(err as Error).message}`);
  }
};
if (strategies) await strategyFigure(files[0] as string, files[1] as string, values.out as string);
else await measure(values.faces as string);
await bundle.release();

/** The paper's Fig. 8 for A and B: DIR/morph-strategies.png, and the numbers in .json. */
async function strategyFigure(a: string, b: string, out: string): Promise<void> {
  const alphas = morphAlphas({ frames: count('frames', values.frames, 2, 64) });
  const rows = await morphStrategies(bundle, await decoded(a), await decoded(b), { alphas, prompt: prompts[0] ?? '', seed: 0, ...steps });
  await mkdir(out, { recursive: true });
  const png = await encodeGrid(strategyGrid(rows, alphas));
  await writeFile(join(out, 'morph-strategies.png'), png);
  const numbers = { a: basename(a), b: basename(b), alphas, rows: rows.map(({ strategy, toA, toB }) => ({ strategy, toA, toB })) };
  await writeFile(join(out, 'morph-strategies.json'), `${JSON.stringify(numbers, null, 2)}\n`);
  process.stdout.write(`${rows.map((r) => `${r.strategy}: similarity to A ${r.toA.map((v) => v.toFixed(2)).join(' ')}; to B ${r.toB.map((v) => v.toFixed(2)).join(' ')}`).join('\n')}\nwrote ${join(out, 'morph-strategies.png')}\n`);
}

/** FS%, FID, FIQ and morph pacing over a folder of photos. */
async function measure(faces: string): Promise<void> {
  const photos = await facePhotos(faces);
  if (photos.length === 0) fail(`${faces}: no JPEG, PNG or WebP photos`);
  let recognizer: { path: string; entry: FaceEmbedderEntry } | undefined;
  if (values.recognizer) {
    try {
      recognizer = { path: values.recognizer, entry: linkEmbedder(values.recognizer).entry };
    } catch (err) {
      inputError(err instanceof LinkError ? err.message : `--recognizer ${values.recognizer}: ${(err as Error).message}`);
    }
  }
  const report = await evaluate(bundle, await Promise.all(photos.map(async (p) => ({ name: basename(p), image: await decoded(p) }))), {
    prompts,
    imagesPerPrompt: count('images', values.images, 1, 64),
    ...steps,
    morphFrames: count('frames', values.frames, 0, 64),
    ...(values.inception ? { inception: values.inception } : {}),
    ...(recognizer ? { recognizer } : {}),
  });
  process.stdout.write(`${evalTable(report)}\n`);
  if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
}
