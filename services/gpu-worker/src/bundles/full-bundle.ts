// `npm run bundle -- --kind full --out DIR`: SD 1.5 with the Diff-ID adapter at full size (or any
// width scale), seeded random weights, as a bundle (docs/full-size.md). The PyTorch reference
// builds and exports every model (services/gpu-worker/python, diffid_reference.build_full) into
// DIR/export — a diffusers/optimum ONNX export folder plus diffid/ (adapter, CLIP image encoder,
// IResNet-100 recognizer) — and importExport makes the bundle from it in DIR: the export's graphs
// and weight files, adapter, image encoder and built recognizer linked by relative symlinks (DIR
// moves as one piece; no weights are stored twice), the tokenizer and the shipped detector copied,
// every file's sha256 in the manifest, external data included.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, readdir, readlink, rename, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MANIFEST_FILE, validateManifest, type FaceDetectorEntry, type FaceEmbedderEntry, type Manifest } from '@diffid/shared/bundle';
import { shippedFaceModels } from './default-bundle.ts';
import { importExport } from './import-export.ts';
import { LinkError, linkDetector, linkEmbedder, type LinkedModel } from './link-models.ts';
import { NO_TORCH_PYTHON, torchPython } from './torch-python.ts';

/** services/gpu-worker/python, from src/bundles or dist/bundles alike. */
export const PYTHON_DIR = fileURLToPath(new URL('../../python/', import.meta.url));

/** build_full's exit status when its Python lacks torch or onnx. */
const NO_TORCH_EXIT = 3;

/** The folder inside the bundle directory that holds the export the bundle links to. */
export const EXPORT_FOLDER = 'export';

export type Precision = 'fp32' | 'fp16';

export interface FullBuildOptions {
  /** Image side in pixels, a multiple of 64 (default 512). */
  size?: number;
  /** Width scale in (0, 1] (default 1: SD 1.5's own widths). */
  scale?: number;
  precision?: Precision;
  seed?: number;
  /** Size the adapter for a recognizer of this width and build no IResNet. */
  faceDim?: number;
  /** `NAME=FILE` state dicts loaded instead of seeded weights (build_full's WEIGHT_NAMES). */
  weights?: string[];
  /** Progress lines of the build (one per model). */
  onLog?: (line: string) => void;
}

/** What diffid/build.json records (diffid_reference/build_full.py). */
export interface FullBuildRecord {
  scale: number;
  size: number;
  precision: Precision;
  seed: number;
  widths: { text: number; conditioning: number; image_embedding: number; face_embedding: number };
  embedder: string;
  /** The state dict files loaded instead of seeded weights, by model. */
  weights: Record<string, string>;
  tokenizer: { vocab_size: number; merges: number; bos: number; eos: number };
  files: Record<string, { file: string; parameters: number; bytes: number; external_data?: string }>;
  seconds: Record<string, number>;
}

/** A problem with the build that the user fixes (no torch, bad arguments): its message says how. */
export class FullBuildError extends Error {
  override name = 'FullBuildError';
}

function splitWeights(w: string): { name: string; file: string } {
  const at = w.indexOf('=');
  return at < 0 ? { name: '', file: '' } : { name: w.slice(0, at), file: w.slice(at + 1) };
}

/** Checks the options as build_full does, so that a mistake costs no Python start. */
export function fullBuildProblems(o: FullBuildOptions): string[] {
  const problems: string[] = [];
  if (o.size !== undefined && !(Number.isInteger(o.size) && o.size >= 64 && o.size <= 2048 && o.size % 64 === 0)) problems.push('--size must be a multiple of 64 in 64…2048 (latents divisible by 8)');
  if (o.scale !== undefined && !(o.scale > 0 && o.scale <= 1)) problems.push('--scale must be a number in (0, 1]');
  if (o.precision !== undefined && o.precision !== 'fp32' && o.precision !== 'fp16') problems.push('--precision must be fp32 or fp16');
  if (o.seed !== undefined && !(Number.isSafeInteger(o.seed) && o.seed >= 0)) problems.push('--seed must be a non-negative integer');
  for (const w of o.weights ?? []) {
    const { name, file } = splitWeights(w);
    if (!name || !file) problems.push(`--weights takes NAME=FILE (got "${w}")`);
    else if (!existsSync(file)) problems.push(`--weights ${name}=${file}: no such file`);
  }
  return problems;
}

