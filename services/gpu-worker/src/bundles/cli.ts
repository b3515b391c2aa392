// npm run bundle -- --kind tiny|demo --out DIR [--detector FILE] [--embedder FILE]
//   tiny: [--flavor diffusers|optimum] [--seed N]      demo: [--sigma S] [--seed N]
// npm run bundle -- --kind import --from EXPORT_DIR --adapter FILE --image-encoder FILE --out DIR
//   [--detector FILE] [--embedder FILE] [--copy] [--size N]   (a diffusers/optimum ONNX folder)
// npm run bundle -- --kind full --out DIR [--size 512] [--scale 1] [--precision fp32|fp16] [--seed N]
//   [--embedder shipped|FILE] [--detector none|FILE] [--weights NAME=FILE …]
//                                                     SD 1.5 + Diff-ID built in PyTorch (docs/full-size.md)
// npm run bundle -- --check-colour A,B[,C…] --embedder FILE [--detector FILE]
//   which channel order the recognizer wants, on photos A, B of one person and others of others
import { cliArgs, inputError, usageError } from './cli-args.ts';
import { shippedFaceModels } from './default-bundle.ts';
import { buildDemoBundle } from './demo-bundle.ts';
import { checkColourOrder, colourOrderReport } from './colour-check.ts';
import { buildFullBundle, fullBuildProblems, type Precision } from './full-bundle.ts';
import { importExport } from './import-export.ts';
import { linkDetector, linkEmbedder } from './link-models.ts';
import { buildTinyBundle } from './tiny-bundle.ts';
import { DIFFUSERS_FLAVOR, OPTIMUM_FLAVOR } from './tiny-graphs.ts';
import { writeBundle, type GeneratedBundle } from './write-bundle.ts';

const USAGE =
  'usage: npm run bundle -- --kind tiny|demo --out DIR [--detector FILE] [--embedder FILE]\n' +
  '         tiny: [--flavor diffusers|optimum] [--seed N]   demo: [--sigma S] [--seed N]\n' +
  '       npm run bundle -- --kind import --from EXPORT_DIR --adapter FILE --image-encoder FILE --out DIR\n' +
  '         [--detector FILE] [--embedder FILE] [--copy] [--size N]\n' +
  '       npm run bundle -- --kind full --out DIR [--size 512] [--scale 1] [--precision fp32|fp16] [--seed N]\n' +
  '         [--embedder shipped|FILE] [--detector none|FILE] [--weights NAME=FILE …]\n' +
  '         (needs Python with torch and onnx; --weights loads a state dict for unet, vae, text_encoder,\n' +
  '         image_encoder, face_embedder or adapter instead of seeded weights; docs/full-size.md)\n' +
  '       npm run bundle -- --check-colour A.jpg,B.jpg[,C.jpg…] --embedder FILE [--detector FILE]\n' +
  '         A and B: one person; any others: other people';

// Declared with its type, so that the compiler knows a call to it does not return.
const fail: (message: string) => never = (message) => usageError(USAGE, message);
const values = cliArgs(USAGE, {
  kind: { type: 'string' },
  out: { type: 'string' },
  flavor: { type: 'string', default: 'diffusers' },
  seed: { type: 'string' },
  sigma: { type: 'string' },
  detector: { type: 'string' },
  embedder: { type: 'string' },
  'check-colour': { type: 'string' },
  from: { type: 'string' },
  adapter: { type: 'string' },
  'image-encoder': { type: 'string' },
  copy: { type: 'boolean', default: false },
  size: { type: 'string' },
  scale: { type: 'string' },
  precision: { type: 'string' },
  weights: { type: 'string', multiple: true },
});

if (values['check-colour'] !== undefined) {
  if (!values.embedder) fail('--check-colour needs the recognizer to check: --embedder FILE');
  try {
    const detector = values.detector ? linkDetector(values.detector) : (await shippedFaceModels()).detector;
    const rows = await checkColourOrder(values.embedder, detector, values['check-colour'].split(','));
    process.stdout.write(`${colourOrderReport(values.embedder, rows)}\n`);
    process.exit(0);
  } catch (err) {
    inputError((err as Error).message);
  }
}

