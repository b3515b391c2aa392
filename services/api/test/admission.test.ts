// Admission under concurrency: many submissions at once, to one API process or to two replicas on
// the same Redis, never pass a key's job, step or upload-byte limit, nor the queue's depth or the
// upload bytes in all; a job that leaves gives its room back.
import t, { type Test } from 'tap';
import type { FastifyInstance } from 'fastify';
import { admissionKeys, ownerOpenJobsKey } from '@diffid/shared/contract';
import type { AdmissionLimits } from '@diffid/shared/admission';
import { TEST_REDIS_URL } from '@diffid/shared/testing';
import { apiRedis, buildApp } from '@diffid/api';
import { keyRing, parseApiKeys } from '../src/auth.ts';
import { startStack, type Stack } from './harness.ts';
import { faceFile } from './images.ts';

const ALPHA = 'alpha-key-0123456789abcdef';
const BETA = 'beta-key-0123456789abcdef0';
const keys = keyRing(parseApiKeys(`alpha:${ALPHA},beta:${BETA}`).tenants);
const access = { keys, rateLimitPerMinute: 100_000, maxStreamsPerKey: 10 };
const GENEROUS: AdmissionLimits = { maxJobsPerKey: 1000, maxQueuedStepsPerKey: 1_000_000, maxQueueDepth: 1000, maxInputBytesPerKey: 1 << 30, maxInputBytes: 1 << 30 };

/** A second API process on the stack's Redis keys, as another replica would be. */
async function replica(t: Test, s: Stack, limits: AdmissionLimits): Promise<string> {
  const redis = apiRedis(TEST_REDIS_URL);
  await redis.connect();
  const app: FastifyInstance = await buildApp({ redis, prefix: s.prefix, queueName: s.queueName, inputTtlSeconds: 3600, resultTtlSeconds: 3600, attempts: 1, access, limits }, { logger: false });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(async () => {
    await app.close();
    redis.disconnect();
  });
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
}

const face = await faceFile(1);
const submit = (base: string, key: string, steps = 2) => {
  const fd = new FormData();
  fd.append('image', new Blob([face]), 'a.jpg');
  fd.append('prompt', 'x');
  fd.append('steps', String(steps));
  return fetch(`${base}/generate`, { method: 'POST', body: fd, headers: { authorization: `Bearer ${key}` } });
};

/** Sends all at once; answers each request's status and error code. */
async function burst(requests: Array<() => Promise<Response>>): Promise<Array<{ status: number; code?: string }>> {
  return Promise.all(
    requests.map(async (send) => {
      const res = await send();
      const body = (await res.json()) as { error?: { code: string } };
      return { status: res.status, ...(body.error ? { code: body.error.code } : {}) };
    }),
  );
}
const count = (answers: Array<{ status: number; code?: string }>, status: number, code?: string) => answers.filter((a) => a.status === status && (code === undefined || a.code === code)).length;

t.test("a key's job limit holds exactly under 100 concurrent submissions to two replicas", async (t) => {
  const limits = { ...GENEROUS, maxJobsPerKey: 50 };
  const s = await startStack(t, { worker: false, access, limits });
  const other = await replica(t, s, limits);
  const answers = await burst(Array.from({ length: 100 }, (_, i) => () => submit(i % 2 ? other : s.base, ALPHA)));
  t.equal(count(answers, 202), 50, 'exactly the limit is accepted');
  t.equal(count(answers, 429, 'DIFFID_ERR_TOO_MANY_JOBS'), 50, 'the rest are refused with TOO_MANY_JOBS');
  t.equal(await s.redis.hlen(ownerOpenJobsKey(s.prefix, 'alpha')), 50, 'the key holds 50 admitted jobs');
  t.equal(await s.redis.zcard(admissionKeys(s.prefix).pending), 0, 'no reservation is left pending');
  t.equal((await submit(s.base, BETA)).status, 202, 'another key is not held back');
});

