// API keys and tenants, per-key limits and the queue cap: who may call, whose jobs they see, and
// how much they may ask for — each refusal a 4xx or 503 in the envelope, with Retry-After.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { TEST_REDIS_URL, redisScope } from '@diffid/shared/testing';
import { ownerOpenJobsKey } from '@diffid/shared/contract';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { freePort } from '../src/free-port.ts';
import { assertContract } from './contract.ts';
import { startStack } from './harness.ts';
import { faceFile } from './images.ts';

const ALPHA = 'alpha-key-0123456789abcdef';
const BETA = 'beta-key-0123456789abcdef0';
const SLOW = 'slow-key-0123456789abcdef0';

t.test('keys: tenant:key[:rpm] entries, every problem named, only digests kept', async (t) => {
  const parsed = parseApiKeys(`alpha:${ALPHA}, beta:${BETA}:5\n# a comment\n`);
  t.same(parsed.problems, []);
  t.same(parsed.tenants.map((e) => e.tenant), [{ name: 'alpha' }, { name: 'beta', ratePerMinute: 5 }]);
  t.notMatch(JSON.stringify(parsed.tenants), new RegExp(ALPHA), 'the key text is not kept');
  const ring = keyRing(parsed.tenants);
  t.same(ring.identify(`Bearer ${BETA}`), { name: 'beta', ratePerMinute: 5 });
  t.equal(ring.identify(`Bearer ${ALPHA}x`), null, 'a near miss is no key');
  t.equal(ring.identify(ALPHA), null, 'the key alone, without Bearer, is no key');
  t.equal(ring.identify(undefined), null);
  const bad = parseApiKeys(`alpha:short, :${ALPHA}, a:${ALPHA}:x, b:${ALPHA}, c:${BETA}:1:2`);
  t.equal(bad.problems.length, 5, bad.problems.join('\n'));
  t.match(bad.problems[3] as string, /the same key is given twice/);
});

const post = async (base: string, path: string, key: string | null, fields: Record<string, string> = {}) => {
  const fd = new FormData();
  const face = await faceFile(1);
  if (path === '/generate') fd.append('image', new Blob([face]), 'a.jpg');
  else {
    fd.append('image_a', new Blob([face]), 'a.jpg');
    fd.append('image_b', new Blob([face]), 'b.jpg');
  }
  for (const [k, v] of Object.entries({ ...(path === '/generate' ? { prompt: 'x', steps: '2' } : {}), ...fields })) fd.append(k, v);
  return fetch(`${base}${path}`, { method: 'POST', body: fd, headers: key ? { authorization: `Bearer ${key}` } : {} });
};
const get = (base: string, path: string, key: string | null, method = 'GET') => fetch(`${base}${path}`, { method, headers: key ? { authorization: `Bearer ${key}` } : {} });

