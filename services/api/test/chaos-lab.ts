// The chaos lab: a private redis-server (append-only, noeviction), the API in this process, and
// worker processes to kill — for the chaos tests (chaos-*.test.ts).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { Redis } from 'ioredis';
import { jobKeys } from '@diffid/shared/contract';
import { buildTinyBundle, writeBundle } from '@diffid/gpu-worker';
import { apiRedis, buildApp } from '@diffid/api';
import { freePort } from '../src/free-port.ts';
import { spawnWorkerProcess } from './harness.ts';
import { faceFile } from './images.ts';

export const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
export const haveRedis = spawnSync('redis-server', ['--version']).status === 0;
export const PREFIX = 'chaos';
export const QUEUE = 'jobs';
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Lab {
  redisPort: number;
  /** A client of the private Redis that survives its restarts. */
  redis: Redis;
  base: string;
  startRedis(): Promise<void>;
  stopRedis(signal?: NodeJS.Signals): Promise<void>;
  pauseRedis(ms: number): Promise<void>;
  spawnWorker(): ChildProcess;
  workers: ChildProcess[];
  log: string[];
}

/**
 * A private redis-server (AOF on, noeviction, then `redisArgs`), the API in this process, made as
 * server.ts makes it, and worker processes.
 */
export async function lab(t: Test, env: Record<string, string>, redisArgs: string[] = []): Promise<Lab> {
  const dir = await mkdtemp(join(tmpdir(), 'diffid-chaos-'));
  const redisPort = await freePort();
  let server: ChildProcess | null = null;
  const startRedis = async () => {
    server = spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '', '--maxmemory-policy', 'noeviction', ...redisArgs], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const probe = spawnSync('redis-cli', ['-p', String(redisPort), 'ping'], { encoding: 'utf8' });
      if (probe.stdout.trim() === 'PONG') return;
      await sleep(50);
    }
    throw new Error('the private redis-server did not start');
  };
  const stopRedis = async (signal: NodeJS.Signals = 'SIGTERM') => {
    const s = server as ChildProcess | null;
    if (!s || s.exitCode !== null) return;
    const gone = new Promise((r) => s.once('exit', r));
    s.kill(signal);
    await gone;
  };
  await startRedis();
  const url = `redis://127.0.0.1:${redisPort}`;
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined);
  const api = apiRedis(url);
  await api.connect();
  const app = await buildApp({ redis: api, prefix: PREFIX, queueName: QUEUE, inputTtlSeconds: 600, resultTtlSeconds: 600, attempts: 3 }, { logger: false });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const bundleDir = join(dir, 'bundle');
  // About a quarter second per U-Net call: a job of 8 steps runs for a couple of seconds.
  await writeBundle(bundleDir, buildTinyBundle({ burnMatmuls: 200 }));
  const workers: ChildProcess[] = [];
  const log: string[] = [];
  const spawnWorker = () => {
    const child = spawnWorkerProcess({ PATH: process.env.PATH, REDIS_URL: url, DIFFID_REDIS_PREFIX: PREFIX, DIFFID_QUEUE: QUEUE, DIFFID_MODEL_DIR: bundleDir, DIFFID_STALLED_CHECK_SECONDS: '1', LOG_LEVEL: 'info', ...env });
    child.stdout?.on('data', (d: Buffer) => log.push(d.toString()));
    child.stderr?.on('data', (d: Buffer) => log.push(d.toString()));
    workers.push(child);
    return child;
  };
  t.teardown(async () => {
    for (const w of workers) if (w.exitCode === null) w.kill('SIGKILL');
    await app.close();
    api.disconnect();
    redis.disconnect();
    await stopRedis('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  return {
    redisPort,
    redis,
    base: `http://127.0.0.1:${(app.server.address() as { port: number }).port}`,
    startRedis,
    stopRedis,
    pauseRedis: async (ms) => {
      const s = server as ChildProcess | null;
      s?.kill('SIGSTOP');
      await sleep(ms);
      s?.kill('SIGCONT');
    },
    spawnWorker,
    workers,
    log,
  };
}

export async function waitForWorkers(l: Lab, n: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (l.log.join('').split('"worker ready"').length - 1 >= n) return;
    await sleep(100);
  }
  throw new Error(`workers did not start:\n${l.log.join('')}`);
}

export async function submit(l: Lab, n: number): Promise<string[]> {
  const face = await faceFile(1);
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const fd = new FormData();
    fd.append('image', new Blob([face]), 'face.jpg');
    for (const [k, v] of Object.entries({ prompt: `job ${i}`, steps: '8', num_images: '2', guidance_scale: '1', seed: String(100 + i) })) fd.append(k, v);
    const res = await fetch(`${l.base}/generate`, { method: 'POST', body: fd });
    if (res.status !== 202) throw new Error(`submit ${i}: ${res.status} ${await res.text()}`);
    ids.push(((await res.json()) as { id: string }).id);
  }
  return ids;
}

/** Polls every job until all are finished; a Redis outage (503) is waited out. */
export async function settle(l: Lab, ids: string[], ms = 150_000): Promise<Record<string, any>[]> {
  const deadline = Date.now() + ms;
  const views = new Map<string, Record<string, any>>();
  while (Date.now() < deadline && views.size < ids.length) {
    for (const id of ids) {
      if (views.has(id)) continue;
      const res = await fetch(`${l.base}/jobs/${id}`).catch(() => null);
      if (!res || res.status !== 200) continue;
      const view = (await res.json()) as Record<string, any>;
      if (['succeeded', 'failed', 'canceled'].includes(view.status)) views.set(id, view);
    }
    await sleep(250);
  }
  return ids.map((id) => views.get(id) ?? { id, status: 'unfinished' });
}

/** What the runs left: statuses, result images served, uploads still stored, runs per job. */
export async function account(t: Test, l: Lab, ids: string[], views: Record<string, any>[]) {
  t.same(views.map((v) => v.status), ids.map(() => 'succeeded'), `every accepted job succeeded${views.every((v) => v.status === 'succeeded') ? '' : `: ${JSON.stringify(views.map((v) => [v.status, v.error]))}\n${l.log.join('').slice(-4000)}`}`);
  for (const v of views) {
    if (v.status !== 'succeeded') continue;
    t.equal(v.result.images.length, 2, `${v.id}: one set of results`);
    for (const image of v.result.images as Array<{ url: string }>) t.equal((await fetch(`${l.base}${image.url}`)).status, 200, `${image.url} is served`);
  }
  const leftover = (await l.redis.keys(`${PREFIX}:job:*:input:*`)).length;
  t.equal(leftover, 0, 'no uploads left behind');
  const starts = new Map<string, number>();
  for (const line of l.log.join('').split('\n')) {
    const m = /"id":"([^"]+)".*"msg":"job_started"/.exec(line);
    if (m) starts.set(m[1] as string, (starts.get(m[1] as string) ?? 0) + 1);
  }
  return { runs: ids.reduce((n, id) => n + (starts.get(id) ?? 0), 0), leftover };
}

export async function ownerOf(l: Lab, id: string): Promise<{ worker: string; token: string } | null> {
  const raw = await l.redis.get(jobKeys(PREFIX, id).owner).catch(() => null);
  return raw ? (JSON.parse(raw) as { worker: string; token: string }) : null;
}

/** The worker process whose name (host-pid-…) owns the job. */
export function processOf(l: Lab, owner: { worker: string }): ChildProcess | undefined {
  const pid = Number(owner.worker.split('-').at(-2));
  return l.workers.find((w) => w.pid === pid);
}

