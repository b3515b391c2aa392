// A full-architecture bundle (npm run bundle -- --kind full, at width scale 1/16 and 64 px) served
// by the built worker and API as deployed — plain node, configured by the environment:
// - onnxruntime's optimized-graph cache: the first start stores the large graphs, the second
//   opens them from the cache, and a generate with the same seed gives the same PNG both times;
//   a morph runs on the cached graphs;
// - the memory formula: a DIFFID_MEMORY_MB under the bundle's needs stops the worker with
//   DIFFID_ERR_BUNDLE_TOO_LARGE; one that holds 3 U-Net rows keeps two batched jobs apart.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import t, { type Test } from 'tap';
import { redisScope, TEST_REDIS_URL, type RedisScope } from '@diffid/shared/testing';
import { NO_TORCH_PYTHON, torchPython } from '@diffid/gpu-worker/internals';
import { freePort } from '../src/free-port.ts';
import { faceFile } from './images.ts';
import { finished, pollJob, postForm } from './harness.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const skip = torchPython() ? false : `${NO_TORCH_PYTHON}: no full-architecture bundle is built`;

interface Started {
  child: ChildProcess;
  /** Everything the process printed so far. */
  output: () => string;
  exited: Promise<number | null>;
}

function start(entry: string, env: Record<string, string>): Started {
  const child = spawn(process.execPath, [entry], { cwd: root, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  child.stdout?.on('data', (d: Buffer) => void (text += d.toString()));
  child.stderr?.on('data', (d: Buffer) => void (text += d.toString()));
  return { child, output: () => text, exited: new Promise((r) => child.once('exit', (code) => r(code))) };
}

/** Resolves with the worker's bundle_loaded log entry once it is ready; rejects, with its output, if it exits first. */
async function loaded(w: Started): Promise<Record<string, any>> {
  for (;;) {
    const line = w.output().split('\n').find((l) => l.includes('"msg":"bundle_loaded"'));
    if (line && w.output().includes('"worker ready"')) return JSON.parse(line) as Record<string, any>;
    const code = await Promise.race([w.exited, new Promise<'wait'>((r) => setTimeout(() => r('wait'), 100))]);
    if (code !== 'wait') throw new Error(`the worker exited (${code}):\n${w.output()}`);
  }
}

async function stop(w: Started): Promise<void> {
  if (w.child.exitCode === null) w.child.kill('SIGTERM');
  await w.exited;
}

async function png(base: string, view: Record<string, any>): Promise<Buffer> {
  return Buffer.from(await (await fetch(`${base}${view.result.images[0].url}`)).arrayBuffer());
}

async function job(t: Test, base: string, path: string, fields: Parameters<typeof postForm>[2]): Promise<Record<string, any>> {
  const res = await postForm(base, path, fields);
  t.equal(res.status, 202, `${path} accepted`);
  const { id } = (await res.json()) as { id: string };
  const view = await pollJob(base, id, finished);
  t.equal(view.status, 'succeeded', `${path} succeeded${view.status === 'succeeded' ? '' : `: ${JSON.stringify(view.error)}`}`);
  return view;
}

t.test('a full-architecture bundle through the built worker: graph cache, memory bound', { skip }, async (t) => {
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, encoding: 'utf8' });
  t.equal(build.status, 0, `npm run build succeeds${build.status === 0 ? '' : `: ${build.stdout}${build.stderr}`}`);
  const dir = await mkdtemp(join(tmpdir(), 'diffid-full-service-'));
  const scopes: RedisScope[] = [];
  const running: Started[] = [];
  t.teardown(async () => {
    await Promise.all(running.map(stop));
    await Promise.all(scopes.map((s) => s.cleanup()));
    await rm(dir, { recursive: true, force: true });
  });
  const bundle = join(dir, 'bundle');
  await promisify(execFile)(process.execPath, ['services/gpu-worker/dist/bundles/cli.js', '--kind', 'full', '--out', bundle, '--size', '64', '--scale', '0.0625', '--seed', '3', '--detector', 'none'], { cwd: root, maxBuffer: 16 << 20 });

  const scope = await redisScope('full-service');
  scopes.push(scope);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = { REDIS_URL: TEST_REDIS_URL, DIFFID_REDIS_PREFIX: scope.prefix, DIFFID_MODEL_DIR: bundle, DIFFID_GRAPH_CACHE_DIR: join(dir, 'graph-cache'), LOG_LEVEL: 'info', PORT: String(port), HOST: '127.0.0.1' };
  const worker = (extra: Record<string, string> = {}) => {
    const w = start('services/gpu-worker/dist/main.js', { ...env, ...extra });
    running.push(w);
    return w;
  };
  running.push(start('services/api/dist/server.js', env));

  const face = { bytes: await faceFile(3) };
  const generate = { image: face, prompt: 'a portrait', steps: 3, seed: 11 };
  const first = worker();
  const firstLoad = await loaded(first);
  t.equal(firstLoad.load.graphs.unet.cache, 'stored', 'first start: the U-Net optimized, and stored in the cache');
  t.equal(firstLoad.load.graphs.face_embedder.cache, 'off', 'graphs under 8 MB open uncached');
  const before = await png(base, await job(t, base, '/generate', generate));
  await stop(first);

  const second = worker();
  const secondLoad = await loaded(second);
  t.equal(secondLoad.load.graphs.unet.cache, 'hit', 'second start: the U-Net opened from the cache');
  t.ok(secondLoad.load.graphs.unet.open_s < firstLoad.load.graphs.unet.open_s, `and faster: ${secondLoad.load.graphs.unet.open_s.toFixed(2)} s against ${firstLoad.load.graphs.unet.open_s.toFixed(2)} s`);
  t.ok(before.equals(await png(base, await job(t, base, '/generate', generate))), 'the same seed gives the same PNG from the cached graphs');
  const morph = await job(t, base, '/morph', { image_a: face, image_b: { bytes: await faceFile(5) }, frames: 3, steps: 2 });
  t.equal(morph.result.images.length, 3, 'a morph runs on the cached graphs');
  await stop(second);

  const { weights_mb, fixed_mb, row_mb } = firstLoad.memory as { weights_mb: number; fixed_mb: number; row_mb: number };
  const tooSmall = worker({ DIFFID_MEMORY_MB: String(Math.max(256, Math.floor(weights_mb + fixed_mb + row_mb))) });
  t.equal(await tooSmall.exited, 1, 'a budget under one guided image: the worker stops');
  t.match(tooSmall.output(), /DIFFID_ERR_BUNDLE_TOO_LARGE/, 'naming the error');
  t.match(tooSmall.output(), /MB per U-Net row/, 'and the formula\'s terms');

  const metricsPort = await freePort();
  const bounded = worker({ DIFFID_MEMORY_MB: String(Math.ceil(weights_mb + fixed_mb + 3.1 * row_mb)), DIFFID_BATCH_JOBS: '2', DIFFID_WORKER_METRICS_PORT: String(metricsPort) });
  const boundedLoad = await loaded(bounded);
  t.equal(boundedLoad.memory.rows_per_call, 3, 'a budget of 3 U-Net rows: calls of at most 3');
  t.match(bounded.output(), /"msg":"memory_bounds_batching"/, 'the worker says the budget holds fewer jobs than DIFFID_BATCH_JOBS');
  t.match(bounded.output(), /"msg":"memory_bounds_max_batch"/, 'and fewer frames than DIFFID_MAX_BATCH, with the value to set');
  const counters = async () => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const read = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    return { calls: read('diffid_unet_calls_total'), rows: read('diffid_unet_rows_total') };
  };
  const views = await Promise.all([1, 2].map((seed) => job(t, base, '/generate', { ...generate, seed })));
  t.equal(views.length, 2);
  const { calls, rows } = await counters();
  t.equal(rows / calls, 2, `two guided jobs at once ran in calls of 2 rows, never 4 (${calls} calls, ${rows} rows)`);
});
