// `npm run bench -- --full DIR`: a full-size bundle (npm run bundle -- --kind full) served and
// measured. In one run, on the same weights:
//   load     a worker process's start with an empty graph cache, then with the cache it wrote
//            (spawn to "worker ready"); the worker's peak resident memory over the whole run
//   step     one U-Net call at B = 2 (one guided image) in onnxruntime, as the worker opens it, and
//            in torch eager under no_grad (diffid_reference.full_reference, the same seeded
//            weights, the same threads); the largest difference between their outputs
//   jobs     one generate and one morph end to end, the worker's time over onnxruntime's; the
//            same morph of the two faces stored as identities, twice: the second reuses the
//            latents the first inverted
//   batching four one-image generates submitted at once, DIFFID_BATCH_JOBS 1 and then 4: images
//            per second, and whether each seed gave the same PNG both ways
// The torch parts need the export's diffid/build.json (a bundle built here) and a torch Python.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gaussianNoise } from '@diffid/shared/diffusion';
import { encodeImage } from '@diffid/shared/image';
import { SHARED_PHOTOS, facePattern } from '@diffid/shared/testing';
import { defaultIntraOpThreads, openGraph, torchPython, torchReference, type Tensor } from '@diffid/gpu-worker/internals';
import { freePort } from '../src/free-port.ts';
import { openStack, postForm, type Fields } from '../test/harness.ts';
import { runJob, type Finished } from './run-job.ts';
import { workerProcess, type WorkerProcess } from './worker-process.ts';

export interface FullFigures {
  bundle: { dir: string; size: number; precision: string; scale: number | null; weights_gb: number };
  execution_provider: string;
  intra_op_threads: number;
  steps: number;
  load_s: { first: number; cached: number; first_detail: unknown; cached_detail: unknown };
  /** Peak resident memory of each worker process (VmHWM), and what the memory formula gives for the most U-Net rows it ran in one call. */
  rss_peak_mb: { after_generate: number; planned_generate: number; first_start: number; cached_start: number; planned_first: number; planned_cached: number; rows_first: number; rows_cached: number };
  memory_plan: { weights_mb: number; fixed_mb: number; row_mb: number; budget_mb: number | null; max_rows: number | null; rows_per_call: number };
  onnxruntime_step_ms: number;
  torch_step_ms: number | { skipped: string };
  parity_max_abs: number | { skipped: string };
  generate: JobFigure;
  morph: JobFigure;
  /** The same morph of the two faces stored as identities: the first run keeps their latents, the second uses them. */
  stored_morph: { first: JobFigure; cached: JobFigure };
  images_per_s: { batch_jobs_1: number; batch_jobs_4: number; same_pngs: boolean; rows_per_call_4: number };
}

interface JobFigure {
  job: string;
  end_to_end_ms: number;
  worker_ms: number;
  onnxruntime_ms: number;
  worker_over_onnxruntime: number;
  stages_ms: Record<string, number>;
}

const POLL_MS = 100;
const MORPH_ROWS = 6;

function jobFigure(job: string, r: Finished): JobFigure {
  return { job, end_to_end_ms: r.endToEndMs, worker_ms: r.timings.total, onnxruntime_ms: r.timings.onnxruntime, worker_over_onnxruntime: r.timings.total / r.timings.onnxruntime, stages_ms: r.timings.stages };
}

async function pngs(base: string, runs: Finished[]): Promise<Buffer[]> {
  return Promise.all(runs.map(async (r) => Buffer.from(await (await fetch(`${base}${r.urls[0]}`)).arrayBuffer())));
}