t.test('with keys: every route but health, readiness and metrics needs one; another tenant\'s job is unknown', async (t) => {
  const keys = keyRing(parseApiKeys(`alpha:${ALPHA},beta:${BETA}`).tenants);
  const s = await startStack(t, { access: { keys, rateLimitPerMinute: 1000, maxStreamsPerKey: 50 } });
  for (const path of ['/healthz', '/readyz']) t.equal((await fetch(`${s.base}${path}`)).status, 200, `${path} needs no key`);
  const anonymous = await post(s.base, '/generate', null);
  const body = (await anonymous.json()) as { error: { code: string; message: string } };
  t.equal(anonymous.status, 401);
  t.equal(body.error.code, 'DIFFID_ERR_UNAUTHORIZED');
  t.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer/);
  assertContract(t, 'POST', '/generate', 401, body);
  t.equal((await post(s.base, '/generate', 'wrong-key-0123456789abcdef')).status, 401, 'a wrong key');
  for (const path of ['/docs', '/docs/', '/docs/json']) {
    const docs = await get(s.base, path, null);
    t.equal(docs.status, 401, `${path} needs one too`);
    t.equal(((await docs.json()) as { error?: { code: string } }).error?.code, 'DIFFID_ERR_UNAUTHORIZED', `${path}: in the catalogue's envelope`);
    t.match(docs.headers.get('www-authenticate') ?? '', /^Bearer/);
  }

  const res = await post(s.base, '/generate', ALPHA);
  t.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  t.equal((await get(s.base, `/jobs/${id}`, null)).status, 401, 'without the key the job is not shown');
  let view: Record<string, any> = {};
  for (let i = 0; i < 200; i++) {
    view = (await (await get(s.base, `/jobs/${id}`, ALPHA)).json()) as Record<string, any>;
    if (view.status === 'succeeded') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  t.equal(view.status, 'succeeded', 'its own tenant sees it through');
  const unknown = '00000000-0000-4000-8000-000000000000';
  for (const [path, method] of [[`/jobs/${id}`, 'GET'], [`/jobs/${id}/images/0.png`, 'GET'], [`/jobs/${id}/events`, 'GET'], [`/jobs/${id}`, 'DELETE']] as const) {
    const other = await get(s.base, path, BETA, method);
    const none = await get(s.base, path.replace(id, unknown), BETA, method);
    t.equal(other.status, 404, `${method} ${path.replace(id, '{id}')}: another tenant gets 404`);
    t.same(((await other.json()) as { error: { code: string } }).error.code, ((await none.json()) as { error: { code: string } }).error.code, 'exactly as for an unknown id');
  }
  t.equal((await get(s.base, `/jobs/${id}/images/0.png`, ALPHA)).status, 200, 'the owner gets its images');
});