/** Runs diffid_reference.build_full into `exportDir`; returns its build record. */
export async function buildFullExport(exportDir: string, o: FullBuildOptions = {}, python: string | undefined = torchPython()): Promise<FullBuildRecord> {
  const problems = fullBuildProblems(o);
  if (problems.length > 0) throw new FullBuildError(problems.join('; '));
  if (!python) throw new FullBuildError(`${NO_TORCH_PYTHON}: --kind full builds its models in PyTorch`);
  const args = ['-m', 'diffid_reference.build_full', '--out', resolve(exportDir)];
  if (o.size !== undefined) args.push('--size', String(o.size));
  if (o.scale !== undefined) args.push('--scale', String(o.scale));
  if (o.precision !== undefined) args.push('--precision', o.precision);
  if (o.seed !== undefined) args.push('--seed', String(o.seed));
  if (o.faceDim !== undefined) args.push('--face-dim', String(o.faceDim));
  // Absolute: build_full runs in PYTHON_DIR.
  for (const { name, file } of (o.weights ?? []).map(splitWeights)) args.push('--weights', `${name}=${resolve(file)}`);
  const child = spawn(python, args, { cwd: PYTHON_DIR, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let pending = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    pending += d.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) o.onLog?.(line);
  });
  const code = await new Promise<number | null>((done, fail) => {
    child.on('error', fail);
    child.on('close', done);
  });
  if (code === NO_TORCH_EXIT) throw new FullBuildError(`${NO_TORCH_PYTHON}: ${python} said: ${stderr.trim()}`);
  if (code !== 0) throw new FullBuildError(`diffid_reference.build_full exited with status ${code}:\n${stderr.trim().split('\n').slice(-20).join('\n')}`);
  return JSON.parse(stdout) as FullBuildRecord;
}

export interface FullImportOptions {
  /** The build_full export folder (inside `out` for a self-contained bundle). */
  exportDir: string;
  out: string;
  /** Image side; default the export's unet/config.json sample_size × 8. */
  size?: number;
  /** Default: the export's IResNet-100 (diffid/face_embedder.onnx). */
  embedder?: LinkedModel<FaceEmbedderEntry> & { width: number };
  /** Default: none (inputs are taken as aligned portraits). */
  detector?: LinkedModel<FaceDetectorEntry>;
  record?: FullBuildRecord;
}

/** Replaces the absolute symlinks importExport made under `out` by relative ones. */
async function relativeLinks(out: string, files: string[]): Promise<void> {
  for (const file of files) {
    const path = join(out, file);
    if (!(await lstat(path)).isSymbolicLink()) continue;
    await linkInPlace(path, resolve(dirname(path), await readlink(path)));
  }
}

/** Replaces `path` (a copy of `source`, or a link to it) by a relative symlink to `source`. */
async function linkInPlace(path: string, source: string): Promise<void> {
  const tmp = `${path}.relinking`;
  await symlink(relative(dirname(path), source), tmp);
  await rename(tmp, path);
}