/** Runs the full-size benchmark on the bundle in `dir`; `log` hears progress. */
export async function fullSize(dirArg: string, o: { steps: number; intraOpThreads: number; log: (line: string) => void }): Promise<FullFigures> {
  const { log } = o;
  const dir = resolve(dirArg);
  const manifest = JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as {
    image: { width: number; height: number };
    adapter: { conditioning_tokens: number; conditioning_width: number };
    latent: { channels: number; downscale: number };
    models: { unet: { file: string; sha256: string; external_data?: Array<{ sha256: string }> } };
  };
  const buildJson = join(dir, 'export/diffid/build.json');
  const build = existsSync(buildJson) ? (JSON.parse(await readFile(buildJson, 'utf8')) as { scale: number; precision: string }) : null;
  const size = Math.max(manifest.image.width, manifest.image.height);
  const provider = process.env.DIFFID_EXECUTION_PROVIDER ?? 'cpu';
  const threads = o.intraOpThreads || defaultIntraOpThreads();
  const cacheDir = await mkdtemp(join(tmpdir(), 'diffid-bench-graph-cache-'));
  const env = { DIFFID_GRAPH_CACHE_DIR: cacheDir, DIFFID_INTRA_OP_THREADS: String(threads), DIFFID_EXECUTION_PROVIDER: provider };
  const photo = join(SHARED_PHOTOS, 'fr_obama.jpg');
  const face: Fields[string] = { bytes: existsSync(photo) ? await readFile(photo) : await encodeImage(facePattern(1, 512, 512), 'jpeg') };
  const faceB: Fields[string] = { bytes: existsSync(join(SHARED_PHOTOS, 'fr_biden.jpg')) ? await readFile(join(SHARED_PHOTOS, 'fr_biden.jpg')) : await encodeImage(facePattern(2, 512, 512), 'jpeg') };
  const generateFields = (seed: number): Fields => ({ image: face, prompt: 'a photo of a person', num_images: 1, steps: o.steps, seed });
  const stack = await openStack({ modelDir: dir, worker: false });
  let worker: WorkerProcess | null = null;
  const peaks: number[] = [];
  const stopWorker = async () => {
    if (!worker) return;
    peaks.push(worker.peakRssMb());
    await worker.stop();
    worker = null;
  };
  try {
    log(`full size: ${size} px, a worker's first start (empty graph cache)`);
    worker = await workerProcess(stack, { ...env, DIFFID_BATCH_JOBS: '1' });
    const first = { s: worker.readySeconds, detail: worker.loaded.load, memory: worker.loaded.memory as FullFigures['memory_plan'] };
    log(`  ready in ${first.s.toFixed(1)} s; generate, ${o.steps} steps`);
    const generate = jobFigure(`generate, 1 image × ${o.steps} steps`, await runJob(stack.base, '/generate', generateFields(7), true, POLL_MS));
    const afterGenerate = worker.peakRssMb();
    log(`  ${(generate.end_to_end_ms / 1000).toFixed(1)} s; morph, 3 frames × ${o.steps} steps`);
    const morph = jobFigure(`morph, 3 frames × ${o.steps} steps`, await runJob(stack.base, '/morph', { image_a: face, image_b: faceB, frames: 3, steps: o.steps }, true, POLL_MS));
    log(`  ${(morph.end_to_end_ms / 1000).toFixed(1)} s; the faces stored as identities, the morph by them twice`);
    const store = async (image: Fields[string]) => ((await (await postForm(stack.base, '/identities', { image }, { prefer: 'wait=60' })).json()) as { id: string }).id;
    const storedFields = { identity_a: await store(face), identity_b: await store(faceB), frames: 3, steps: o.steps };
    const storedFirst = jobFigure(`morph of the stored identities, first (latents kept)`, await runJob(stack.base, '/morph', storedFields, true, POLL_MS));
    const storedCached = jobFigure(`the same again (latents stored)`, await runJob(stack.base, '/morph', storedFields, true, POLL_MS));
    log(`  ${(storedFirst.end_to_end_ms / 1000).toFixed(1)} s, then ${(storedCached.end_to_end_ms / 1000).toFixed(1)} s; four generates at once, DIFFID_BATCH_JOBS=1`);
    const seeds = [101, 102, 103, 104];
    let t0 = performance.now();
    const alone = await Promise.all(seeds.map((s) => runJob(stack.base, '/generate', generateFields(s), true, POLL_MS)));
    const ips1 = (seeds.length * 1000) / (performance.now() - t0);
    const alonePngs = await pngs(stack.base, alone);
    await stopWorker();

    log('  a second start (the graph cache filled), DIFFID_BATCH_JOBS=4');
    const metricsPort = await freePort();
    worker = await workerProcess(stack, { ...env, DIFFID_BATCH_JOBS: '4', DIFFID_WORKER_METRICS_PORT: String(metricsPort) });
    const cached = { s: worker.readySeconds, detail: worker.loaded.load };
    const unetCounters = async () => {
      const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
      return { calls: read('diffid_unet_calls_total'), rows: read('diffid_unet_rows_total') };
    };
    const before = await unetCounters();
    t0 = performance.now();
    const batched = await Promise.all(seeds.map((s) => runJob(stack.base, '/generate', generateFields(s), true, POLL_MS)));
    const ips4 = (seeds.length * 1000) / (performance.now() - t0);
    const after = await unetCounters();
    const batchedPngs = await pngs(stack.base, batched);
    await stopWorker();

    log('  one U-Net call at B = 2: onnxruntime, then torch');
    const c = manifest.latent.channels;
    const [h, w] = [manifest.image.height / manifest.latent.downscale, manifest.image.width / manifest.latent.downscale];
    const { conditioning_tokens: n, conditioning_width: width } = manifest.adapter;
    const feeds: Record<string, Tensor> = {
      sample: { dtype: 'float32', data: gaussianNoise(61, 2 * c * h * w), dims: [2, c, h, w] },
      timestep: { dtype: 'float32', data: Float32Array.from([981, 981]), dims: [2] },
      encoder_hidden_states: { dtype: 'float32', data: gaussianNoise(62, 2 * n * width), dims: [2, n, width] },
    };
    // The graph the workers served: their cached, optimized copy of it.
    const u = manifest.models.unet;
    const unet = await openGraph(join(dir, u.file), { executionProvider: provider as 'cpu', intraOpThreads: threads, cache: { dir: cacheDir, sources: [u.sha256, ...(u.external_data ?? []).map((d) => d.sha256)] } });
    const ortMs: number[] = [];
    let served: Float32Array = new Float32Array(0);
    for (let i = 0; i < 2; i++) {
      const s = performance.now();
      served = ((await unet.run(feeds)).out_sample as Tensor).data as Float32Array;
      ortMs.push(performance.now() - s);
    }
    await unet.release();
    let torchStep: FullFigures['torch_step_ms'];
    let parity: FullFigures['parity_max_abs'];
    if (!build) torchStep = parity = { skipped: 'no export/diffid/build.json: not a bundle built by npm run bundle -- --kind full' };
    else if (!torchPython()) torchStep = parity = { skipped: 'no Python with torch' };
    else {
      const ref = await torchReference(buildJson, 'unet', feeds, { repeat: 2, threads, device: provider === 'cuda' ? 'cuda' : 'cpu' });
      torchStep = Math.min(...ref.forward_ms);
      let worst = 0;
      for (let i = 0; i < served.length; i++) worst = Math.max(worst, Math.abs((served[i] as number) - (ref.output[i] as number)));
      parity = worst;
    }
    // The first worker's largest call: the morph's 3 guided frames; the second's: 4 guided jobs.
    const planned = (rows: number) => first.memory.weights_mb + first.memory.fixed_mb + rows * first.memory.row_mb;
    const weightsBytes = (first.detail as { bytes?: number } | undefined)?.bytes ?? Number.NaN;
    return {
      bundle: { dir, size, precision: build?.precision ?? 'unknown', scale: build?.scale ?? null, weights_gb: weightsBytes / 1e9 },
      execution_provider: provider,
      intra_op_threads: threads,
      steps: o.steps,
      load_s: { first: first.s, cached: cached.s, first_detail: first.detail, cached_detail: cached.detail },
      rss_peak_mb: { after_generate: afterGenerate, planned_generate: planned(2), first_start: peaks[0] ?? Number.NaN, cached_start: peaks[1] ?? Number.NaN, planned_first: planned(MORPH_ROWS), planned_cached: planned(seeds.length * 2), rows_first: MORPH_ROWS, rows_cached: seeds.length * 2 },
      memory_plan: first.memory,
      onnxruntime_step_ms: Math.min(...ortMs),
      torch_step_ms: torchStep,
      parity_max_abs: parity,
      generate,
      morph,
      stored_morph: { first: storedFirst, cached: storedCached },
      images_per_s: { batch_jobs_1: ips1, batch_jobs_4: ips4, same_pngs: alonePngs.every((p, i) => p.equals(batchedPngs[i] as Buffer)), rows_per_call_4: (after.rows - before.rows) / (after.calls - before.calls) },
    };
  } finally {
    await stopWorker();
    await stack.close();
    await rm(cacheDir, { recursive: true, force: true });
  }
}

