// Every bad request gets its 4xx and stable code, matching openapi.yaml — never a 500 or a hang.
import { crc32 } from 'node:zlib';
import t from 'tap';
import { Redis } from 'ioredis';
import { ERROR_CATALOGUE } from '@diffid/shared/contract';
import { encodeImage } from '@diffid/shared/image';
import { TEST_REDIS_URL } from '@diffid/shared/testing';
import { buildApp } from '../src/app.ts';
import { openapiDocument } from '@diffid/shared/openapi';
import { assertContract, call } from './contract.ts';
import { finished, pollJob, postForm, startStack, type Fields } from './harness.ts';
import { faceFile } from './images.ts';

t.test('every catalogue code is listed in openapi.yaml and nothing else is', async (t) => {
  const listed = (openapiDocument.components.schemas.ErrorCode as { enum: string[] }).enum;
  t.same([...listed].sort(), Object.values(ERROR_CATALOGUE).map((e) => e.code).sort());
});

t.test('an upload whose header is sound but whose data is cut short is taken, and its job fails naming it', async (t) => {
  // The API reads headers only (decoding is the worker's): such a file gets its 202.
  const s = await startStack(t);
  const truncated = { bytes: (await faceFile(2)).subarray(0, 600) };
  const res = await postForm(s.base, '/generate', { image: truncated, prompt: 'x' });
  t.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  const view = await pollJob(s.base, id, finished);
  t.equal(view.status, 'failed');
  t.equal(view.error.code, 'DIFFID_ERR_UNSUPPORTED_IMAGE');
  t.match(view.error.message, /^image: the JPEG data cannot be decoded/);
});