/** The bundle from a build_full export: importExport, then relative links and the manifest's name. */
export async function importFullExport(o: FullImportOptions): Promise<Manifest> {
  const exportDir = resolve(o.exportDir);
  const record = o.record ?? (JSON.parse(await readFile(join(exportDir, 'diffid/build.json'), 'utf8')) as FullBuildRecord);
  const builtEmbedder = join(exportDir, 'diffid/face_embedder.onnx');
  if (!o.embedder && !existsSync(builtEmbedder)) throw new LinkError(`${exportDir} was built for a linked recognizer (--face-dim ${record.widths.face_embedding}); give it with --embedder`);
  const embedder = o.embedder ?? linkEmbedder(builtEmbedder);
  if (embedder.width !== record.widths.face_embedding) {
    throw new LinkError(`the recognizer's embedding is ${embedder.width} wide, but the export's adapter takes ${record.widths.face_embedding}; build with --face-dim ${embedder.width}`);
  }
  const imported = await importExport({
    from: exportDir,
    out: o.out,
    adapter: join(exportDir, 'diffid/adapter.onnx'),
    imageEncoder: join(exportDir, 'diffid/image_encoder.onnx'),
    embedder,
    ...(o.detector ? { detector: o.detector } : {}),
    ...(o.size ? { size: o.size } : {}),
  });
  const graphs = Object.values(imported.models).flatMap((e) => [e.file, ...(('external_data' in e && e.external_data) || []).map((d) => d.file)]);
  await relativeLinks(o.out, graphs);
  // importExport copies the adapter, the image encoder and the embedder (1.5 GB at full size);
  // when the export is the bundle's own, they are the export's files: linked instead.
  if (!relative(resolve(o.out), exportDir).startsWith('..')) {
    const own = [
      ['adapter.onnx', 'diffid/adapter.onnx'],
      ['image_encoder.onnx', 'diffid/image_encoder.onnx'],
      ...(o.embedder ? [] : [['face_embedder.onnx', 'diffid/face_embedder.onnx']]),
    ];
    for (const [file, source] of own as Array<[string, string]>) await linkInPlace(join(o.out, file), join(exportDir, source));
  }
  const what = record.scale === 1 ? 'full size' : `width scale ${record.scale}`;
  const manifest = validateManifest({
    ...imported,
    name: `full-${record.scale}-${record.precision}`,
    description:
      `SD 1.5 with the Diff-ID adapter at ${what}, ${record.precision}, seeded random weights (seed ${record.seed}): ` +
      `built by diffid_reference.build_full into ${EXPORT_FOLDER}/ (npm run bundle -- --kind full; docs/full-size.md). Its images are noise; it measures the real architecture's cost.`,
  });
  await writeFile(join(o.out, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

export interface FullBundleOptions extends FullBuildOptions {
  out: string;
  /** `undefined`: the built IResNet-100; `"shipped"`: the shipped 512-d recognizer; else a model file. */
  embedder?: string;
  /** `undefined`: the shipped BlazeFace; `"none"`: no detector; else a model file. */
  detector?: string;
  python?: string;
}

/** Builds the export into out/export, then the bundle in out. `out` must be absent or empty. */
export async function buildFullBundle(o: FullBundleOptions): Promise<{ manifest: Manifest; record: FullBuildRecord }> {
  const problems = fullBuildProblems(o);
  if (problems.length > 0) throw new FullBuildError(problems.join('; '));
  if (existsSync(o.out) && (await readdir(o.out)).length > 0) throw new FullBuildError(`--out ${o.out} is not empty; --kind full writes a new bundle into an empty or absent folder`);
  // The face models first: a missing shipped model or an unreadable file is found before the build.
  const shipped = o.embedder === 'shipped' || o.detector === undefined ? await shippedFaceModels() : undefined;
  const embedder = o.embedder === undefined ? undefined : o.embedder === 'shipped' ? shipped?.embedder : linkEmbedder(o.embedder);
  const detector = o.detector === 'none' ? undefined : o.detector === undefined ? shipped?.detector : linkDetector(o.detector);
  await mkdir(o.out, { recursive: true });
  const exportDir = join(o.out, EXPORT_FOLDER);
  const record = await buildFullExport(exportDir, { ...o, ...(embedder ? { faceDim: embedder.width } : {}) }, o.python ?? torchPython());
  const manifest = await importFullExport({ exportDir, out: o.out, record, ...(embedder ? { embedder } : {}), ...(detector ? { detector } : {}) });
  return { manifest, record };
}
