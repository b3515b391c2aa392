// The product's main path through real HTTP, real Redis, a real worker and onnxruntime sessions.
import t from 'tap';
import { imageInfo, decodeRgb } from '@diffid/shared/image';
import { assertContract, call } from './contract.ts';
import { finished, pollJob, postForm, startStack } from './harness.ts';
import { faceFile } from './images.ts';

t.test('generate: 202, progress to succeeded, PNGs at the bundle size with finite similarities', async (t) => {
  const s = await startStack(t);
  const image = await faceFile(1);
  const res = await postForm(s.base, '/generate', { image: { bytes: image }, prompt: 'a photo of a person smiling', num_images: 3, steps: 8, seed: 11 });
  t.equal(res.status, 202);
  const accepted = (await res.json()) as { id: string; status: string; links: { self: string } };
  assertContract(t, 'POST', '/generate', 202, accepted);
  t.match(accepted.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a random (v4) UUID');
  t.equal(accepted.status, 'queued');
  t.equal(res.headers.get('location'), `/jobs/${accepted.id}`);

  const view = await pollJob(s.base, accepted.id, finished);
  t.equal(view.status, 'succeeded', JSON.stringify(view.error ?? ''));
  const checked = await call(t, s.base, 'GET', `/jobs/${accepted.id}`, '/jobs/{id}');
  t.same(checked.body.progress, { step: 8, total: 8 });
  t.same(checked.body.params, { prompt: 'a photo of a person smiling', negative_prompt: '', num_images: 3, steps: 8, guidance_scale: 5, seed: 11, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' });
  t.ok(Date.parse(checked.body.finished_at) >= Date.parse(checked.body.started_at));
  const images = checked.body.result.images as Array<Record<string, number | string>>;
  t.same(images.map((i) => i.seed), [11, 12, 13], 'image i has seed + i');
  for (const img of images) {
    t.ok(Number.isFinite(img.arcface_similarity) && Math.abs(img.arcface_similarity as number) <= 1, `similarity ${img.arcface_similarity}`);
    const png = await call(t, s.base, 'GET', img.url as string, '/jobs/{id}/images/{n}.png');
    t.equal(png.status, 200);
    t.equal(png.headers.get('content-type'), 'image/png');
    t.same(await imageInfo(png.body), { format: 'png', width: 64, height: 64, channels: 3 }, 'sharp decodes a 64×64 RGB PNG');
  }
  const timings = checked.body.result.timings_ms as { total: number; inference: number; onnxruntime: number; stages: Record<string, number> };
  t.ok(timings.inference <= timings.total, 'the inference run is part of the job');
  t.ok(timings.onnxruntime > 0 && timings.onnxruntime <= timings.inference, `onnxruntime's time (${timings.onnxruntime} ms) is part of the run (${timings.inference} ms)`);
  t.same(Object.keys(timings.stages), ['find_faces', 'embed', 'encode_prompt', 'condition', 'denoise', 'decode', 'score'], 'every stage of generate, in the order it ran');
  const staged = Object.values(timings.stages).reduce((a, b) => a + b, 0);
  // Each stage is rounded to whole milliseconds: allow one per stage.
  t.ok(staged <= timings.inference + Object.keys(timings.stages).length, `the stages' wall times (${staged} ms) fit in the run's (${timings.inference} ms)`);
  const ttl = await s.redis.pttl(`${s.prefix}:job:${accepted.id}:result:0`);
  t.ok(ttl > 0 && ttl <= 3600 * 1000, `result images expire (TTL ${ttl} ms of the configured 3600 s)`);
  t.equal(await s.redis.exists(`${s.prefix}:job:${accepted.id}:input:image`), 0, 'the upload is deleted once the job is done');
  t.notOk(JSON.stringify(await s.redis.hgetall(`${s.prefix}:${s.queueName}:${accepted.id}`)).includes('/9j/'), 'no image bytes sit in the job data');
});

t.test('the same seed gives byte-identical PNGs; a seed names an image whatever the batch', async (t) => {
  const s = await startStack(t);
  const image = await faceFile(2, 'png');
  const run = async (fields: Record<string, string | number>) => {
    const res = await postForm(s.base, '/generate', { image: { bytes: image, type: 'image/png', name: 'face.png' }, prompt: 'portrait', steps: 6, ...fields });
    const { id } = (await res.json()) as { id: string };
    const view = await pollJob(s.base, id, finished);
    t.equal(view.status, 'succeeded');
    return Promise.all((view.result.images as Array<{ url: string }>).map(async (i) => Buffer.from(await (await fetch(`${s.base}${i.url}`)).arrayBuffer())));
  };
  const [a] = await run({ seed: 5 });
  const [b] = await run({ seed: 5 });
  t.ok(a && b && a.equals(b), 'two runs with seed 5 give the same bytes');
  const batch = await run({ seed: 3, num_images: 3 });
  const [single] = await run({ seed: 5, num_images: 1 });
  const x = await decodeRgb(batch[2] as Buffer);
  const y = await decodeRgb(single as Buffer);
  let worst = 0;
  for (let i = 0; i < x.data.length; i++) worst = Math.max(worst, Math.abs((x.data[i] as number) - (y.data[i] as number)));
  t.ok(worst <= 1, `the third image of a batch from seed 3 equals a lone image from seed 5 (max pixel difference ${worst})`);
  const [other] = await run({ seed: 6 });
  t.notOk((other as Buffer).equals(a as Buffer), 'another seed gives another image');
});

t.test('morph with alphas=0,0.5,1 returns three frames with both similarities', async (t) => {
  const s = await startStack(t);
  const res = await postForm(s.base, '/morph', {
    image_a: { bytes: await faceFile(3) },
    image_b: { bytes: await faceFile(4, 'webp'), type: 'image/webp', name: 'b.webp' },
    alphas: '0, 0.5, 1',
    steps: 6,
    prompt: 'a photo',
  });
  t.equal(res.status, 202);
  const receipt = (await res.json()) as { id: string };
  assertContract(t, 'POST', '/morph', 202, receipt);
  const { id } = receipt;
  const view = await pollJob(s.base, id, finished);
  t.equal(view.status, 'succeeded', JSON.stringify(view.error ?? ''));
  const checked = await call(t, s.base, 'GET', `/jobs/${id}`, '/jobs/{id}');
  t.same(checked.body.params.alphas, [0, 0.5, 1]);
  t.equal(checked.body.params.strategy, 'slerp');
  t.same(checked.body.progress, { step: 12, total: 12 }, 'one inversion run and one sampling run of 6 steps');
  const frames = checked.body.result.images as Array<Record<string, number>>;
  t.same(frames.map((f) => f.alpha), [0, 0.5, 1]);
  for (const f of frames) {
    for (const k of ['arcface_similarity_a', 'arcface_similarity_b'] as const) t.ok(Math.abs(f[k] as number) <= 1, `${k} = ${f[k]}`);
  }
  const ab = checked.body.result.arcface_similarity_ab as number;
  t.ok(Number.isFinite(ab) && Math.abs(ab) <= 1, `similarity of A to B ${ab}`);
  const png = await fetch(`${s.base}/jobs/${id}/images/2.png`);
  t.equal(png.status, 200);
});

t.test('morph with frames=4 spaces alphas evenly, lerp on request', async (t) => {
  const s = await startStack(t);
  const res = await postForm(s.base, '/morph', { image_a: { bytes: await faceFile(5) }, image_b: { bytes: await faceFile(6) }, frames: 4, interpolation: 'lerp', steps: 3 });
  const { id } = (await res.json()) as { id: string };
  const view = await pollJob(s.base, id, finished);
  t.equal(view.status, 'succeeded');
  t.same(view.params.alphas, [0, 1 / 3, 2 / 3, 1]);
  t.equal(view.params.strategy, 'lerp', 'the deprecated interpolation names the strategy');
  t.equal(view.result.images.length, 4);
});

t.test('the event stream follows a job from its first state to succeeded', async (t) => {
  const s = await startStack(t);
  const res = await postForm(s.base, '/generate', { image: { bytes: await faceFile(7) }, prompt: 'a face', steps: 10, seed: 1 });
  const { id } = (await res.json()) as { id: string };
  const stream = await fetch(`${s.base}/jobs/${id}/events`);
  t.equal(stream.status, 200);
  t.match(stream.headers.get('content-type'), /^text\/event-stream/);
  const text = await stream.text(); // the server ends the stream at a terminal state
  const events = text.split('\n\n').filter((b) => b.startsWith('event: job')).map((b) => JSON.parse(b.split('\ndata: ')[1] as string));
  t.ok(events.length >= 2, `${events.length} events`);
  t.equal(events.at(-1).status, 'succeeded');
  const steps = events.map((e) => e.progress.step as number);
  t.same(steps, [...steps].sort((a, b) => a - b), 'progress never goes backwards');
  const missing = await call(t, s.base, 'GET', '/jobs/00000000-0000-4000-8000-000000000000/events', '/jobs/{id}/events');
  t.equal(missing.status, 404);
  t.equal(missing.body.error.code, 'DIFFID_ERR_JOB_NOT_FOUND');
});

t.test('a queued job canceled with DELETE never runs and reports canceled', async (t) => {
  const s = await startStack(t, { worker: false });
  const res = await postForm(s.base, '/generate', { image: { bytes: await faceFile(8) }, prompt: 'x', steps: 4 });
  const { id } = (await res.json()) as { id: string };
  const queued = await call(t, s.base, 'GET', `/jobs/${id}`, '/jobs/{id}');
  t.equal(queued.body.status, 'queued');
  t.same(queued.body.progress, { step: 0, total: 4 });
  const del = await call(t, s.base, 'DELETE', `/jobs/${id}`, '/jobs/{id}');
  t.equal(del.status, 200);
  t.equal(del.body.status, 'canceled');
  t.equal(del.body.error.code, 'DIFFID_ERR_JOB_CANCELED');
  const again = await call(t, s.base, 'DELETE', `/jobs/${id}`, '/jobs/{id}');
  t.equal(again.status, 200, 'canceling twice is harmless');
  const after = await call(t, s.base, 'GET', `/jobs/${id}`, '/jobs/{id}');
  t.equal(after.body.status, 'canceled');
  t.equal(await s.redis.exists(`${s.prefix}:job:${id}:input:image`), 0, 'the upload is removed');
  t.equal(await s.redis.exists(`${s.prefix}:jobs:${id}`), 0, 'the queued job is removed from BullMQ');
});

t.test('DELETE of a finished job is 409; its images stay', async (t) => {
  const s = await startStack(t);
  const res = await postForm(s.base, '/generate', { image: { bytes: await faceFile(9) }, prompt: 'x', steps: 2 });
  const { id } = (await res.json()) as { id: string };
  await pollJob(s.base, id, finished);
  const del = await call(t, s.base, 'DELETE', `/jobs/${id}`, '/jobs/{id}');
  t.equal(del.status, 409);
  t.equal(del.body.error.code, 'DIFFID_ERR_JOB_FINISHED');
  t.equal((await fetch(`${s.base}/jobs/${id}/images/0.png`)).status, 200);
});

t.test('queued jobs of every kind answer with their planned steps, which the running job keeps', async (t) => {
  const s = await startStack(t, { worker: false });
  const a = { bytes: await faceFile(10) };
  const b = { bytes: await faceFile(11) };
  const submit = async (path: string, fields: Parameters<typeof postForm>[2]) => ((await (await postForm(s.base, path, fields)).json()) as { id: string }).id;
  const compare = await submit('/compare', { image_a: a, image_b: b });
  const morph = await submit('/morph', { image_a: a, image_b: b, frames: 5, steps: 3 });
  const queued = async (id: string) => (await call(t, s.base, 'GET', `/jobs/${id}`, '/jobs/{id}')).body;
  // Before any worker published its batch limit, the default (8) plans the morph: 3 × (1 + 1).
  t.same((await queued(compare)).progress, { step: 0, total: 1 }, 'a queued compare is a job with one step (it was a 500)');
  t.same((await queued(morph)).progress, { step: 0, total: 6 });
  // A worker with DIFFID_MAX_BATCH=2 publishes it; the plan follows: 3 × (1 + ⌈5 / 2⌉).
  await s.redis.set(`${s.prefix}:bundle`, JSON.stringify({ name: 'x', architecture: 'diff-id', image: { width: 64, height: 64 }, defaults: {}, face_detector: false, max_batch: 2 }));
  await new Promise((r) => setTimeout(r, 5100)); // the API caches bundle info for 5 s
  t.same((await queued(morph)).progress, { step: 0, total: 12 });
  for (const id of [compare, morph]) t.equal((await call(t, s.base, 'DELETE', `/jobs/${id}`, '/jobs/{id}')).body.status, 'canceled');
});

t.test('a running morph counts to the total it showed while queued', async (t) => {
  const s = await startStack(t);
  const res = await postForm(s.base, '/morph', { image_a: { bytes: await faceFile(12) }, image_b: { bytes: await faceFile(13) }, frames: 10, steps: 4 });
  const { id } = (await res.json()) as { id: string };
  const totals = new Set<number>();
  const view = await pollJob(s.base, id, (v) => {
    totals.add(v.progress.total);
    return finished(v);
  });
  t.equal(view.status, 'succeeded');
  // The stack's worker batches 8 frames: 4 × (1 + ⌈10 / 8⌉) = 12, from the first view to the last.
  t.same([...totals], [12], 'one total throughout');
  t.same(view.progress, { step: 12, total: 12 });
});