t.test("a key's queued steps hold exactly under 20 concurrent submissions", async (t) => {
  // Each job: 25 steps × 1 image; the limit takes 8 of them.
  const limits = { ...GENEROUS, maxQueuedStepsPerKey: 200 };
  const s = await startStack(t, { worker: false, access, limits });
  const answers = await burst(Array.from({ length: 20 }, () => () => submit(s.base, ALPHA, 25)));
  t.equal(count(answers, 202), 8, '200 steps hold 8 jobs of 25');
  const held = (await s.redis.hvals(ownerOpenJobsKey(s.prefix, 'alpha'))).reduce((n, v) => n + Number(v.split(' ')[0]), 0);
  t.equal(held, 200, 'the key holds 200 steps, not more');
});

t.test('the queue depth holds exactly under 30 concurrent submissions to two replicas', async (t) => {
  const limits = { ...GENEROUS, maxQueueDepth: 10 };
  const s = await startStack(t, { worker: false, access, limits });
  const other = await replica(t, s, limits);
  const answers = await burst(Array.from({ length: 30 }, (_, i) => () => submit(i % 2 ? other : s.base, i % 3 ? ALPHA : BETA)));
  t.equal(count(answers, 202), 10, 'exactly the depth is accepted');
  t.equal(count(answers, 503, 'DIFFID_ERR_QUEUE_FULL'), 20, 'the rest get QUEUE_FULL');
});

t.test('upload bytes: per key, then in all; a canceled job gives its bytes back', async (t) => {
  const size = face.length;
  const limits = { ...GENEROUS, maxInputBytesPerKey: 3 * size, maxInputBytes: 5 * size };
  const s = await startStack(t, { worker: false, access, limits });
  const alpha = await burst(Array.from({ length: 6 }, () => () => submit(s.base, ALPHA)));
  t.equal(count(alpha, 202), 3, "a key's uploads stop at its byte limit");
  t.equal(count(alpha, 429, 'DIFFID_ERR_TOO_MANY_JOBS'), 3);
  const refused = await submit(s.base, ALPHA);
  t.match(((await refused.json()) as { error: { message: string } }).error.message, /uploads .* its limit is/, 'the message names the byte limit');
  const beta = await burst(Array.from({ length: 4 }, () => () => submit(s.base, BETA)));
  t.equal(count(beta, 202), 2, 'the bytes in all stop at theirs');
  const full = await submit(s.base, BETA);
  t.equal(full.status, 503);
  t.equal(full.headers.get('retry-after'), '30');
  t.equal(((await full.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_STORAGE_FULL');
  t.equal(Number(await s.redis.get(admissionKeys(s.prefix).inputBytesTotal)), 5 * size, 'the count is the bytes held');

  // Cancel one of beta's: its bytes are free again, for beta and in all.
  const mine = await s.redis.hkeys(ownerOpenJobsKey(s.prefix, 'beta'));
  const del = await fetch(`${s.base}/jobs/${mine[0]}`, { method: 'DELETE', headers: { authorization: `Bearer ${BETA}` } });
  t.equal(del.status, 200);
  t.equal(Number(await s.redis.get(admissionKeys(s.prefix).inputBytesTotal)), 4 * size, 'the canceled job no longer counts');
  t.equal((await submit(s.base, BETA)).status, 202, 'there is room again');
});

t.test('a worker that finishes a job gives its upload bytes back', async (t) => {
  const s = await startStack(t, { access, limits: GENEROUS });
  const res = await fetch(`${s.base}/generate`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ALPHA}`, prefer: 'wait=60' },
    body: (() => {
      const fd = new FormData();
      fd.append('image', new Blob([face]), 'a.jpg');
      fd.append('prompt', 'x');
      fd.append('steps', '2');
      return fd;
    })(),
  });
  t.equal(((await res.json()) as { status: string }).status, 'succeeded');
  t.equal(Number(await s.redis.get(admissionKeys(s.prefix).inputBytesTotal)), 0, 'nothing is counted once the job is done');
  t.equal(await s.redis.hlen(admissionKeys(s.prefix).inputBytes), 0);
});
