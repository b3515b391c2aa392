// npm run eval -- --faces DIR [--bundle DIR] [--prompts FILE] [--inception FILE]
//   [--recognizer FILE] [--images N] [--steps N] [--frames N] [--json FILE]
// npm run eval -- --morph-strategies A B --out DIR [--bundle DIR] [--frames N] [--steps N]
// npm run eval -- --morph-attack --morphs ZIP_OR_DIR --probes DIR [--recognizer FILE ...]
//   [--threshold T] [--fmr F] --out DIR [--bundle DIR]
// Measures a bundle (the embedded default when --bundle is left out) on a folder of face photos,
// draws the paper's Fig. 8 for two photos (a row per morph strategy, a column per factor), or
// scores a batch's morphs against probe photos of their contributors (morph-attack.ts).
import { existsSync } from 'node:fs';
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
import { evaluationRecognizerPath } from '../bundles/shipped-models.ts';
import { evalTable, evaluate, facePhotos, morphStrategies, strategyGrid } from './evaluate.ts';
import { morphAttack } from './morph-attack.ts';

const USAGE =
  'usage: npm run eval -- --faces DIR [--bundle DIR] [--prompts FILE] [--inception FILE] [--recognizer FILE] [--images N] [--steps N] [--frames N] [--json FILE]\n' +
  '       npm run eval -- --morph-strategies A.jpg B.jpg --out DIR [--bundle DIR] [--frames N] [--steps N] [--prompts FILE]\n' +
  '       npm run eval -- --morph-attack --morphs RESULTS.zip|DIR --probes DIR [--recognizer FILE ...] [--threshold T] [--fmr 0.001] --out DIR [--bundle DIR]\n' +
  '  --probes: one folder per subject, named as the manifest names them; τ comes from their bona fide pairs at --fmr when there are enough, else --threshold\n' +
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
  recognizer: { type: 'string', multiple: true },
  'morph-attack': { type: 'boolean' },
  morphs: { type: 'string' },
  probes: { type: 'string' },
  threshold: { type: 'string' },
  fmr: { type: 'string', default: '0.001' },
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
const attack = values['morph-attack'] === true;
if (attack) {
  if (!values.morphs || !values.probes || !values.out || files.length > 0) fail('--morph-attack takes --morphs RESULTS.zip|DIR, --probes DIR and --out DIR');
} else if (strategies ? files.length !== 2 || !values.out : !values.faces || files.length > 0) {
  fail(strategies ? '--morph-strategies takes two photos, A and B, and --out DIR' : '--faces DIR, --morph-strategies A B or --morph-attack is required');
}
if (!attack && (values.recognizer?.length ?? 0) > 1) fail('--recognizer is given once, except with --morph-attack');
/** A decimal in an open or closed range, as the flag's text. */
const decimal = (name: string, v: string, min: number, max: number) => {
  const n = /^-?[0-9]{1,6}(\.[0-9]{1,12})?$/.test(v) ? Number(v) : NaN;
  return n >= min && n <= max ? n : fail(`--${name} must be a decimal in ${min}…${max}`);
};
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
if (attack) await attackReport();
else if (strategies) await strategyFigure(files[0] as string, files[1] as string, values.out as string);
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

/** The --recognizer graphs, linked as `npm run bundle` links them (sidecar, channel order and all). */
function linkedRecognizers(): Array<{ path: string; entry: FaceEmbedderEntry }> {
  return (values.recognizer ?? []).map((path) => {
    try {
      return { path, entry: linkEmbedder(path).entry };
    } catch (err) {
      return inputError(err instanceof LinkError ? err.message : `--recognizer ${path}: ${(err as Error).message}`);
    }
  });
}

/**
 * The recognizer the project ships for evaluation (face-api's, which no bundle conditions on),
 * when `npm run models` has rebuilt it; without it the report says so on stderr and goes on.
 */
function shippedRecognizer(): Array<{ path: string; entry: FaceEmbedderEntry; name: string }> {
  const path = evaluationRecognizerPath();
  if (!existsSync(path)) {
    process.stderr.write(`eval: the shipped evaluation recognizer ${path} is missing (npm run models rebuilds it); scoring without it\n`);
    return [];
  }
  return [{ path, entry: linkEmbedder(path).entry, name: 'face-api dlib ResNet (shipped)' }];
}

/** The morphing-attack report of a batch's morphs (morph-attack.ts). */
async function attackReport(): Promise<void> {
  const threshold = values.threshold === undefined ? undefined : decimal('threshold', values.threshold, -1, 1);
  const fmr = decimal('fmr', values.fmr, 1e-9, 0.5);
  let report;
  try {
    report = await morphAttack(bundle, {
      morphs: values.morphs as string,
      probes: values.probes as string,
      recognizers: [...shippedRecognizer(), ...linkedRecognizers()],
      ...(threshold === undefined ? {} : { threshold }),
      fmr,
      out: values.out as string,
      log: (line) => process.stderr.write(`eval: ${line}\n`),
    });
  } catch (err) {
    return inputError((err as Error).message);
  }
  const f = (v: number | null) => (v === null ? '—' : v.toFixed(3));
  for (const r of report.recognizers) {
    process.stdout.write(`${r.name}: τ ${r.threshold.toFixed(3)} (${r.threshold_source === 'probes' ? `probes, FMR ${r.fmr}` : '--threshold'}), MMPMR ${f(r.mmpmr)}, ProdAvg-MMPMR ${f(r.prodavg_mmpmr)}, RMMR ${f(r.rmmr)}, TMR ${f(r.tmr)}\n`);
  }
  process.stdout.write(`${report.morphs} morphs${report.skipped.length ? ` (${report.skipped.length} left out: no probes)` : ''}; wrote ${report.files.join(', ')} in ${values.out}\n`);
}

/** FS%, FID, FIQ and morph pacing over a folder of photos. */
async function measure(faces: string): Promise<void> {
  const photos = await facePhotos(faces);
  if (photos.length === 0) fail(`${faces}: no JPEG, PNG or WebP photos`);
  const recognizer = linkedRecognizers()[0];
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
