// The PyTorch reference (services/gpu-worker/python): its own unit tests, and what its exporter
// writes checked against the service's TS-built adapter graph (same weights) and against
// IP-Adapter-FaceID's projection evaluated here in float64 — then loaded and run as a bundle.
// Also the service's guidance, DDIM step and VAE postprocess against diffusers' formulas run in
// torch, byte for byte.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t from 'tap';
import { classifierFreeGuidance, ddimArena, ddimStep, gaussianNoise } from '@diffid/shared/diffusion';
import { facePattern } from '@diffid/shared/testing';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { writeExportLayout } from '../src/bundles/export-layout.ts';
import { importExport } from '../src/bundles/import-export.ts';
import { buildTinyBundle } from '../src/bundles/tiny-bundle.ts';
import { openGraph, type Tensor } from '../src/runtime/onnx.ts';
import { generate } from '../src/pipelines/generate.ts';
import { signedToRgb } from '../src/vision/pixels.ts';
import { stageContext } from '../src/stages/context.ts';
import { NO_TORCH_PYTHON, torchPython } from '../src/bundles/torch-python.ts';
import { readManifestJson, replaceGraph, roundingTie, tempDir, tinyBundleDir } from './helpers.ts';

const PYTHON_DIR = fileURLToPath(new URL('../python/', import.meta.url));
const run = promisify(execFile);

const python = torchPython();
const skip = python ? false : `${NO_TORCH_PYTHON}: the PyTorch reference is not tested`;

async function py(...args: string[]): Promise<string> {
  const { stdout } = await run(python as string, args, { cwd: PYTHON_DIR, maxBuffer: 16 << 20 });
  return stdout;
}

/** Runs `code` in the torch Python with `input` as JSON on stdin; its stdout, parsed as JSON. */
async function torchJson<T>(code: string, input: unknown): Promise<T> {
  const child = execFile(python as string, ['-c', code], { maxBuffer: 16 << 20 });
  child.stdin?.end(JSON.stringify(input));
  const stdout = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`python exited with ${code}`))));
  });
  return JSON.parse(stdout) as T;
}

const params = { prompt: 'a portrait', negative_prompt: '', num_images: 1, steps: 4, guidance_scale: 3, seed: 9, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;

/** The three adapter feeds for a batch, every row drawn from its own seed. */
function adapterFeeds(D: number, E: number, L: number, W: number, rows: number, zeroFaceRow?: number): Record<string, Tensor> {
  const face = gaussianNoise(21, rows * D);
  if (zeroFaceRow !== undefined) face.fill(0, zeroFaceRow * D, (zeroFaceRow + 1) * D);
  return {
    face_embedding: { dtype: 'float32', data: face, dims: [rows, D] },
    image_embedding: { dtype: 'float32', data: gaussianNoise(22, rows * E), dims: [rows, E] },
    text_embedding: { dtype: 'float32', data: gaussianNoise(23, rows * L * W), dims: [rows, L, W] },
  };
}

function maxAbsDiff(a: Float32Array, b: Float32Array): { diff: number; scale: number } {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(a[i] as number));
  }
  return { diff, scale };
}

t.test('the Python unit tests pass (losses by hand, module layouts)', { skip }, async (t) => {
  // unittest reports on stderr; a failing test makes execFile reject with that report.
  const { stderr } = await run(python as string, ['-m', 'unittest', 'discover', '-s', 'tests', '-t', '.'], { cwd: PYTHON_DIR });
  const ran = Number(/Ran (\d+) tests?/.exec(stderr)?.[1] ?? 0);
  t.ok(ran >= 11, `unittest ran ${ran} tests`);
  t.match(stderr, /\nOK\s*$/);
});

