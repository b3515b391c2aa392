// npm run bench: every performance figure the docs quote, measured in one run on this machine, as
// ratios within that run. Writes them into docs/benchmarks.md between its "bench" markers; with
// --json prints them as one JSON object instead. --only host,jobs,queue,api,memory runs a part;
// --batch runs the 1,000-morph batch (batch.ts) alone, --full DIR the full-size bundle alone.
//
// Parts (each says how it measures in docs/benchmarks.md):
//   host    host work per denoising step at SD 1.5 shapes, beside diffusers' torch loop
//   jobs    jobs through the whole path (HTTP → Redis → worker → inference thread → PNGs → HTTP),
//           with where the worker's time goes and the worker's time over onnxruntime's
//   queue   queue overhead: from accepted to seen finished, minus the worker's time
//   api     API submissions and status reads per second (autocannon, a second process)
//   memory  the worker's memory over a few hundred jobs
//   batching images per second at 1, 2, 4, 8 concurrent jobs, batching off and on, with a proxy
//           U-Net whose cost, like a GPU's, hardly grows with the rows of a call
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { buildDefaultBundle, buildDemoBundle, buildTinyBundle, writeBundle, type GeneratedBundle } from '@diffid/gpu-worker';
import { measureHostStep, measureTorchHostStep } from '../../gpu-worker/bench/host-step.ts';
import { measureProxy, proxyUnet } from '../../gpu-worker/bench/proxy-unet.ts';
import { median, quantile } from '../../gpu-worker/bench/stats.ts';
import { replaceGraph } from '../../gpu-worker/test/helpers.ts';
import { measureApiLoad } from './api-load.ts';
import { markdown, type BenchFigures, type JobFigures } from './report.ts';
import { openStack, postForm, type Fields } from '../test/harness.ts';
import { workerProcess } from './worker-process.ts';
import { fullMarkdown, fullSize } from './full-size.ts';
import { runJob, type Finished } from './run-job.ts';
import { batchBench, batchMarkdown } from './batch.ts';
import { encodeImage } from '@diffid/shared/image';
import { SHARED_PHOTOS, facePattern } from '@diffid/shared/testing';

const PARTS = ['host', 'jobs', 'queue', 'api', 'memory', 'batching'] as const;
const fullAt = process.argv.indexOf('--full');
const full = fullAt >= 0 ? process.argv[fullAt + 1] : undefined;
if (fullAt >= 0 && !full) throw new Error('--full needs the bundle folder: npm run bench -- --full DIR (npm run bundle -- --kind full --out DIR makes one)');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',') ?? [...PARTS];
for (const p of only) if (!(PARTS as readonly string[]).includes(p)) throw new Error(`--only: unknown part "${p}" (parts: ${PARTS.join(', ')})`);
const json = process.argv.includes('--json');
const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const INTRA_OP = Number(process.env.BENCH_INTRA_OP ?? 0);
const DOC = join(import.meta.dirname, '../../../../docs/benchmarks.md'); // run built, from services/dist/api/bench
const log = (line: string) => process.stderr.write(`bench: ${line}\n`);


const jpeg = async (seed: number, size: number) => ({ bytes: await encodeImage(facePattern(seed, size, size), 'jpeg') });

async function jobsPart(): Promise<JobFigures[]> {
  type Face = Fields[string];
  const photos: [Face, Face] | null = existsSync(join(SHARED_PHOTOS, 'fr_obama.jpg')) ? [{ bytes: await readFile(join(SHARED_PHOTOS, 'fr_obama.jpg')) }, { bytes: await readFile(join(SHARED_PHOTOS, 'fr_biden.jpg')) }] : null;
  const bundles: Array<{ bundle: string; build: () => GeneratedBundle | Promise<GeneratedBundle>; faces: () => Promise<[Face, Face]> }> = [
    { bundle: 'tiny bundle, drawn 256² faces', build: () => buildTinyBundle(), faces: async () => [await jpeg(1, 256), await jpeg(2, 256)] },
    { bundle: 'demo bundle (no detector), drawn 256² faces', build: () => buildDemoBundle(), faces: async () => [await jpeg(1, 256), await jpeg(2, 256)] },
  ];
  if (photos) bundles.push({ bundle: 'embedded default (shipped BlazeFace + recognizer), photos fr_obama and fr_biden', build: () => buildDefaultBundle(), faces: async () => photos });
  else log(`../shared/faces is absent (looked in ${SHARED_PHOTOS}): the embedded default is not benched`);
  const out: JobFigures[] = [];
  for (const b of bundles) {
    log(`jobs on the ${b.bundle}`);
    // As deployed: the worker in a process of its own, so that the API and this driver, which
    // share this process, do not take its main thread.
    const stack = await openStack({ build: b.build, worker: false });
    const worker = await workerProcess(stack, { DIFFID_INTRA_OP_THREADS: String(INTRA_OP) });
    try {
      const [a, c] = await b.faces();
      const kinds: Array<[string, string, Fields]> = [
        ['generate, 4 images × 30 steps', '/generate', { image: a, prompt: 'a photo of a person', num_images: 4, steps: 30, seed: 1 }],
        ['generate, 1 image × 30 steps', '/generate', { image: a, prompt: 'a photo of a person', num_images: 1, steps: 30, seed: 1 }],
        ['morph, 5 frames × 50 steps', '/morph', { image_a: a, image_b: c, frames: 5, steps: 50 }],
      ];
      for (const [job, path, fields] of kinds) {
        await runJob(stack.base, path, fields); // warm-up: first-call graph initialisation
        const runs: Finished[] = [];
        for (let i = 0; i < RUNS; i++) runs.push(await runJob(stack.base, path, fields));
        const stageNames = Object.keys(runs[0]?.timings.stages ?? {});
        out.push({
          bundle: b.bundle,
          job,
          runs: RUNS,
          end_to_end_ms: median(runs.map((r) => r.endToEndMs)),
          worker_ms: median(runs.map((r) => r.timings.total)),
          inference_ms: median(runs.map((r) => r.timings.inference)),
          onnxruntime_ms: median(runs.map((r) => r.timings.onnxruntime)),
          stages_ms: Object.fromEntries(stageNames.map((s) => [s, median(runs.map((r) => r.timings.stages[s] ?? 0))])),
        });
      }
    } finally {
      await worker.stop();
      await stack.close();
    }
  }
  return out;
}

