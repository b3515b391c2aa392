// `npm run bundle -- --kind full`: SD 1.5's whole architecture with the Diff-ID adapter, built in
// PyTorch (diffid_reference.build_full) at width scale 1/16 and 64 px — every layer of the
// full-size models, narrow — in float32 and float16. The bundle loads with its external data
// listed and hashed, generate and morph run on it, and the served U-Net agrees with torch's.
import { execFile } from 'node:child_process';
import { readFile, readlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { gaussianNoise } from '@diffid/shared/diffusion';
import { facePattern } from '@diffid/shared/testing';
import { loadBundle, sha256File, type LoadedBundle } from '../src/runtime/bundle-loader.ts';
import type { Tensor } from '../src/runtime/onnx.ts';
import { PYTHON_DIR, type FullBuildRecord } from '../src/bundles/full-bundle.ts';
import { torchReference } from '../src/bundles/full-reference.ts';
import { NO_TORCH_PYTHON, torchPython } from '../src/bundles/torch-python.ts';
import { generate } from '../src/pipelines/generate.ts';
import { morph } from '../src/pipelines/morph.ts';
import { stageContext } from '../src/stages/context.ts';
import { morphParams, tempDir } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);
const python = torchPython();
const skip = python ? false : `${NO_TORCH_PYTHON}: the full-architecture bundle is not built`;

const SCALE = 0.0625;
const SIZE = 64;
/** max |ONNX Runtime − torch float32| on the U-Net's output (values of order 1). */
const TOLERANCE = { fp32: 1e-3, fp16: 2e-2 } as const;