t.test('the exported Diff-ID adapter agrees with the service-built graph holding the same weights, and serves as the bundle adapter', { skip }, async (t) => {
  const dir = await tinyBundleDir(t);
  const out = join(await tempDir(t), 'adapter.onnx');
  await py('-m', 'diffid_reference.export', 'diff-id', '--from-service-graph', join(dir, 'adapter.onnx'), '--out', out);
  t.same(JSON.parse(await readFile(out.replace(/\.onnx$/, '.json'), 'utf8')), (await readManifestJson(dir)).adapter, 'the sidecar is the tiny bundle\'s own adapter object');

  const before = await loadBundle(dir);
  t.teardown(() => before.release());
  const { faceEmbedding: D, imageEmbedding: E, textLength: L, textWidth: W } = before.dims;
  const exported = await openGraph(out, { executionProvider: 'cpu' });
  t.teardown(() => exported.release());
  const feeds = adapterFeeds(D, E, L, W, 3);
  const want = (await before.graphs.adapter.run(feeds)).conditioning as Tensor;
  const got = (await exported.run(feeds)).conditioning as Tensor;
  t.same(got.dims, want.dims);
  const { diff, scale } = maxAbsDiff(want.data as Float32Array, got.data as Float32Array);
  t.ok(diff <= 1e-5 * Math.max(1, scale), `max |torch export − service graph| = ${diff.toExponential(2)} on values up to ${scale.toFixed(2)}`);

  const baseline = await generate(stageContext(before), { images: { image: [facePattern(2, 64, 64)] }, params });
  const swapped = await tinyBundleDir(t);
  await replaceGraph(swapped, 'adapter', new Uint8Array(await readFile(out)));
  const after = await loadBundle(swapped);
  t.teardown(() => after.release());
  const result = await generate(stageContext(after), { images: { image: [facePattern(2, 64, 64)] }, params });
  const a = baseline.images[0]?.rgb.data as Uint8Array;
  const b = result.images[0]?.rgb.data as Uint8Array;
  let grey = 0;
  for (let i = 0; i < a.length; i++) grey = Math.max(grey, Math.abs((a[i] as number) - (b[i] as number)));
  t.ok(grey <= 1, `generate with the exported adapter: largest pixel difference ${grey} grey level(s)`);
});

// diffusers' guidance and DDIMScheduler.step (eta 0) in torch float32 — the formulas of
// bench/torch_host_step.py — on inputs passed exactly (every float32 is a JSON number exactly).
// ᾱ values are float32 numbers in [0.5, 1], where 1 − ᾱ is exact in float32 too, so the
// coefficients torch computes from float32 ᾱ are the ones ddim.ts rounds from float64.
const TORCH_STEP = `
import json, sys, torch
d = json.load(sys.stdin)
f = lambda k: torch.tensor(d[k], dtype=torch.float32)
u, c, sample = f("u"), f("c"), f("z")
a_t, a_prev = torch.tensor(d["a_t"], dtype=torch.float32), torch.tensor(d["a_prev"], dtype=torch.float32)
model_output = u + d["g"] * (c - u)
b_t = 1 - a_t
if d["prediction"] == "epsilon":
    pred_original_sample = (sample - b_t ** 0.5 * model_output) / a_t ** 0.5
    pred_epsilon = model_output
else:
    pred_original_sample = a_t ** 0.5 * sample - b_t ** 0.5 * model_output
    pred_epsilon = a_t ** 0.5 * model_output + b_t ** 0.5 * sample
prev = a_prev ** 0.5 * pred_original_sample + (1 - a_prev) ** 0.5 * pred_epsilon
print(json.dumps({"guided": model_output.tolist(), "prev": prev.tolist()}))
`;

