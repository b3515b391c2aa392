// A real stack for tests: the API listening on a loopback port, a worker with its inference
// thread, Redis under a fresh key prefix, and a model bundle in a temporary directory.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import type { Redis } from 'ioredis';
import { redisScope, TEST_REDIS_URL } from '@diffid/shared/testing';
import { buildTinyBundle, startWorkerService, writeBundle, type GeneratedBundle, type TinyOptions, type WorkerService } from '@diffid/gpu-worker';
import { apiRedis, buildApp, type AppOptions } from '@diffid/api';

export interface Stack {
  base: string;
  app: FastifyInstance;
  worker: WorkerService | null;
  prefix: string;
  queueName: string;
  redis: Redis;
  bundleDir: string;
}

export interface StackOptions {
  bundle?: TinyOptions;
  /** Builds another bundle instead of the tiny one. */
  build?: () => GeneratedBundle | Promise<GeneratedBundle>;
  /** Writes the bundle itself into the given directory (an import, say) instead. */
  prepare?: (dir: string) => Promise<void>;
  /** Serves this existing bundle folder in place (not removed on close) instead. */
  modelDir?: string;
  worker?: boolean;
  /** onnxruntime's threads per operator; 0 (the default) lets the worker choose. */
  intraOpThreads?: number;
  /** Jobs the worker runs at once, batched (DIFFID_BATCH_JOBS). */
  batchJobs?: number;
  lockDurationMs?: number;
  stalledIntervalMs?: number;
  resultTtlSeconds?: number;
  /** API keys and limits, as server.ts passes them from the settings. */
  access?: AppOptions['access'];
  limits?: AppOptions['limits'];
  webhooks?: AppOptions['webhooks'];
  identities?: AppOptions['identities'];
  batches?: AppOptions['batches'];
}

/** Compiled (`npm run bench` runs built code, from services/dist/api/test) rather than run from source under tsx (the tests). */
const BUILT = import.meta.url.endsWith('.js');
const REPO = fileURLToPath(new URL(BUILT ? '../../../..' : '../../..', import.meta.url));

/**
 * A worker process, as deployed, configured by `env` alone; its output is piped for the caller
 * to read. Built code starts the built worker; the tests start the source one under tsx.
 */
export function spawnWorkerProcess(env: NodeJS.ProcessEnv): ChildProcess {
  const args = BUILT ? ['services/gpu-worker/dist/main.js'] : ['--conditions=diffid-source', '--import', 'tsx', 'services/gpu-worker/src/main.ts'];
  return spawn(process.execPath, args, { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A stack for one test: stopped and its Redis keys deleted when the test ends. */
export async function startStack(t: Test, options: StackOptions = {}): Promise<Stack> {
  const stack = await openStack(options);
  t.teardown(stack.close);
  return stack;
}

/** A stack that the caller closes (the benchmarks use it outside a test). */
export async function openStack(options: StackOptions = {}): Promise<Stack & { close: () => Promise<void> }> {
  const scope = await redisScope('api');
  const bundleDir = options.modelDir ?? (await mkdtemp(join(tmpdir(), 'diffid-api-bundle-')));
  if (!options.modelDir) {
    if (options.prepare) await options.prepare(bundleDir);
    else await writeBundle(bundleDir, options.build ? await options.build() : buildTinyBundle(options.bundle));
  }
  const queueName = 'jobs';
  // The API's connection, made as server.ts makes it.
  const redis = apiRedis(TEST_REDIS_URL);
  await redis.connect();
  const app = await buildApp(
    { redis, prefix: scope.prefix, queueName, inputTtlSeconds: 3600, resultTtlSeconds: options.resultTtlSeconds ?? 3600, attempts: 2, access: options.access, limits: options.limits, webhooks: options.webhooks, identities: options.identities, batches: options.batches },
    { logger: false },
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no port');
  const worker =
    options.worker === false
      ? null
      : await startWorkerService({
          redis: scope.redis,
          prefix: scope.prefix,
          queueName,
          resultTtlSeconds: 3600,
          modelDir: bundleDir,
          executionProvider: 'cpu',
          intraOpThreads: options.intraOpThreads ?? 0,
          maxBatch: 8,
          batchJobs: options.batchJobs,
          lockDurationMs: options.lockDurationMs,
          stalledIntervalMs: options.stalledIntervalMs,
        });
  const close = async () => {
    await worker?.close();
    await app.close();
    redis.disconnect();
    await scope.cleanup();
    if (!options.modelDir) await rm(bundleDir, { recursive: true, force: true });
  };
  return { base: `http://127.0.0.1:${address.port}`, app, worker, prefix: scope.prefix, queueName, redis: scope.redis, bundleDir, close };
}

export type Fields = Record<string, string | number | { bytes: Uint8Array; name?: string; type?: string }>;

/** POSTs a multipart form over real HTTP, with any extra headers. */
export async function postForm(base: string, path: string, fields: Fields, headers: Record<string, string> = {}): Promise<Response> {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    if (typeof v === 'object') form.append(k, new Blob([v.bytes], { type: v.type ?? 'image/jpeg' }), v.name ?? `${k}.jpg`);
    else form.append(k, String(v));
  }
  return fetch(`${base}${path}`, { method: 'POST', body: form, headers });
}

/**
 * Polls GET /jobs/{id} until `done(view)` or the deadline; returns the last view. The deadline
 * only bounds a job that never finishes: it is far past any job's time, also on a loaded machine.
 */
export async function pollJob(base: string, id: string, done: (view: Record<string, any>) => boolean, timeoutMs = 300_000): Promise<Record<string, any>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const view = (await (await fetch(`${base}/jobs/${id}`)).json()) as Record<string, any>;
    if (done(view) || Date.now() > deadline) return view;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const finished = (v: Record<string, any>) => ['succeeded', 'failed', 'canceled'].includes(v.status);