t.test('bad requests get their codes', async (t) => {
  const s = await startStack(t, { worker: false });
  const jpeg = { bytes: await faceFile(1) };
  const good = { image: jpeg, prompt: 'a person' };
  // A 1×30000 strip: its short side resized to CLIP's 224 would make a 6.7-million-pixel-long image.
  const strip = { bytes: await encodeImage({ width: 1, height: 30_000, data: new Uint8Array(30_000 * 3).fill(90) }, 'png') };
  // A PNG whose header claims 12000×16000 pixels (192 MP): refused from the header, never decoded.
  const huge = Buffer.from(await encodeImage({ width: 4, height: 4, data: new Uint8Array(48) }, 'png'));
  huge.writeUInt32BE(12_000, 16);
  huge.writeUInt32BE(16_000, 20);
  huge.writeUInt32BE(crc32(huge.subarray(12, 29)), 29);
  const cases: Array<[string, string, Fields, number, string, RegExp?]> = [
    ['missing image', '/generate', { prompt: 'a person' }, 400, 'DIFFID_ERR_MISSING_FILE', /"image" is missing/],
    ['missing prompt', '/generate', { image: jpeg }, 400, 'DIFFID_ERR_VALIDATION', /"prompt" is required/],
    ['extra file', '/generate', { ...good, image_b: jpeg }, 400, 'DIFFID_ERR_UNEXPECTED_FIELD', /no file "image_b"/],
    ['unknown field', '/generate', { ...good, strength: 2 }, 400, 'DIFFID_ERR_UNEXPECTED_FIELD', /"strength" is not a field/],
    ['image given as text', '/generate', { image: 'face.jpg', prompt: 'x' }, 400, 'DIFFID_ERR_VALIDATION', /must be a file upload/],
    ['text file as image', '/generate', { image: { bytes: new TextEncoder().encode('hello, not an image'), type: 'image/jpeg' }, prompt: 'x' }, 415, 'DIFFID_ERR_UNSUPPORTED_IMAGE', /checked by its bytes/],
    ['empty file', '/generate', { image: { bytes: new Uint8Array(0) }, prompt: 'x' }, 415, 'DIFFID_ERR_UNSUPPORTED_IMAGE', /empty/],
    ['a 1×30000 strip', '/generate', { image: strip, prompt: 'x' }, 415, 'DIFFID_ERR_UNSUPPORTED_IMAGE', /1×30000 pixels is more than 10 times as long one way as the other; crop the photo around the face/],
    ['a 12000×16000 photo', '/generate', { image: { bytes: huge }, prompt: 'x' }, 413, 'DIFFID_ERR_FILE_TOO_LARGE', /image: the image is 12000×16000 pixels \(192 megapixels\); the limit is 40 megapixels\. Downscale it/],
    ['too many images', '/generate', { ...good, num_images: 9 }, 400, 'DIFFID_ERR_VALIDATION', /"num_images" must be ≤ 8 \(got 9\)/],
    ['zero steps', '/generate', { ...good, steps: 0 }, 400, 'DIFFID_ERR_VALIDATION', /"steps" must be ≥ 1/],
    ['fractional steps', '/generate', { ...good, steps: 2.5 }, 400, 'DIFFID_ERR_VALIDATION', /"steps" must be a whole number/],
    ['guidance not a number', '/generate', { ...good, guidance_scale: 'high' }, 400, 'DIFFID_ERR_VALIDATION', /"guidance_scale" must be a number/],
    ['negative seed', '/generate', { ...good, seed: -1 }, 400, 'DIFFID_ERR_VALIDATION', /"seed" must be ≥ 0/],
    ['seed too large', '/generate', { ...good, seed: 2 ** 32 }, 400, 'DIFFID_ERR_VALIDATION', /"seed" must be ≤ 4294967295/],
    ['long prompt', '/generate', { image: jpeg, prompt: 'a'.repeat(1001) }, 400, 'DIFFID_ERR_PROMPT_TOO_LONG', /longer than 1000 characters/],
    ['very long prompt', '/generate', { image: jpeg, prompt: 'a'.repeat(40_000) }, 400, 'DIFFID_ERR_PROMPT_TOO_LONG'],
    ['empty prompt', '/generate', { image: jpeg, prompt: '' }, 400, 'DIFFID_ERR_VALIDATION'],
    ['morph without image_b', '/morph', { image_a: jpeg, alpha: 0.5 }, 400, 'DIFFID_ERR_MISSING_FILE', /"image_b" is missing/],
    ['morph without a factor', '/morph', { image_a: jpeg, image_b: jpeg }, 400, 'DIFFID_ERR_VALIDATION', /one of alpha, alphas or frames/],
    ['morph with two factors', '/morph', { image_a: jpeg, image_b: jpeg, alpha: 0.2, frames: 3 }, 400, 'DIFFID_ERR_VALIDATION', /not alpha and frames/],
    ['alpha above 1', '/morph', { image_a: jpeg, image_b: jpeg, alpha: 1.5 }, 400, 'DIFFID_ERR_VALIDATION', /"alpha" must be ≤ 1/],
    ['alphas out of range', '/morph', { image_a: jpeg, image_b: jpeg, alphas: '0,0.5,2' }, 400, 'DIFFID_ERR_VALIDATION', /"2" is not/],
    ['alphas not numbers', '/morph', { image_a: jpeg, image_b: jpeg, alphas: 'a,b' }, 400, 'DIFFID_ERR_VALIDATION'],
    ['alphas with an empty item', '/morph', { image_a: jpeg, image_b: jpeg, alphas: '0,,1' }, 400, 'DIFFID_ERR_VALIDATION'],
    ['one frame', '/morph', { image_a: jpeg, image_b: jpeg, frames: 1 }, 400, 'DIFFID_ERR_VALIDATION', /"frames" must be ≥ 2/],
    ['unknown interpolation', '/morph', { image_a: jpeg, image_b: jpeg, alpha: 0.5, interpolation: 'cubic' }, 400, 'DIFFID_ERR_VALIDATION', /one of slerp, lerp/],
    ['generate file on morph', '/morph', { image: jpeg, image_a: jpeg, image_b: jpeg, alpha: 0.5 }, 400, 'DIFFID_ERR_UNEXPECTED_FIELD'],
  ];
  for (const [name, path, fields, status, code, message] of cases) {
    const res = await postForm(s.base, path, fields);
    const body = (await res.json()) as { error: { code: string; message: string } };
    t.equal(res.status, status, `${name}: status`);
    t.equal(body.error?.code, code, `${name}: code (${body.error?.message})`);
    if (message) t.match(body.error.message, message, `${name}: message says what to fix`);
    assertContract(t, 'POST', path, res.status, body);
  }
  t.same(await s.redis.keys(`${s.prefix}:job:*`), [], 'no rejected request stored an image');
  t.equal(await s.redis.exists(`${s.prefix}:jobs:wait`), 0, 'nor queued a job');
});

