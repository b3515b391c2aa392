import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { buildTinyBundle } from '../src/bundles/tiny-bundle.ts';
import { OPTIMUM_FLAVOR } from '../src/bundles/tiny-graphs.ts';
import { sha256Hex } from '../src/bundles/write-bundle.ts';
import { loadBundle, type LoadedBundle } from '../src/runtime/bundle-loader.ts';
import type { Tensor } from '../src/runtime/onnx.ts';
import { feedFor, stats, tempDir, tinyBundleDir } from './helpers.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

async function listHashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const e of await readdir(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) await walk(p);
      else out[p] = sha256Hex(await readFile(join(dir, p)));
    }
  };
  await walk('');
  return out;
}

t.test('npm run bundle writes byte-identical bundles on every run', async (t) => {
  const a = await tempDir(t);
  const b = await tempDir(t);
  for (const out of [a, b]) {
    const { stdout } = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', '--kind', 'tiny', '--out', out], { cwd: join(import.meta.dirname, '../../..') });
    t.match(stdout, /wrote the tiny bundle/);
  }
  const ha = await listHashes(a);
  const hb = await listHashes(b);
  t.same(Object.keys(ha).sort(), [
    'adapter.onnx', 'face_embedder.onnx', 'image_encoder.onnx', 'manifest.json', 'text_encoder.onnx',
    'tokenizer/merges.txt', 'tokenizer/vocab.json', 'unet.onnx', 'vae_decoder.onnx', 'vae_encoder.onnx',
  ]);
  t.same(ha, hb, 'every file has the same sha256 across two runs');
  t.notSame(sha256Hex(buildTinyBundle({ seed: 2 }).files.get('unet.onnx') as Uint8Array), ha['unet.onnx'], 'another seed gives other weights');
});

t.test('the CLI refuses unknown kinds and flavors with a usage line', async (t) => {
  const cwd = join(import.meta.dirname, '../../..');
  const err = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', '--kind', 'huge', '--out', '/tmp/x'], { cwd }).catch((e: { code: number; stderr: string }) => e);
  t.match(err, { code: 2, stderr: /--kind must be "tiny", "demo", "import" or "full" \(got "huge"\)[\s\S]*usage: npm run bundle/ });
  const err2 = await run(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/bundles/cli.ts', '--kind', 'tiny', '--out', '/tmp/x', '--flavor', 'x'], { cwd }).catch((e: { code: number; stderr: string }) => e);
  t.match(err2, { code: 2, stderr: /--flavor must be one of diffusers, optimum/ });
});

type Case = { role: keyof LoadedBundle['graphs']; feeds: (b: LoadedBundle) => Record<string, Tensor> };
const CASES: Case[] = [
  { role: 'text_encoder', feeds: (b) => ({ input_ids: feedFor(b.ports.text_encoder.inputs.input_ids, 1) }) },
  { role: 'image_encoder', feeds: (b) => ({ pixel_values: feedFor(b.ports.image_encoder.inputs.pixels, 2) }) },
  { role: 'face_embedder', feeds: (b) => ({ data: feedFor(b.ports.face_embedder.inputs.pixels, 3) }) },
  {
    role: 'adapter',
    feeds: (b) => ({
      face_embedding: feedFor(b.ports.adapter.inputs.face_embedding, 4),
      image_embedding: feedFor(b.ports.adapter.inputs.image_embedding, 5),
      text_embedding: feedFor(b.ports.adapter.inputs.text_embedding, 6),
    }),
  },
  {
    role: 'unet',
    feeds: (b) => ({
      sample: feedFor(b.ports.unet.inputs.sample, 7, { height: 8, width: 8 }),
      timestep: { dtype: 'float32', data: new Float32Array([981, 1]), dims: [2] },
      encoder_hidden_states: feedFor(b.ports.unet.inputs.encoder_hidden_states, 8),
    }),
  },
  { role: 'vae_encoder', feeds: (b) => ({ sample: feedFor(b.ports.vae_encoder.inputs.pixels, 9, { height: 64, width: 64 }) }) },
  { role: 'vae_decoder', feeds: (b) => ({ latent_sample: feedFor(b.ports.vae_decoder.inputs.latent, 10, { latent_height: 8, latent_width: 8 }) }) },
];

// Pinned statistics of each output on the feeds above: a change to the generator that alters
// numbers shows here. The tolerance (1e-4 of the output's std) covers CPU kernel differences.
const EXPECTED: Record<string, { dims: number[]; mean: number; std: number; probe: number }> = {
  'text_encoder.last_hidden_state': { dims: [2, 77, 32], mean: 1.93e-9, std: 0.9999880787906198, probe: 0.009773210552397178 },
  'image_encoder.image_embeds': { dims: [2, 24], mean: -0.0064839266512232525, std: 0.1405284347647957, probe: 0.006538827743147749 },
  'face_embedder.fc1': { dims: [2, 16], mean: 0.06780577979952795, std: 0.1177174495757089, probe: 0.0074964491905800505 },
  'adapter.conditioning': { dims: [2, 81, 32], mean: 0.619168140572628, std: 1.6727375430638394, probe: -0.010153594253265745 },
  'unet.out_sample': { dims: [2, 4, 8, 8], mean: 0.056406688076094724, std: 0.6573591778711357, probe: 0.007653268915817688 },
  'vae_encoder.latent_sample': { dims: [2, 4, 8, 8], mean: 0.04544074652949348, std: 1.9756832203231014, probe: 0.07917797671131792 },
  'vae_decoder.sample': { dims: [2, 3, 64, 64], mean: 0.000833865499977493, std: 0.5927315474806251, probe: -0.0028354685301048284 },
};

t.test('each tiny graph runs once with real-export shapes and pinned statistics', async (t) => {
  const bundle = await loadBundle(await tinyBundleDir(t));
  t.teardown(() => bundle.release());
  for (const c of CASES) {
    const out = await bundle.graphs[c.role]!.run(c.feeds(bundle));
    for (const [name, tensor] of Object.entries(out)) {
      const key = `${c.role}.${name}`;
      const want = EXPECTED[key];
      if (!want) {
        t.fail(`no pinned statistics for ${key}`);
        continue;
      }
      const s = stats(tensor.data as Float32Array);
      t.same(tensor.dims, want.dims, `${key} dims`);
      const tol = 1e-4 * Math.max(want.std, 1e-3);
      for (const k of ['mean', 'std', 'probe'] as const) {
        t.ok(Math.abs(s[k] - want[k]) <= tol, `${key} ${k} ${s[k]} (pinned ${want[k]})`);
      }
    }
  }
});