async function queuePart(): Promise<NonNullable<BenchFigures['queue_overhead_ms']>> {
  log('queue overhead: 40 one-step jobs on the tiny bundle, one at a time');
  const stack = await openStack({ intraOpThreads: INTRA_OP });
  try {
    const face = await jpeg(3, 64);
    const fields = { image: face, prompt: 'a person', steps: 1, seed: 1 };
    await runJob(stack.base, '/generate', fields, true);
    const overhead: number[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await runJob(stack.base, '/generate', fields, true);
      overhead.push(r.seenMs - r.timings.total);
    }
    return { jobs: 40, p50: median(overhead), p95: quantile(overhead, 0.95), poll_interval_ms: 5 };
  } finally {
    await stack.close();
  }
}

async function memoryPart(): Promise<NonNullable<BenchFigures['worker_memory']>> {
  const JOBS = 300;
  const WAVE = 10;
  log(`worker memory: ${JOBS} jobs on the tiny bundle, ${WAVE} at a time`);
  const stack = await openStack({ intraOpThreads: INTRA_OP });
  try {
    const face = await jpeg(4, 64);
    const samples: NonNullable<BenchFigures['worker_memory']>['samples'] = [];
    for (let done = 0; done < JOBS; done += WAVE) {
      await Promise.all(Array.from({ length: WAVE }, (_, i) => runJob(stack.base, '/generate', { image: face, prompt: 'a person', num_images: 2, steps: 4, seed: done + i })));
      if ((done + WAVE) % 50 === 0) {
        // After a full collection (npm run bench passes --expose-gc), the heap is what is retained.
        (globalThis as { gc?: () => void }).gc?.();
        const m = process.memoryUsage();
        samples.push({ jobs: done + WAVE, rss_mb: m.rss / 2 ** 20, heap_used_mb: m.heapUsed / 2 ** 20, external_mb: m.external / 2 ** 20 });
      }
    }
    return { jobs: JOBS, samples };
  } finally {
    await stack.close();
  }
}