const f = (x: number, digits = 0) => x.toFixed(digits);
const orSkip = (x: number | { skipped: string }, show: (n: number) => string) => (typeof x === 'number' ? show(x) : `skipped: ${x.skipped}`);

/** The figures as the Markdown between docs/benchmarks.md's bench:full-SIZE markers. */
export function fullMarkdown(r: FullFigures, machine: string): string {
  const plan = r.memory_plan;
  const gb = (mb: number) => f(mb / 1024, 1);
  const loads = (d: unknown) => {
    const l = d as { verify_s: number; graphs: Record<string, { open_s: number; cache: string }> };
    const unet = l.graphs.unet;
    return `sha256 of the files ${f(l.verify_s, 1)} s, U-Net opened in ${f(unet?.open_s ?? Number.NaN, 1)} s (${unet?.cache ?? '?'})`;
  };
  return [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${machine}; ${r.execution_provider} provider, ${r.intra_op_threads} intra-op thread(s), torch with as many; bundle ${r.bundle.precision}, scale ${r.bundle.scale ?? '?'}, ${f(r.bundle.weights_gb, 2)} GB of weights; jobs of ${r.steps} steps.`,
    '',
    '| figure | value |',
    '|---|---|',
    `| worker start, empty graph cache (spawn to ready) | ${f(r.load_s.first, 1)} s: ${loads(r.load_s.first_detail)} |`,
    `| worker start, graph cache filled | ${f(r.load_s.cached, 1)} s: ${loads(r.load_s.cached_detail)} |`,
    `| memory formula at this size | weights ${gb(plan.weights_mb)} GB + fixed ${gb(plan.fixed_mb)} GB + ${f(plan.row_mb)} MB per U-Net row |`,
    `| peak resident memory (VmHWM) after the first start's generate, calls of 2 rows | ${gb(r.rss_peak_mb.after_generate)} GB (formula ${gb(r.rss_peak_mb.planned_generate)} GB; target 2 × weights + 2 GB = ${f((2 * r.bundle.weights_gb * 1e9) / 2 ** 30 + 2, 1)} GB) |`,
    `| the same after its morph, calls of up to ${r.rss_peak_mb.rows_first} rows | ${gb(r.rss_peak_mb.first_start)} GB (formula ${gb(r.rss_peak_mb.planned_first)} GB) |`,
    `| peak resident memory, cached start, calls of up to ${r.rss_peak_mb.rows_cached} rows | ${gb(r.rss_peak_mb.cached_start)} GB (formula ${gb(r.rss_peak_mb.planned_cached)} GB) |`,
    `| one U-Net call, B = 2: onnxruntime | ${f(r.onnxruntime_step_ms)} ms |`,
    `| the same call in torch eager (no_grad) | ${orSkip(r.torch_step_ms, (n) => `${f(n)} ms`)} (torch ÷ onnxruntime ${typeof r.torch_step_ms === 'number' ? f(r.torch_step_ms / r.onnxruntime_step_ms, 2) : '–'}) |`,
    `| max abs difference, served U-Net (cached graph) vs torch | ${orSkip(r.parity_max_abs, (n) => n.toExponential(2))} |`,
    `| ${r.morph.job} of two stored identities, their latents stored by an earlier morph: worker time | ${f(r.stored_morph.cached.worker_ms / 1000, 1)} s, against ${f(r.stored_morph.first.worker_ms / 1000, 1)} s the first time and ${f(r.morph.worker_ms / 1000, 1)} s by photos: **× ${f(r.morph.worker_ms / r.stored_morph.cached.worker_ms, 2)}** faster (no encode_latent, no invert) |`,
    ...[r.generate, r.morph].map((j) => `| ${j.job}: end to end / worker / onnxruntime | ${f(j.end_to_end_ms / 1000, 1)} s / ${f(j.worker_ms / 1000, 1)} s / ${f(j.onnxruntime_ms / 1000, 1)} s: worker ÷ onnxruntime **${f(j.worker_over_onnxruntime, 3)}** |`),
    `| 4 one-image generates at once: images/s, DIFFID_BATCH_JOBS 1 → 4 | ${f(r.images_per_s.batch_jobs_1, 4)} → ${f(r.images_per_s.batch_jobs_4, 4)} (× ${f(r.images_per_s.batch_jobs_4 / r.images_per_s.batch_jobs_1, 2)}; ${f(r.images_per_s.rows_per_call_4, 1)} rows per U-Net call); same PNG per seed both ways: ${r.images_per_s.same_pngs ? 'yes' : '**no**'} |`,
  ].join('\n');
}
