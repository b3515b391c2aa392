// `npm start`: the API and one worker in one command, for a first run or a single machine.
// Uses Redis at REDIS_URL; when none answers there, starts a private redis-server if one is
// installed. The worker generates the embedded default bundle when DIFFID_MODEL_DIR is unset.
// Real deployments run `npm run start:api` and `npm run start:worker` separately. Run built
// (dist/*.js, `npm start`) it starts the built entry points; run from source (`npm run dev`),
// the source ones under tsx.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { settingsOrExit } from '@diffid/shared/settings';
import { freePort } from './free-port.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const BUILT = import.meta.url.endsWith('.js');
const env = { ...process.env };
const settings = settingsOrExit(env);
const children: ChildProcess[] = [];
let stopping = false;

async function redisAnswers(url: string): Promise<boolean> {
  const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1500 });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    return (await probe.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    probe.disconnect();
  }
}

function stopAll(code: number): void {
  if (stopping) return;
  stopping = true;
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  const deadline = setTimeout(() => process.exit(code), 10_000);
  deadline.unref();
  Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null))).then(() => process.exit(code));
}

function run(name: string, command: string, args: string[], quiet = false): ChildProcess {
  const child = spawn(command, args, { cwd: root, env, stdio: ['ignore', quiet ? 'ignore' : 'inherit', 'inherit'] });
  children.push(child);
  child.once('exit', (code, signal) => {
    if (stopping) return;
    process.stderr.write(`[start] ${name} exited (${signal ?? `code ${code}`}); stopping the rest\n`);
    stopAll(code === 0 ? 1 : (code ?? 1));
  });
  return child;
}

env.REDIS_URL = settings.redisUrl;
if (!(await redisAnswers(env.REDIS_URL))) {
  const which = spawnSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' });
  const server = which.stdout.trim();
  if (which.status !== 0 || !server) {
    process.stderr.write(
      `No Redis answers at ${env.REDIS_URL}, and redis-server is not installed.\n` +
        'Either start Redis and set REDIS_URL (for example: docker run -p 6379:6379 redis:7),\n' +
        'or install redis-server (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis) and run npm start again.\n',
    );
    process.exit(1);
  }
  const port = await freePort();
  process.stdout.write(`[start] no Redis at ${env.REDIS_URL}; starting a private redis-server on 127.0.0.1:${port} (nothing saved to disk)\n`);
  run('redis-server', server, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], true);
  env.REDIS_URL = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (!(await redisAnswers(env.REDIS_URL))) {
    if (Date.now() > deadline) {
      process.stderr.write('[start] the private redis-server did not answer within 10 s\n');
      stopAll(1);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

const entry = (service: string, name: string) =>
  BUILT ? [`services/${service}/dist/${name}.js`] : ['--conditions=diffid-source', '--import', 'tsx', `services/${service}/src/${name}.ts`];
run('worker', process.execPath, entry('gpu-worker', 'main'));
run('api', process.execPath, entry('api', 'server'));
process.stdout.write(
  `[start] Diff-ID Serve: API on http://localhost:${settings.port} (docs at /docs), one worker, Redis at ${env.REDIS_URL}` +
    `${settings.modelDir ? `, bundle ${settings.modelDir}` : ', the embedded default bundle'}\n`,
);
process.once('SIGINT', () => stopAll(0));
process.once('SIGTERM', () => stopAll(0));
