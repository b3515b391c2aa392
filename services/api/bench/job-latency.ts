// npm run bench: time per job through the whole path (HTTP → Redis → worker → inference thread →
// PNGs → HTTP) on the tiny and the demo bundle, and how much of it is onnxruntime compute. All
// figures come from one run on this machine, as ratios.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { encodeImage } from '@diffid/shared/image';
import { redisScope, TEST_REDIS_URL } from '@diffid/shared/testing';
import { buildDemoBundle, buildTinyBundle, startWorkerService, writeBundle } from '@diffid/gpu-worker';
import { buildApp } from '../src/app.ts';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const out: string[] = [];
for (const [bundleName, build] of [['tiny', () => buildTinyBundle()], ['demo', () => buildDemoBundle()]] as const) {
const scope = await redisScope('bench');
const bundleDir = await mkdtemp(join(tmpdir(), 'diffid-bench-'));
await writeBundle(bundleDir, build());
const apiRedis = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
await apiRedis.connect();
const app = await buildApp({ redis: apiRedis, prefix: scope.prefix, queueName: 'jobs', inputTtlSeconds: 600, resultTtlSeconds: 600, attempts: 1 }, { logger: false });
await app.listen({ port: 0, host: '127.0.0.1' });
const port = (app.server.address() as { port: number }).port;
const worker = await startWorkerService({
  redis: scope.redis, prefix: scope.prefix, queueName: 'jobs', resultTtlSeconds: 600,
  modelDir: bundleDir, executionProvider: 'cpu', intraOpThreads: 0, maxBatch: 8,
});
const base = `http://127.0.0.1:${port}`;

function face(seed: number) {
  const w = 256;
  const data = Uint8Array.from({ length: w * w * 3 }, (_, i) => (i * (seed + 3) * 7 + (i % (w * 3))) % 256);
  return encodeImage({ data, width: w, height: w }, 'jpeg');
}

async function timeJob(path: string, fields: Record<string, string | Buffer>) {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'string') form.append(k, v);
    else form.append(k, new Blob([v]), `${k}.jpg`);
  }
  const t0 = performance.now();
  const { id } = (await (await fetch(`${base}${path}`, { method: 'POST', body: form })).json()) as { id: string };
  for (;;) {
    const view = (await (await fetch(`${base}/jobs/${id}`)).json()) as { status: string; result?: { images: Array<{ url: string }>; timings_ms: { total: number; inference: number } } };
    if (view.status === 'succeeded' && view.result) {
      await Promise.all(view.result.images.map(async (i) => (await fetch(`${base}${i.url}`)).arrayBuffer()));
      return { endToEnd: performance.now() - t0, worker: view.result.timings_ms.total, inference: view.result.timings_ms.inference };
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
  return { name, e2e, w, inf };
}

const a = await face(1);
const b = await face(2);
const rows = [
  await series('generate, 4 images × 30 steps', '/generate', { image: a, prompt: 'a photo of a person', num_images: '4', steps: '30', seed: '1' }),
  await series('generate, 1 image × 30 steps', '/generate', { image: a, prompt: 'a photo of a person', num_images: '1', steps: '30', seed: '1' }),
  await series('morph, frames = 5, 50 steps', '/morph', { image_a: a, image_b: b, frames: '5', steps: '50' }),
];

out.push(
  `${bundleName} bundle, ${RUNS} runs each (median), ${new Date().toISOString().slice(0, 10)}`,
  '',
  '| job | end to end (ms) | in the worker (ms) | onnxruntime (ms) | onnxruntime / worker | worker / end to end |',
  '|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.name} | ${r.e2e.toFixed(0)} | ${r.w.toFixed(0)} | ${r.inf.toFixed(0)} | ${(r.inf / r.w).toFixed(2)} | ${(r.w / r.e2e).toFixed(2)} |`),
  '',
);
await worker.close();
await app.close();
apiRedis.disconnect();
await scope.cleanup();
await rm(bundleDir, { recursive: true, force: true });
}
process.stdout.write(`${out.join('\n')}`);
