// npm run bench: time per job through the whole path (HTTP → Redis → worker → inference thread →
// PNGs → HTTP) on the tiny bundle, the demo bundle (no detector, synthetic faces) and the
// embedded default (demo with the shipped detector and recognizer, on two photos from
// ../shared/faces when it is there), with the wall time of the pipeline run and of its face
// stages (find, embed, score). All figures come from one run on this machine, as ratios.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { encodeImage } from '@diffid/shared/image';
import { redisScope, TEST_REDIS_URL } from '@diffid/shared/testing';
import { buildDefaultBundle, buildDemoBundle, buildTinyBundle, startWorkerService, writeBundle, type GeneratedBundle } from '@diffid/gpu-worker';
import { buildApp } from '../src/app.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const PHOTOS = join(import.meta.dirname, '../../../../shared/faces/photos');
const photos = existsSync(join(PHOTOS, 'fr_obama.jpg')) ? [await readFile(join(PHOTOS, 'fr_obama.jpg')), await readFile(join(PHOTOS, 'fr_biden.jpg'))] : null;

function synthetic(seed: number) {
  const w = 256;
  const data = Uint8Array.from({ length: w * w * 3 }, (_, i) => (i * (seed + 3) * 7 + (i % (w * 3))) % 256);
  return encodeImage({ data, width: w, height: w }, 'jpeg');
}

const benches: Array<{ name: string; build: () => GeneratedBundle | Promise<GeneratedBundle>; faces: () => Promise<[Buffer, Buffer]> }> = [
  { name: 'tiny bundle, synthetic 256² JPEGs', build: () => buildTinyBundle(), faces: async () => [await synthetic(1), await synthetic(2)] },
  { name: 'demo bundle (no detector), synthetic 256² JPEGs', build: () => buildDemoBundle(), faces: async () => [await synthetic(1), await synthetic(2)] },
];
if (photos) {
  benches.push({ name: 'embedded default (shipped BlazeFace + recognizer), photos fr_obama 1000×1000 px and fr_biden', build: () => buildDefaultBundle(), faces: async () => photos as [Buffer, Buffer] });
} else {
  process.stderr.write(`../shared/faces is absent (looked in ${PHOTOS}): the embedded default is not benched\n`);
}

const FACE_STAGES = ['find_faces', 'embed', 'score'];
const out: string[] = [];
for (const bench of benches) {
const scope = await redisScope('bench');
const bundleDir = await mkdtemp(join(tmpdir(), 'diffid-bench-'));
await writeBundle(bundleDir, await bench.build());
const apiRedis = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
await apiRedis.connect();
const app = await buildApp({ redis: apiRedis, prefix: scope.prefix, queueName: 'jobs', inputTtlSeconds: 600, resultTtlSeconds: 600, attempts: 1 }, { logger: false });
await app.listen({ port: 0, host: '127.0.0.1' });
const port = (app.server.address() as { port: number }).port;
const worker = await startWorkerService({
  redis: scope.redis, prefix: scope.prefix, queueName: 'jobs', resultTtlSeconds: 600,
  modelDir: bundleDir, executionProvider: 'cpu', intraOpThreads: Number(process.env.BENCH_INTRA_OP ?? 0), maxBatch: 8,
});
const base = `http://127.0.0.1:${port}`;

async function timeJob(path: string, fields: Record<string, string | Buffer>) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'string') form.append(k, v);
    else form.append(k, new Blob([v]), `${k}.jpg`);
  }
  const t0 = performance.now();
  const { id } = (await (await fetch(`${base}${path}`, { method: 'POST', body: form })).json()) as { id: string };
  for (;;) {
    const view = (await (await fetch(`${base}/jobs/${id}`)).json()) as {
      status: string;
      result?: { images: Array<{ url: string }>; timings_ms: { total: number; inference: number; stages: Record<string, number> } };
    };
    if (view.status === 'succeeded' && view.result) {
      await Promise.all(view.result.images.map(async (i) => (await fetch(`${base}${i.url}`)).arrayBuffer()));
      const t = view.result.timings_ms;
      const faces = FACE_STAGES.reduce((sum, stage) => sum + (t.stages[stage] ?? 0), 0);
      return { endToEnd: performance.now() - t0, worker: t.total, inference: t.inference, faces };
    }
    if (view.status !== 'queued' && view.status !== 'running') throw new Error(`job ${id} ${view.status}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function series(name: string, path: string, fields: Record<string, string | Buffer>) {
  await timeJob(path, fields); // warm-up: first-call graph initialisation
  const runs = [];
  for (let i = 0; i < RUNS; i++) runs.push(await timeJob(path, fields));
  const e2e = median(runs.map((r) => r.endToEnd));
  const w = median(runs.map((r) => r.worker));
  const inf = median(runs.map((r) => r.inference));
  const faces = median(runs.map((r) => r.faces));
  return { name, e2e, w, inf, faces };
}

const [a, b] = await bench.faces();
const rows = [
  await series('generate, 4 images × 30 steps', '/generate', { image: a, prompt: 'a photo of a person', num_images: '4', steps: '30', seed: '1' }),
  await series('generate, 1 image × 30 steps', '/generate', { image: a, prompt: 'a photo of a person', num_images: '1', steps: '30', seed: '1' }),
  await series('morph, frames = 5, 50 steps', '/morph', { image_a: a, image_b: b, frames: '5', steps: '50' }),
];

out.push(
  `${bench.name}, ${RUNS} runs each (median), ${new Date().toISOString().slice(0, 10)}`,
  '',
  '| job | end to end (ms) | in the worker (ms) | pipeline run (ms) | of which face stages (ms) | face stages / run | worker / end to end |',
  '|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${r.e2e.toFixed(0)} | ${r.w.toFixed(0)} | ${r.inf.toFixed(0)} | ${r.faces.toFixed(0)} | ${(r.faces / r.inf).toFixed(2)} | ${(r.w / r.e2e).toFixed(2)} |`),
  '',
);
await worker.close();
await app.close();
apiRedis.disconnect();
await scope.cleanup();
await rm(bundleDir, { recursive: true, force: true });
}
process.stdout.write(`${out.join('\n')}`);