t.test('non-multipart bodies are 415 NOT_MULTIPART', async (t) => {
  const s = await startStack(t, { worker: false });
  for (const [type, body] of [['application/json', '{"prompt":"x"}'], ['text/plain', 'hello'], ['application/x-www-form-urlencoded', 'prompt=x']] as const) {
    const res = await call(t, s.base, 'POST', '/generate', '/generate', { body, headers: { 'content-type': type } });
    t.equal(res.status, 415, type);
    t.equal(res.body.error.code, 'DIFFID_ERR_NOT_MULTIPART', type);
  }
  const none = await call(t, s.base, 'POST', '/morph', '/morph');
  t.equal(none.status, 415);
});

t.test('malformed multipart bodies are 400 VALIDATION, never a 500', async (t) => {
  const s = await startStack(t, { worker: false });
  const bodies: Array<[string, string, string]> = [
    ['no boundary', 'multipart/form-data', 'abc'],
    ['garbage', 'multipart/form-data; boundary=XYZ', 'garbage'],
    ['truncated part', 'multipart/form-data; boundary=XYZ', '--XYZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nhello'],
    ['part without a name', 'multipart/form-data; boundary=XYZ', '--XYZ\r\nContent-Type: text/plain\r\n\r\nhello\r\n--XYZ--\r\n'],
  ];
  for (const [name, type, body] of bodies) {
    const res = await call(t, s.base, 'POST', '/generate', '/generate', { body, headers: { 'content-type': type } });
    t.ok(res.status >= 400 && res.status < 500, `${name}: ${res.status} ${res.body.error?.code}`);
    t.not(res.body.error?.code, 'DIFFID_ERR_INTERNAL', `${name}: not an internal error`);
  }
});

