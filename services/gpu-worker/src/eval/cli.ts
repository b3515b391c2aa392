// npm run eval -- --faces DIR [--bundle DIR] [--prompts FILE] [--inception FILE]
//   [--recognizer FILE] [--images N] [--steps N] [--frames N] [--json FILE]
// Measures a bundle (the embedded default when --bundle is left out) on a folder of face photos.
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { type FaceEmbedderEntry } from '@diffid/shared/bundle';
import { WORKING_MAX_SIDE, decodeRgb } from '@diffid/shared/image';
import { loadBundle } from '../runtime/bundle-loader.ts';
import { cliArgs, inputError, usageError } from '../bundles/cli-args.ts';
import { ensureDefaultBundle } from '../bundles/default-bundle.ts';
import { LinkError, linkEmbedder } from '../bundles/link-models.ts';
import { evalTable, evaluate, facePhotos } from './evaluate.ts';

const USAGE =
  'usage: npm run eval -- --faces DIR [--bundle DIR] [--prompts FILE] [--inception FILE] [--recognizer FILE] [--images N] [--steps N] [--frames N] [--json FILE]\n' +
  '  --steps defaults to the bundle\'s recommendation; --recognizer: a second ArcFace-style graph (FILE.json beside it may set its preprocess)';
// Declared with its type, so that the compiler knows a call to it does not return.
const fail: (message: string) => never = (message) => usageError(USAGE, message);
const values = cliArgs(USAGE, {
  faces: { type: 'string' },
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
if (!values.faces) fail('--faces DIR is required');
const photos = await facePhotos(values.faces as string);
if (photos.length === 0) fail(`${values.faces}: no JPEG, PNG or WebP photos`);
let recognizer: { path: string; entry: FaceEmbedderEntry } | undefined;
if (values.recognizer) {
  try {
    recognizer = { path: values.recognizer, entry: linkEmbedder(values.recognizer).entry };
  } catch (err) {
    inputError(err instanceof LinkError ? err.message : `--recognizer ${values.recognizer}: ${(err as Error).message}`);
  }
}
const dir = values.bundle ?? (await ensureDefaultBundle(await mkdtemp(join(tmpdir(), 'diffid-eval-')))).dir;
const bundle = await loadBundle(dir);
const prompts = values.prompts ? (await readFile(values.prompts, 'utf8')).split('\n').map((l) => l.trim()).filter(Boolean) : ['a portrait photo'];
const report = await evaluate(
  bundle,
  await Promise.all(photos.map(async (p) => ({ name: basename(p), image: await decodeRgb(new Uint8Array(await readFile(p)), basename(p), WORKING_MAX_SIDE) }))),
  {
    prompts,
    imagesPerPrompt: count('images', values.images, 1, 64),
    ...(values.steps === undefined ? {} : { steps: count('steps', values.steps, 1, Number.MAX_SAFE_INTEGER) }),
    morphFrames: count('frames', values.frames, 0, 64),
    ...(values.inception ? { inception: values.inception } : {}),
    ...(recognizer ? { recognizer } : {}),
  },
);
process.stdout.write(`${evalTable(report)}\n`);
if (values.json) await writeFile(values.json, `${JSON.stringify(report, null, 2)}\n`);
await bundle.release();
