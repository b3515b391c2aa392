// The container files, checked without Docker (no engine runs on these machines): compose parses
// and configures Redis, the API and the workers as docs/operations.md says; every path a
// Dockerfile copies exists once the repository is installed and built; every variable they set
// is a setting the service reads.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { SETTINGS } from '@diffid/shared/settings';

const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const DOCKER = join(ROOT, 'deploy/docker');
const known = new Set<string>([...Object.values(SETTINGS).map((s) => s.env), 'NODE_ENV', 'ONNXRUNTIME_NODE_INSTALL']);

interface Service {
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  build?: { context: string; dockerfile: string };
}

t.test('compose: Redis append-only with noeviction, the API behind keys, every service health-checked', async (t) => {
  const compose = parse(readFileSync(join(DOCKER, 'compose.yaml'), 'utf8')) as { services: Record<string, Service> };
  const { redis, api, worker } = compose.services;
  t.ok(redis && api && worker, 'redis, api and worker services');
  const cmd = (redis?.command ?? []).join(' ');
  t.match(cmd, /--appendonly yes/, 'append-only persistence');
  t.match(cmd, /--maxmemory-policy noeviction/, 'nothing evicted');
  t.match(cmd, /--maxmemory \d+/, 'a memory cap');
  for (const [name, service] of Object.entries(compose.services)) {
    t.ok(service.healthcheck?.test.length, `${name} has a health check`);
    for (const variable of Object.keys(service.environment ?? {})) t.ok(known.has(variable), `${name}: ${variable} is a setting the service reads`);
    for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) t.equal(condition, 'service_healthy', `${name} waits for ${dep} to be healthy`);
    if (service.build) t.ok(existsSync(join(DOCKER, service.build.context, service.build.dockerfile)), `${name}: ${service.build.dockerfile} exists`);
  }
  t.match(api?.environment?.DIFFID_API_KEYS ?? '', /^\$\{DIFFID_API_KEYS:\?/, 'compose refuses to start the API without keys');
  t.match(worker?.healthcheck?.test.join(' ') ?? '', new RegExp(`:${worker?.environment?.DIFFID_WORKER_METRICS_PORT}/metrics`), "the worker's check reads its metrics port");
});

t.test('Dockerfiles: every copied path exists after install and build, every ENV is a setting', async (t) => {
  for (const file of ['api.Dockerfile', 'gpu-worker.Dockerfile']) {
    const lines = readFileSync(join(DOCKER, file), 'utf8').split('\n');
    const instructions = lines.filter((l) => /^[A-Z]+ /.test(l));
    t.ok(instructions.some((l) => /^FROM node:24/.test(l)), `${file}: a supported Node LTS`);
    for (const line of instructions.filter((l) => l.startsWith('COPY '))) {
      const parts = line.split(/\s+/).slice(1);
      const fromStage = parts[0]?.startsWith('--from=');
      const sources = parts.filter((p) => !p.startsWith('--')).slice(0, -1);
      for (const source of sources) {
        // From the build stage: /app/<path> is what the repository's install and build make;
        // other absolute paths are the base image's own (node itself).
        if (fromStage && !source.startsWith('/app/')) continue;
        const path = fromStage ? source.replace(/^\/app\//, '') : source;
        t.ok(existsSync(join(ROOT, path)), `${file}: ${line.trim()} — ${path} exists`);
      }
    }
    for (const line of instructions.filter((l) => l.startsWith('ENV '))) {
      for (const [, variable] of line.matchAll(/([A-Z_]+)=/g)) t.ok(known.has(variable as string), `${file}: ENV ${variable} is a setting`);
    }
    const cmd = instructions.find((l) => l.startsWith('CMD '));
    const entry = cmd && (JSON.parse(cmd.slice(4)) as string[]).find((a) => a.endsWith('.js'));
    t.ok(entry && existsSync(join(ROOT, entry)), `${file}: CMD runs ${entry}, which the build makes`);
  }
});

t.test('gpu-bench.sh: valid bash that fetches the CUDA provider as the GPU image does, and stops at once without a GPU', async (t) => {
  const script = join(ROOT, 'deploy/gpu-bench.sh');
  t.equal(spawnSync('bash', ['-n', script]).status, 0, 'bash parses it');
  const text = readFileSync(script, 'utf8');
  const fetch = /ONNXRUNTIME_NODE_INSTALL=cuda12 node "?\$?\{?\w*\}?\/?[\w/-]*script\/install/;
  t.match(text, fetch, 'it fetches the CUDA provider with onnxruntime-node\'s own install script');
  t.match(readFileSync(join(DOCKER, 'gpu-worker.Dockerfile'), 'utf8'), fetch, 'as the GPU image does');
  const run = spawnSync('bash', [script], { cwd: ROOT, encoding: 'utf8', env: { PATH: '/usr/bin:/bin' } });
  t.equal(run.status, 1, 'no nvidia-smi here: it stops before installing or building anything');
  t.match(run.stderr, /no nvidia-smi: this host has no NVIDIA driver/);
});