t.test('guidance and the DDIM step are torch\'s float32 arithmetic, byte for byte, in the WebAssembly step too', { skip }, async (t) => {
  const n = 1001; // 250 vectors of four and a scalar remainder
  const [z, u, c] = [gaussianNoise(31, n), gaussianNoise(32, n), gaussianNoise(33, n)];
  const [aT, aPrev, g] = [0.6875, 0.8125, 7.5];
  for (const prediction of ['epsilon', 'v_prediction'] as const) {
    const torch = await torchJson<{ guided: number[]; prev: number[] }>(TORCH_STEP, { u: [...u], c: [...c], z: [...z], a_t: aT, a_prev: aPrev, g, prediction });
    const guided = classifierFreeGuidance(u, c, g);
    t.same([...guided], torch.guided, `${prediction}: guidance equals torch's`);
    const prev = ddimStep(z, guided, aT, aPrev, prediction);
    t.same([...prev], torch.prev, `${prediction}: ddimStep equals torch's`);
    const arena = ddimArena(2, n, 1);
    arena.sample.set(z);
    arena.modelOutput.set(u);
    arena.modelOutput.set(c, n);
    arena.step({ first: 0, images: 1, guidanceScale: g, prediction }, aT, aPrev);
    t.same([...arena.sample.subarray(0, n)], torch.prev, `${prediction}: the WebAssembly step equals torch's`);
  }
});

// diffusers' VaeImageProcessor.postprocess for output_type "pil": (x / 2 + 0.5).clamp(0, 1) in
// torch float32, then numpy's (x * 255).round().astype("uint8"), channels last.
const TORCH_POSTPROCESS = `
import json, sys, torch
d = json.load(sys.stdin)
x = torch.tensor(d["x"], dtype=torch.float32).reshape(1, 3, d["h"], d["w"])
image = (x / 2 + 0.5).clamp(0, 1)
image = image.cpu().permute(0, 2, 3, 1).float().numpy()
print(json.dumps((image * 255).round().astype("uint8").reshape(-1).tolist()))
`;

t.test('VAE output to RGB bytes is diffusers\' postprocess, byte for byte: float32, clamped, rounded half to even', { skip }, async (t) => {
  const [w, h] = [37, 11];
  const x = gaussianNoise(41, 3 * w * h).map((v) => v * 0.8);
  // Values whose float32 ×255 lands on a half (100.5, 101.5, 254.5), the ends and beyond them.
  const halves = [100, 101, 254].map(roundingTie);
  x.set([...halves, -1, 1, -1.5, 1.5, 0, -0], 0);
  const want = await torchJson<number[]>(TORCH_POSTPROCESS, { x: [...x], w, h });
  const got = signedToRgb(x, w, h);
  t.same([...got.data], want, `${want.length} bytes`);
  // x is planar: value k of plane 0 is byte 3k (red) of the output.
  t.same([0, 1, 2].map((k) => got.data[3 * k]), [100, 102, 254], 'halves round to even');
});