t.test('an upload over 20 MB is 413 FILE_TOO_LARGE', async (t) => {
  const s = await startStack(t, { worker: false });
  const big = new Uint8Array(21 * 1024 * 1024);
  big.set(await faceFile(3));
  const res = await postForm(s.base, '/generate', { image: { bytes: big }, prompt: 'x' });
  t.equal(res.status, 413);
  t.equal(((await res.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_FILE_TOO_LARGE');
});

t.test('unknown jobs, images and routes are 404 with their codes', async (t) => {
  const s = await startStack(t, { worker: false });
  const unknown = '00000000-0000-4000-8000-000000000000';
  const job = await call(t, s.base, 'GET', `/jobs/${unknown}`, '/jobs/{id}');
  t.equal(job.status, 404);
  t.equal(job.body.error.code, 'DIFFID_ERR_JOB_NOT_FOUND');
  const malformed = await call(t, s.base, 'GET', '/jobs/..%2F..%2Fetc', '/jobs/{id}');
  t.equal(malformed.status, 404);
  const tooLong = await call(t, s.base, 'GET', `/jobs/${'x'.repeat(100)}`, '/jobs/{id}');
  t.equal(tooLong.status, 400, 'an id longer than 64 characters fails the path schema');
  t.equal(tooLong.body.error.code, 'DIFFID_ERR_VALIDATION');
  const del = await call(t, s.base, 'DELETE', `/jobs/${unknown}`, '/jobs/{id}');
  t.equal(del.status, 404);
  t.equal(del.body.error.code, 'DIFFID_ERR_JOB_NOT_FOUND');
  const img = await call(t, s.base, 'GET', `/jobs/${unknown}/images/0.png`, '/jobs/{id}/images/{n}.png');
  t.equal(img.body.error.code, 'DIFFID_ERR_JOB_NOT_FOUND');
  const res = await postForm(s.base, '/generate', { image: { bytes: await faceFile(4) }, prompt: 'x', steps: 2 });
  const { id } = (await res.json()) as { id: string };
  const notYet = await call(t, s.base, 'GET', `/jobs/${id}/images/0.png`, '/jobs/{id}/images/{n}.png');
  t.equal(notYet.status, 404);
  t.equal(notYet.body.error.code, 'DIFFID_ERR_IMAGE_NOT_FOUND', 'a queued job has no images yet');
  const badName = await call(t, s.base, 'GET', `/jobs/${id}/images/first.png`, '/jobs/{id}/images/{n}.png');
  t.equal(badName.body.error.code, 'DIFFID_ERR_IMAGE_NOT_FOUND');
  const route = await fetch(`${s.base}/nope`);
  t.equal(route.status, 404);
  t.equal(((await route.json()) as { error: { code: string } }).error.code, 'DIFFID_ERR_ROUTE_NOT_FOUND');
});

t.test('service routes: health, readiness, the contract and its rendered docs', async (t) => {
  const s = await startStack(t, { worker: false });
  t.same((await call(t, s.base, 'GET', '/healthz', '/healthz')).body, { status: 'ok' });
  t.same((await call(t, s.base, 'GET', '/readyz', '/readyz')).body, { status: 'ready' });
  const yaml = await fetch(`${s.base}/openapi.yaml`);
  t.equal(yaml.status, 200);
  t.match(await yaml.text(), /^openapi: 3\.1\.0/);
  const docs = await fetch(`${s.base}/docs/`);
  t.equal(docs.status, 200);
  t.match(await docs.text(), /swagger-ui/i);
  const json = (await (await fetch(`${s.base}/docs/json`)).json()) as { paths: Record<string, unknown> };
  t.ok(json.paths['/generate'] && json.paths['/morph'], 'the rendered docs serve openapi.yaml');
});

t.test('when Redis goes away, routes answer 503 QUEUE_UNAVAILABLE at once', async (t) => {
  // Connected as server.ts connects, then cut off with no reconnection: commands fail fast.
  const dead = new Redis(TEST_REDIS_URL, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 1, retryStrategy: () => null });
  dead.on('error', () => undefined);
  await dead.connect();
  const app = await buildApp({ redis: dead, prefix: 'diffid-test-dead', queueName: 'jobs', inputTtlSeconds: 60, resultTtlSeconds: 60, attempts: 1 }, { logger: false });
  await app.ready();
  dead.disconnect();
  t.teardown(() => app.close().catch(() => undefined));
  const ready = await app.inject({ method: 'GET', url: '/readyz' });
  t.equal(ready.statusCode, 503);
  t.equal(ready.json().error.code, 'DIFFID_ERR_QUEUE_UNAVAILABLE');
  assertContract(t, 'GET', '/readyz', 503, ready.json());
  t.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'the process itself is alive');
  const job = await app.inject({ method: 'GET', url: '/jobs/00000000-0000-4000-8000-000000000000' });
  t.equal(job.statusCode, 503);
  t.equal(job.json().error.code, 'DIFFID_ERR_QUEUE_UNAVAILABLE');
  t.notMatch(job.json().error.message, /127\.0\.0\.1|ECONNREFUSED|writeable/, '5xx details stay in the logs');
});