t.test('per-key limits: requests per minute, jobs in flight, queued steps; the queue cap; event streams', async (t) => {
  const keys = keyRing(parseApiKeys(`alpha:${ALPHA},beta:${BETA}:3,slow:${SLOW}`).tenants);
  const s = await startStack(t, {
    worker: false,
    access: { keys, rateLimitPerMinute: 1000, maxStreamsPerKey: 12 },
    limits: { maxJobsPerKey: 2, maxQueuedStepsPerKey: 1000, maxQueueDepth: 4, maxInputBytesPerKey: 1 << 30, maxInputBytes: 1 << 30 },
  });
  // beta: 3 requests a minute.
  const codes: number[] = [];
  for (let i = 0; i < 4; i++) codes.push((await get(s.base, '/jobs/00000000-0000-4000-8000-000000000000', BETA)).status);
  t.same(codes, [404, 404, 404, 429], "beta's fourth request in a minute is refused");
  const limited = await get(s.base, '/jobs/00000000-0000-4000-8000-000000000000', BETA);
  const retry = Number(limited.headers.get('retry-after'));
  t.ok(retry >= 1 && retry <= 60, `Retry-After ${retry} s: until the minute ends`);
  t.equal(((await limited.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_RATE_LIMITED');

  // alpha: 2 jobs at once (no worker runs them here).
  t.equal((await post(s.base, '/generate', ALPHA)).status, 202);
  t.equal((await post(s.base, '/generate', ALPHA)).status, 202);
  const third = await post(s.base, '/generate', ALPHA);
  t.equal(third.status, 429);
  t.match(((await third.json()) as { error: { message: string } }).error.message, /this key has 2 jobs queued or running, its limit/);
  // slow: one morph of 64 frames × 50 steps = 3300 steps, over its 1000.
  const heavy = await post(s.base, '/morph', SLOW, { frames: '64', steps: '50' });
  t.equal(heavy.status, 429);
  t.match(((await heavy.json()) as { error: { message: string } }).error.message, /this job adds 3300; its limit is 1000/);
  // The queue holds 2; two more fill it to its cap of 4, then everyone waits.
  t.equal((await post(s.base, '/compare', SLOW)).status, 202);
  t.equal((await post(s.base, '/compare', SLOW)).status, 202);
  const full = await post(s.base, '/compare', ALPHA);
  t.equal(full.status, 503);
  t.equal(full.headers.get('retry-after'), '30');
  t.equal(((await full.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_QUEUE_FULL');

  // Event streams: 10 per job.
  const jobs = await s.redis.hkeys(ownerOpenJobsKey(s.prefix, 'slow'));
  const target = jobs[0] as string;
  const open: AbortController[] = [];
  for (let i = 0; i < 10; i++) {
    const c = new AbortController();
    const res = await fetch(`${s.base}/jobs/${target}/events`, { headers: { authorization: `Bearer ${SLOW}` }, signal: c.signal });
    t.equal(res.status, 200);
    open.push(c);
  }
  const eleventh = await get(s.base, `/jobs/${target}/events`, SLOW);
  t.equal(eleventh.status, 429);
  t.equal(((await eleventh.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_TOO_MANY_STREAMS');
  open.forEach((c) => c.abort());
  await new Promise((r) => setTimeout(r, 200));
  const again = new AbortController();
  t.equal((await fetch(`${s.base}/jobs/${target}/events`, { headers: { authorization: `Bearer ${SLOW}` }, signal: again.signal })).status, 200, 'a closed stream frees its place');
  again.abort();
});

t.test('without keys the API listens on loopback only, and says so', async (t) => {
  const port = await freePort();
  // Its own key prefix, removed once the server has stopped (its queues leave their meta keys).
  const scope = await redisScope('loopback');
  const child = spawn(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/api/src/server.ts'], {
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
    env: { PATH: process.env.PATH, REDIS_URL: TEST_REDIS_URL, PORT: String(port), DIFFID_REDIS_PREFIX: scope.prefix, LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  t.teardown(async () => {
    if (child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    }
    await scope.cleanup();
  });
  for (let i = 0; i < 200 && !/listening only|loopback/.test(out); i++) await new Promise((r) => setTimeout(r, 50));
  t.match(out, /no API keys configured \(DIFFID_API_KEYS\): listening on loopback only/);
  t.match(out, new RegExp(`127\\.0\\.0\\.1:${port}`), 'bound to 127.0.0.1');
  const bad = spawn(process.execPath, ['--conditions=diffid-source', '--import', 'tsx', 'services/api/src/server.ts'], {
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
    env: { PATH: process.env.PATH, REDIS_URL: TEST_REDIS_URL, PORT: String(port + 1), DIFFID_API_KEYS: 'alpha:short' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  bad.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise((r) => bad.once('exit', r));
  t.equal(code, 2, 'bad keys stop the API before it listens');
  t.match(err, /invalid API keys \(DIFFID_API_KEYS \/ DIFFID_API_KEYS_FILE\):\n  - entry 1/);
});

t.test("the queue dashboard: read-only, the admin tenant's alone when keys are set", async (t) => {
  const keys = keyRing(parseApiKeys(`ops:${ALPHA},beta:${BETA}`).tenants);
  const s = await startStack(t, { worker: false, access: { keys, rateLimitPerMinute: 1000, maxStreamsPerKey: 10, adminTenant: 'ops' } });
  t.equal((await post(s.base, '/compare', BETA)).status, 202, 'a job of another tenant');
  const page = await get(s.base, '/admin/queues', ALPHA);
  t.equal(page.status, 200, 'the admin tenant opens it');
  t.match(await page.text(), /<html/i);
  const api = (await (await get(s.base, '/admin/queues/api/queues', ALPHA)).json()) as { queues: Array<{ name: string; readOnlyMode: boolean; counts: Record<string, number> }> };
  t.equal(api.queues[0]?.name, s.queueName);
  t.equal(api.queues[0]?.readOnlyMode, true, 'read-only: no removing or retrying around the service');
  const other = await get(s.base, '/admin/queues', BETA);
  t.equal(other.status, 404, `another tenant: as if it were not there (${other.status} ${(await other.text()).slice(0, 120)})`);
  const none = await get(s.base, '/admin/queues', null);
  t.equal(none.status, 401, 'no key: 401 like every route');
  assertContract(t, 'GET', '/admin/queues', 401, await none.json());
});