const bundleCli = (args: string[]) => run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', ...args], { cwd: ROOT, maxBuffer: 16 << 20 });
const params = { prompt: 'a photo of a person', negative_prompt: '', num_images: 1, steps: 3, guidance_scale: 3, seed: 4, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;

function worst(a: Float32Array, b: Float32Array): { diff: number; scale: number; finite: boolean } {
  let diff = 0;
  let scale = 0;
  let finite = true;
  for (let i = 0; i < a.length; i++) {
    finite &&= Number.isFinite(a[i] as number);
    diff = Math.max(diff, Math.abs((a[i] as number) - (b[i] as number)));
    scale = Math.max(scale, Math.abs(b[i] as number));
  }
  return { diff, scale, finite };
}

function spread(data: Uint8Array): number {
  let min = 255;
  let max = 0;
  for (const v of data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  return max - min;
}

async function unetParity(t: Test, bundle: LoadedBundle, precision: 'fp32' | 'fp16'): Promise<void> {
  const { conditioningTokens: N, conditioningWidth: C, latentChannels, latentHeight: h, latentWidth: w } = bundle.dims;
  const feeds: Record<string, Tensor> = {
    sample: { dtype: 'float32', data: gaussianNoise(61, 2 * latentChannels * h * w), dims: [2, latentChannels, h, w] },
    timestep: { dtype: 'float32', data: Float32Array.from([981, 1]), dims: [2] },
    encoder_hidden_states: { dtype: 'float32', data: gaussianNoise(62, 2 * N * C), dims: [2, N, C] },
  };
  const served = ((await bundle.graphs.unet.run(feeds)).out_sample as Tensor).data as Float32Array;
  const { output: reference } = await torchReference(join(bundle.dir, 'export/diffid/build.json'), 'unet', feeds);
  const { diff, scale, finite } = worst(served, reference);
  t.ok(finite, 'the served U-Net output is finite');
  t.ok(scale > 0.1, `torch's output is of order one (max |x| = ${scale.toFixed(3)}): every layer of the seeded weights matters`);
  t.ok(diff <= TOLERANCE[precision], `U-Net parity, ${precision}: max |onnxruntime − torch| = ${diff.toExponential(2)} (≤ ${TOLERANCE[precision]})`);
}

for (const precision of ['fp32', 'fp16'] as const) {
  t.test(`--kind full at width scale 1/16, ${precision}: loads, external data hashed, generate and morph run, the U-Net matches torch`, { skip }, async (t) => {
    const dir = await tempDir(t, 'diffid-full-');
    const out = join(dir, 'bundle');
    // In float32 the U-Net's weights come from a state dict file (as a user's checkpoint would),
    // here the reference U-Net's under another seed; parity below then holds for those weights.
    const weights: string[] = [];
    if (precision === 'fp32') {
      const file = join(dir, 'diffusion_pytorch_model.safetensors');
      const script = `from diffid_reference.build_full import Widths, build_module\nfrom diffid_reference.safetensors_io import save_file\nsave_file(build_module("unet", Widths.of(${SCALE}), 77).state_dict(), ${JSON.stringify(file)})`;
      await run(python as string, ['-c', script], { cwd: PYTHON_DIR });
      weights.push('--weights', `unet=${file}`);
    }
    const started = Date.now();
    const { stdout, stderr } = await bundleCli(['--kind', 'full', '--out', out, '--size', String(SIZE), '--scale', String(SCALE), '--precision', precision, '--seed', '5', '--detector', 'none', ...weights]);
    t.match(stdout, new RegExp(`wrote the full-${SCALE}-${precision} bundle to`), `${((Date.now() - started) / 1000).toFixed(1)} s to build and bundle`);
    t.match(stderr, /unet: [\d,]+ parameters/, 'per-model progress on stderr');

    const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8'));
    const record = JSON.parse(await readFile(join(out, 'export/diffid/build.json'), 'utf8')) as FullBuildRecord;
    t.same([record.scale, record.precision, record.seed, record.embedder], [SCALE, precision, 5, 'iresnet100']);
    t.same(Object.keys(record.weights), precision === 'fp32' ? ['unet'] : [], 'the state dict files loaded, recorded for the torch reference');
    const external = manifest.models.unet.external_data as Array<{ file: string; sha256: string }>;
    t.same(external.map((d) => d.file), ['unet/model.onnx_data'], 'the U-Net\'s weights are external data, listed');
    t.equal(external[0]?.sha256, await sha256File(join(out, 'unet/model.onnx_data')), 'and hashed');
    t.equal(await readlink(join(out, 'unet/model.onnx_data')), '../export/unet/model.onnx_data', 'linked relatively into the bundle\'s own export folder');
    t.equal(await readlink(join(out, 'unet/model.onnx')), '../export/unet/model.onnx');
    t.same(await Promise.all(['adapter.onnx', 'image_encoder.onnx', 'face_embedder.onnx'].map((f) => readlink(join(out, f)))), ['export/diffid/adapter.onnx', 'export/diffid/image_encoder.onnx', 'export/diffid/face_embedder.onnx'], 'the export\'s own adapter, image encoder and recognizer linked too: no weights stored twice');
    t.equal(manifest.models.vae_encoder.output_kind, 'mean_logvar');
    t.equal(manifest.adapter.conditioning_tokens, 81);
    t.equal(manifest.models.face_detector, undefined, '--detector none');
    const vocab = JSON.parse(await readFile(join(out, 'tokenizer/vocab.json'), 'utf8')) as Record<string, number>;
    t.same([Object.keys(vocab).length, vocab['<|startoftext|>'], vocab['<|endoftext|>']], [49408, 49406, 49407], 'CLIP\'s vocabulary size and special-token ids');

    const bundle = await loadBundle(out);
    t.teardown(() => bundle.release());
    t.equal(bundle.ports.unet.inputs.sample.dtype, precision === 'fp16' ? 'float16' : 'float32');
    t.equal(bundle.dims.faceEmbedding, record.widths.face_embedding, 'the built IResNet-100 is the embedder');
    const ids = bundle.tokenizer.encode(params.prompt).ids;
    t.ok(ids[0] === 49406 && Math.max(...ids) === 49407 && ids.every((id) => id < 49408), 'token ids fit the text encoder\'s 49 408 rows');

    await unetParity(t, bundle, precision);

    const ctx = stageContext(bundle);
    const g = await generate(ctx, { images: { image: [facePattern(2, SIZE, SIZE)] }, params });
    t.equal(g.images.length, 1);
    t.same([g.images[0]?.rgb.width, g.images[0]?.rgb.height], [SIZE, SIZE]);
    t.ok(spread(g.images[0]?.rgb.data as Uint8Array) > 0, 'generate: an image that is not one flat colour');
    const m = await morph(ctx, { images: { image_a: facePattern(1, SIZE, SIZE), image_b: facePattern(3, SIZE, SIZE) }, params: morphParams({ alphas: [0, 0.5, 1], steps: 2 }) });
    t.equal(m.images.length, 3, 'morph: three frames');
    const decoded = ((await bundle.graphs.vae_decoder.run({ latent_sample: { dtype: 'float32', data: gaussianNoise(63, 4 * (SIZE / 8) ** 2), dims: [1, 4, SIZE / 8, SIZE / 8] } })).sample as Tensor).data as Float32Array;
    t.ok(decoded.every(Number.isFinite), 'the VAE decoder\'s pixels are finite');
  });
}

t.test('--kind full refuses bad options and a folder in use before building anything', async (t) => {
  const dir = await tempDir(t, 'diffid-full-');
  for (const [args, message] of [
    [['--scale', '2'], /--scale must be a number in \(0, 1\]/],
    [['--size', '100'], /--size must be a multiple of 64/],
    [['--precision', 'int8'], /--precision must be fp32 or fp16/],
    [['--weights', 'unet'], /--weights takes NAME=FILE \(got "unet"\)/],
    [['--weights', 'unet=/no/such/unet.safetensors'], /--weights unet=\/no\/such\/unet.safetensors: no such file/],
  ] as const) {
    const err = (await bundleCli(['--kind', 'full', '--out', join(dir, 'x'), ...args]).catch((e: unknown) => e)) as { code: number; stderr: string };
    t.equal(err.code, 2, `${args.join(' ')}: a usage error`);
    t.match(err.stderr, message);
  }
  await writeFile(join(dir, 'something'), 'x');
  const busy = (await bundleCli(['--kind', 'full', '--out', dir, '--detector', 'none']).catch((e: unknown) => e)) as { code: number; stderr: string };
  t.equal(busy.code, 1);
  t.match(busy.stderr, /is not empty; --kind full writes a new bundle into an empty or absent folder/);
});