/** erf to 1.2e-7 (Numerical Recipes' erfc Chebyshev fit); JS has no Math.erf. */
function erf(x: number): number {
  const z = Math.abs(x);
  const u = 1 / (1 + 0.5 * z);
  const r = u * Math.exp(-z * z - 1.26551223 + u * (1.00002368 + u * (0.37409196 + u * (0.09678418 + u * (-0.18628806 + u * (0.27886807 + u * (-1.13520398 + u * (1.48851587 + u * (-0.82215223 + u * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

interface Weight {
  shape: number[];
  data: number[];
}

/** IP-Adapter-FaceID's adapter in float64: [text; LayerNorm(reshape(W2·GELU(W1·f/|f| + b1) + b2))]. */
function ipAdapterReference(w: Record<string, Weight>, face: Float32Array, text: Float32Array, L: number): number[] {
  const get = (k: string) => w[k] as Weight;
  const linear = (x: number[], k: string) => {
    const m = get(`${k}.weight`);
    const [outDim, inDim] = m.shape as [number, number];
    return Array.from({ length: outDim }, (_, o) => x.reduce((s, v, i) => s + v * (m.data[o * inDim + i] as number), get(`${k}.bias`).data[o] as number));
  };
  const norm = Math.hypot(...face) || 1;
  const h = linear(Array.from(face, (v) => v / norm), 'proj.0').map((v) => 0.5 * v * (1 + erf(v / Math.SQRT2)));
  const flat = linear(h, 'proj.2');
  const C = get('norm.weight').shape[0] as number;
  const tokens: number[] = [];
  for (let k = 0; k < flat.length / C; k++) {
    const row = flat.slice(k * C, (k + 1) * C);
    const mean = row.reduce((s, v) => s + v, 0) / C;
    const variance = row.reduce((s, v) => s + (v - mean) ** 2, 0) / C;
    row.forEach((v, j) => tokens.push(((v - mean) / Math.sqrt(variance + 1e-5)) * (get('norm.weight').data[j] as number) + (get('norm.bias').data[j] as number)));
  }
  return [...Array.from(text.subarray(0, L * C)), ...tokens];
}

t.test('the exported IP-Adapter-FaceID projection equals its formula, and an imported bundle with it generates', { skip }, async (t) => {
  const dir = await tempDir(t, 'diffid-ipadapter-');
  const tiny = buildTinyBundle();
  const { textLength: L } = { textLength: tiny.manifest.tokenizer.max_length };
  const C = tiny.manifest.adapter.conditioning_width;
  const D = 16;
  const E = 24;
  await py('-m', 'tests.fixtures', 'ip-checkpoint', '--face-dim', String(D), '--width', String(C), '--out', dir);
  const adapterPath = join(dir, 'adapter.onnx');
  await py('-m', 'diffid_reference.export', 'ip-adapter-faceid', '--checkpoint', join(dir, 'ip-adapter-faceid.bin'), '--image-dim', String(E), '--out', adapterPath);

  const graph = await openGraph(adapterPath, { executionProvider: 'cpu' });
  t.teardown(() => graph.release());
  t.same(graph.signature.inputs.map((i) => i.name), ['face_embedding', 'image_embedding', 'text_embedding'], 'every port of the contract, the unused image embedding included');
  const rows = 3;
  const feeds = adapterFeeds(D, E, L, C, rows, 2);
  const got = (await graph.run(feeds)).conditioning as Tensor;
  t.same(got.dims, [rows, L + 4, C]);
  const weights = JSON.parse(await readFile(join(dir, 'image_proj.json'), 'utf8')) as Record<string, Weight>;
  let worst = 0;
  for (let r = 0; r < rows; r++) {
    const face = (feeds.face_embedding?.data as Float32Array).subarray(r * D, (r + 1) * D);
    const text = (feeds.text_embedding?.data as Float32Array).subarray(r * L * C, (r + 1) * L * C);
    const want = ipAdapterReference(weights, face, text, L);
    const row = (got.data as Float32Array).subarray(r * (L + 4) * C, (r + 1) * (L + 4) * C);
    want.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - (row[i] as number)))));
  }
  t.ok(worst <= 1e-5, `max |graph − formula| = ${worst.toExponential(2)} over 3 rows, one of them the zero face of the unconditional branch`);

  const layout = await writeExportLayout(dir, tiny);
  const embedder = { file: 'face_embedder.onnx', bytes: tiny.files.get('face_embedder.onnx') as Uint8Array, entry: tiny.manifest.models.face_embedder, width: D };
  const manifest = await importExport({ from: layout.exportDir, out: join(dir, 'bundle'), adapter: adapterPath, imageEncoder: layout.imageEncoder, embedder, size: 64 });
  t.same(manifest.adapter, { architecture: 'ip-adapter-faceid', identity_tokens: 4, text_tokens: L, fused_sequence: ['attribute', 'identity'], conditioning_tokens: L + 4, conditioning_width: C }, 'the exporter\'s sidecar became the manifest\'s adapter');
  const bundle = await loadBundle(join(dir, 'bundle'));
  t.teardown(() => bundle.release());
  const result = await generate(stageContext(bundle), { images: { image: [facePattern(2, 64, 64)] }, params });
  t.equal(result.images.length, 1, 'generate runs with the IP-Adapter-FaceID adapter');
  t.equal(result.images[0]?.rgb.width, 64);
});