if (!values.out) fail('--out DIR is required');
if (values.kind === 'import') {
  if (!values.from || !values.adapter || !values['image-encoder']) fail('--kind import needs --from EXPORT_DIR, --adapter FILE and --image-encoder FILE');
  const size = values.size === undefined ? undefined : Number(values.size);
  if (size !== undefined && !(Number.isInteger(size) && size >= 64 && size <= 4096 && size % 8 === 0)) fail('--size must be a multiple of 8 in 64…4096');
  try {
    const shipped = await shippedFaceModels();
    const manifest = await importExport({
      from: values.from,
      out: values.out,
      adapter: values.adapter,
      imageEncoder: values['image-encoder'],
      detector: values.detector ? linkDetector(values.detector) : shipped.detector,
      embedder: values.embedder ? linkEmbedder(values.embedder) : shipped.embedder,
      copy: values.copy,
      ...(size ? { size } : {}),
    });
    process.stdout.write(`imported ${values.from} into ${values.out} (${manifest.image.width}×${manifest.image.height}, ${values.copy ? 'graphs copied' : 'graphs linked'})\n`);
    process.exit(0);
  } catch (err) {
    inputError((err as Error).message);
  }
}
if (values.kind === 'full') {
  const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
  const options = { size: num(values.size), scale: num(values.scale), precision: values.precision as Precision | undefined, seed: num(values.seed), weights: values.weights };
  const problems = fullBuildProblems(options);
  if (problems.length > 0) fail(problems.join('; '));
  const started = Date.now();
  try {
    const { manifest, record } = await buildFullBundle({
      out: values.out,
      ...Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)),
      ...(values.embedder ? { embedder: values.embedder } : {}),
      ...(values.detector ? { detector: values.detector } : {}),
      onLog: (line) => process.stderr.write(`  ${line}\n`),
    });
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    process.stdout.write(`wrote the ${manifest.name} bundle to ${values.out} (${manifest.image.width}×${manifest.image.height}, ${record.precision}, seed ${record.seed}; models built in ${record.seconds.total} s, ${seconds} s in all)\n`);
    process.exit(0);
  } catch (err) {
    inputError((err as Error).message);
  }
}
if (values.kind !== 'tiny' && values.kind !== 'demo') fail(`--kind must be "tiny", "demo", "import" or "full" (got ${values.kind === undefined ? 'nothing' : `"${values.kind}"`})`);
const flavors = { diffusers: DIFFUSERS_FLAVOR, optimum: OPTIMUM_FLAVOR } as const;
const flavor = flavors[values.flavor as keyof typeof flavors];
if (!flavor) fail(`--flavor must be one of ${Object.keys(flavors).join(', ')}`);
const seed = values.seed === undefined ? undefined : Number(values.seed);
if (seed !== undefined && (!Number.isSafeInteger(seed) || seed < 0)) fail('--seed must be a non-negative integer');
const sigma = values.sigma === undefined ? undefined : Number(values.sigma);
if (sigma !== undefined && !(sigma > 0 && sigma < 10)) fail('--sigma must be a number in (0, 10)');

let embedder: ReturnType<typeof linkEmbedder> | undefined;
let detector: ReturnType<typeof linkDetector> | undefined;
try {
  embedder = values.embedder ? linkEmbedder(values.embedder) : undefined;
  detector = values.detector ? linkDetector(values.detector) : undefined;
} catch (err) {
  inputError((err as Error).message);
}

let bundle: GeneratedBundle;
if (values.kind === 'demo') {
  bundle = buildDemoBundle({ sigma, seed, embedder, detector });
} else {
  bundle = buildTinyBundle({ seed, flavor, dims: embedder ? { faceEmbedding: embedder.width } : {} });
  if (embedder) {
    bundle.files.set(embedder.file, embedder.bytes);
    bundle.manifest.models.face_embedder = embedder.entry;
  }
  if (detector) {
    bundle.files.set(detector.file, detector.bytes);
    bundle.manifest.models.face_detector = detector.entry;
  }
}
const manifest = await writeBundle(values.out, bundle);
const linked = [embedder && `embedder ${values.embedder}`, detector && `detector ${values.detector}`].filter(Boolean).join(', ');
process.stdout.write(`wrote the ${manifest.name} bundle to ${values.out}${linked ? ` (linked: ${linked})` : ''}\n`);