async function batchingPart(): Promise<NonNullable<BenchFigures['batching']>> {
  const built = buildDemoBundle();
  const m = built.manifest;
  const dims = { channels: m.latent.channels, height: m.image.height / m.latent.downscale, width: m.image.width / m.latent.downscale, tokens: m.adapter.conditioning_tokens, contextWidth: m.adapter.conditioning_width };
  log('batching: the proxy U-Net alone');
  const proxy = await measureProxy(dims, [1, 2, 4, 8, 16], INTRA_OP);
  const prepare = async (dir: string) => {
    await writeBundle(dir, built);
    await replaceGraph(dir, 'unet', proxyUnet(dims));
  };
  const face = await jpeg(6, 256);
  const CONCURRENCY = [1, 2, 4, 8];
  const rows: NonNullable<BenchFigures['batching']>['runs'] = [];
  const pngs: Record<string, Buffer[]> = {};
  for (const batchJobs of [1, 8]) {
    log(`batching: demo bundle with the proxy U-Net, DIFFID_BATCH_JOBS=${batchJobs}`);
    const stack = await openStack({ prepare, batchJobs, intraOpThreads: INTRA_OP });
    try {
      const fields = (seed: number) => ({ image: face, prompt: 'a portrait', num_images: 1, steps: 20, guidance_scale: 5, seed });
      await runJob(stack.base, '/generate', fields(1));
      for (const jobs of CONCURRENCY) {
        const calls0 = stack.worker?.inference.batchStats() ?? { calls: 0, rows: 0 };
        const t0 = performance.now();
        const done = await Promise.all(Array.from({ length: jobs }, (_, i) => runJob(stack.base, '/generate', fields(100 + i))));
        const wall = performance.now() - t0;
        const calls1 = stack.worker?.inference.batchStats() ?? { calls: 0, rows: 0 };
        rows.push({
          batch_jobs: batchJobs,
          jobs,
          images_per_s: (jobs * 1000) / wall,
          latency_p50_ms: median(done.map((d) => d.seenMs)),
          latency_max_ms: Math.max(...done.map((d) => d.seenMs)),
          rows_per_call: (calls1.rows - calls0.rows) / Math.max(1, calls1.calls - calls0.calls),
        });
        if (jobs === 8) pngs[batchJobs] = await Promise.all(done.map(async (d) => Buffer.from(await (await fetch(`${stack.base}${d.urls[0]}`)).arrayBuffer())));
      }
    } finally {
      await stack.close();
    }
  }
  const same = (pngs[1] ?? []).every((p, i) => p.equals((pngs[8] ?? [])[i] as Buffer));
  return { proxy_ms_per_call_by_rows: proxy, runs: rows, pngs_identical: same };
}

const machine = { cores: availableParallelism(), cpu: cpus()[0]?.model ?? 'unknown', node: process.version, intra_op_threads: INTRA_OP };

/** Writes `body` between `<!-- bench:NAME:start -->` (or bench:start) and its end marker in docs/benchmarks.md. */
async function writeSection(name: string | null, body: string): Promise<void> {
  const doc = await readFile(DOC, 'utf8');
  const [start, end] = name ? [`<!-- bench:${name}:start -->`, `<!-- bench:${name}:end -->`] : ['<!-- bench:start -->', '<!-- bench:end -->'];
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${DOC} has no ${start} … ${end} section to write into`);
  await writeFile(DOC, `${doc.slice(0, a + start.length)}\n${body}\n${doc.slice(b)}`);
  process.stdout.write(`${body}\nwritten into ${DOC}\n`);
}

if (process.argv.includes('--batch')) {
  const r = await batchBench({ morphs: Number(process.env.BENCH_BATCH_MORPHS ?? 1000), steps: Number(process.env.BENCH_BATCH_STEPS ?? 4), workers: [1, 2], intraOpThreads: INTRA_OP, log });
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else await writeSection('batch', batchMarkdown(r, `${machine.cores} cores (${machine.cpu}), Node ${machine.node}`));
  process.exit(0);
}

if (full) {
  const steps = Number(process.env.BENCH_FULL_STEPS ?? 2);
  const r = await fullSize(full, { steps, intraOpThreads: INTRA_OP, log });
  if (json) process.stdout.write(`${JSON.stringify(r)}\n`);
  else log(JSON.stringify(r));
  if (!json) await writeSection(`full-${r.bundle.size}`, fullMarkdown(r, `${machine.cores} cores (${machine.cpu}), Node ${machine.node}`));
  process.exit(0);
}

const figures: BenchFigures = {
  date: new Date().toISOString().slice(0, 10),
  machine,
};
/**
 * Runs a part when it was asked for, from a collected heap: the garbage a part leaves would
 * otherwise be collected, on this machine's few cores, during the next.
 */
async function part(name: (typeof PARTS)[number], run: () => Promise<void>): Promise<void> {
  if (!only.includes(name)) return;
  (globalThis as { gc?: () => void }).gc?.();
  await run();
}
await part('jobs', async () => {
  figures.jobs = await jobsPart();
  const demo = figures.jobs.find((j) => j.bundle.startsWith('demo') && j.job.startsWith('generate, 4'));
  if (demo) figures.worker_over_onnxruntime = demo.worker_ms / demo.onnxruntime_ms;
});
await part('queue', async () => void (figures.queue_overhead_ms = await queuePart()));
await part('api', async () => {
  log('API load with autocannon from a second process');
  figures.api = await measureApiLoad();
});
await part('memory', async () => void (figures.worker_memory = await memoryPart()));
await part('batching', async () => void (figures.batching = await batchingPart()));
// The host part runs last: run after it (the stand-in U-Net's sessions, torch's loop in a process
// of its own), the jobs part's worker measured 5–10 % slower on this machine, heap collected or not.
await part('host', async () => {
  log('host work per step at SD 1.5 shapes');
  figures.host_ms_per_step = await measureHostStep(INTRA_OP);
  figures.torch_host_ms_per_step = await measureTorchHostStep();
});

if (json) {
  process.stdout.write(`${JSON.stringify(figures)}\n`);
} else {
  await writeSection(null, markdown(figures));
}
