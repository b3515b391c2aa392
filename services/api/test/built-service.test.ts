// Production runs compiled JavaScript: build (tsc -b, a no-op when current), then start the built
// API and worker as `npm run start:api` / `start:worker` do — plain node, no tsx, no source
// conditions, configured by the environment a deployment sets (API keys, a webhook secret) — and
// run jobs through them over HTTP and Redis, webhooks included, also after the service was idle.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { redisScope, TEST_REDIS_URL } from '@diffid/shared/testing';
import { verifyWebhook, webhookKey } from '@diffid/shared/contract';
import { buildTinyBundle, writeBundle } from '@diffid/gpu-worker';
import { freePort } from '../src/free-port.ts';
import { faceFile } from './images.ts';
import { postForm } from './harness.ts';
import { receiver, type Received } from './webhook-receiver.ts';

const root = fileURLToPath(new URL('../../..', import.meta.url));
const KEY = 'built-key-0123456789abcdef';
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const auth = { authorization: `Bearer ${KEY}` };
// Longer than the API's Redis command timeout (5 s) and than BullMQ's idle blocking reads (5 s,
// 10 s for QueueEvents): each blocking read ends in this quiet once, as in production's.
const IDLE_MS = 12_000;

async function waitFor(url: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).ok) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

t.test('the built API and worker run a job with plain node', async (t) => {
  const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: root, encoding: 'utf8' });
  t.equal(build.status, 0, `npm run build succeeds${build.status === 0 ? '' : `: ${build.stdout}${build.stderr}`}`);
  for (const entry of ['services/api/dist/server.js', 'services/gpu-worker/dist/main.js', 'services/gpu-worker/dist/thread/inference-thread.js', 'shared/dist/contract/index.js']) {
    t.ok(existsSync(`${root}/${entry}`), `${entry} is built`);
  }
  const scope = await redisScope('built');
  const bundleDir = await mkdtemp(join(tmpdir(), 'diffid-built-'));
  await writeBundle(bundleDir, buildTinyBundle());
  const port = await freePort();
  const hook = await receiver(t);
  const env = {
    PATH: process.env.PATH,
    REDIS_URL: TEST_REDIS_URL,
    DIFFID_REDIS_PREFIX: scope.prefix,
    DIFFID_MODEL_DIR: bundleDir,
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    DIFFID_API_KEYS: `built:${KEY}`,
    DIFFID_WEBHOOK_SECRET: SECRET,
    DIFFID_WEBHOOK_ALLOW: '127.0.0.1',
  };
  const children: ChildProcess[] = [];
  const output: string[] = [];
  t.teardown(async () => {
    for (const c of children) c.kill('SIGTERM');
    await Promise.all(children.map((c) => (c.exitCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    await scope.cleanup();
    await rm(bundleDir, { recursive: true, force: true });
  });
  for (const entry of ['services/gpu-worker/dist/main.js', 'services/api/dist/server.js']) {
    const child = spawn(process.execPath, [entry], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout?.on('data', (d: Buffer) => output.push(d.toString()));
    child.stderr?.on('data', (d: Buffer) => output.push(d.toString()));
    children.push(child);
  }
  const base = `http://127.0.0.1:${port}`;
  t.ok(await waitFor(`${base}/readyz`, 30_000), 'the built API becomes ready');
  // The worker publishes its bundle once loaded; wait for it so the job runs now.
  const deadline = Date.now() + 30_000;
  while (!(await scope.redis.exists(`${scope.prefix}:bundle`)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  const face = { bytes: await faceFile(3) };
  const res = await fetch(`${base}/compare`, {
    method: 'POST',
    headers: { prefer: 'wait=30', ...auth },
    body: (() => {
      const form = new FormData();
      form.append('image_a', new Blob([face.bytes], { type: 'image/jpeg' }), 'a.jpg');
      form.append('image_b', new Blob([face.bytes], { type: 'image/jpeg' }), 'b.jpg');
      return form;
    })(),
  });
  const view = (await res.json()) as { status: string; result?: { similarity: number } };
  t.equal(view.status, 'succeeded', `the job ran in the built worker${view.status === 'succeeded' ? '' : `; output: ${output.join('')}`}`);
  t.ok(Math.abs((view.result?.similarity ?? 0) - 1) < 1e-5, 'the same face twice is similarity 1');
  const gen = await postForm(base, '/generate', { image: face, prompt: 'x', steps: 2 }, auth);
  t.equal(gen.status, 202);

  // Quiet, then a job with a webhook: its completion arrives, signed.
  await new Promise((r) => setTimeout(r, IDLE_MS));
  const hooked = await postForm(base, '/generate', { image: face, prompt: 'x', steps: 2, webhook: hook.url, webhook_events: 'completed' }, auth);
  t.equal(hooked.status, 202, 'a job with a webhook is accepted after the quiet');
  const { id } = (await hooked.json()) as { id: string };
  const [delivery] = await hook.next(1, 60_000);
  t.ok(delivery, `the completion reached the receiver after the quiet${delivery ? '' : `; output: ${output.join('')}`}`);
  if (!delivery) return;
  const d: Received = delivery;
  t.equal((JSON.parse(d.body) as { data: { id: string } }).data.id, id);
  const signed = verifyWebhook(webhookKey(SECRET) as Buffer, { id: String(d.headers['webhook-id']), timestamp: String(d.headers['webhook-timestamp']), signature: String(d.headers['webhook-signature']) }, d.body);
  t.ok(signed, 'the delivery is signed with the secret');
  t.notMatch(output.join(''), /webhook_dispatcher_error|Command timed out/, 'the dispatcher logged no error');
  for (const c of children) {
    const cmdline = existsSync(`/proc/${c.pid}/cmdline`) ? readFileSync(`/proc/${c.pid}/cmdline`, 'utf8') : '';
    t.notMatch(cmdline, /tsx|diffid-source/, 'plain node: no tsx loader, no source condition');
  }
});
