// The main thread's handle on the inference thread, over a real thread and the tiny bundle:
// progress sampled from shared memory up to the planned total, output images sent as soon as
// they are final, cancel by AbortSignal, restart while a job runs.
import t from 'tap';
import { UnrecoverableError } from 'bullmq';
import { DiffIdError, isCanceled, plannedSteps, type PayloadOf } from '@diffid/shared/contract';
import { facePattern } from '@diffid/shared/testing';
import { InferenceThreadLost, PROGRESS_INTERVAL_MS, startInference } from '../src/thread/client.ts';
import { buildDemoBundle } from '../src/bundles/demo-bundle.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { finalFailure } from '../src/worker/processor.ts';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { generate } from '../src/pipelines/generate.ts';
import { morph } from '../src/pipelines/morph.ts';
import { stageContext } from '../src/stages/context.ts';
import { morphParams, tempDir, tinyBundleDir } from './helpers.ts';

const morphPayload = (steps: number): PayloadOf<'morph'> => ({ kind: 'morph', params: morphParams({ alphas: [0, 0.5, 1], prompt: 'x', steps, seed: 1 }) });
const images = { image_a: facePattern(1, 64, 64), image_b: facePattern(2, 64, 64) };

t.test('a run reports its progress as it moves and returns the one output shape', async (t) => {
  // Slow steps, so that several samples fall inside the run.
  const client = await startInference({ modelDir: await tinyBundleDir(t, { burnMatmuls: 40 }), executionProvider: 'cpu', intraOpThreads: 1, maxBatch: 2 });
  t.teardown(() => client.close());
  const payload = morphPayload(6);
  const seen: Array<[number, number, number]> = [];
  const out = await client.run({ payload, images }, { onProgress: (step, total) => seen.push([step, total, performance.now()]) });
  const planned = plannedSteps(payload, 2);
  t.equal(planned, 18, '6 steps × (1 inversion + 2 batches of at most 2 frames)');
  t.equal(out.total, planned);
  t.ok(seen.length >= 2, `${seen.length} reports`);
  t.ok(seen.every(([s], i) => s < planned && (i === 0 || s > (seen[i - 1] as [number, number, number])[0])), `steps increase and stay under the total: ${seen.map(([s]) => s).join(' ')}`);
  t.ok(seen.every(([, total]) => total === planned));
  t.ok(seen.every(([, , at], i) => i === 0 || at - (seen[i - 1] as [number, number, number])[2] >= PROGRESS_INTERVAL_MS * 0.9), 'no faster than the sampling interval');
  t.same(out.images.map((i) => i.facts.alpha), [0, 0.5, 1]);
  t.equal(typeof out.facts.arcface_similarity_ab, 'number');
  t.ok(out.inferenceMs > 0);
});

t.test('each output image comes out once its pixels are final, before the job ends: the same pixels, seed and alpha', async (t) => {
  const client = await startInference({ modelDir: await tinyBundleDir(t), executionProvider: 'cpu', intraOpThreads: 1, maxBatch: 2 });
  t.teardown(() => client.close());
  type Early = { index: number; data: Uint8Array; seed: number; alpha: number | undefined };
  const collect = async (payload: PayloadOf<'generate'> | PayloadOf<'morph'>, jobImages: object) => {
    const early: Early[] = [];
    const out = await client.run({ payload, images: jobImages } as Parameters<typeof client.run>[0], {
      onImage: (index, rgb, { seed, alpha }) => early.push({ index, data: rgb.data, seed, alpha }),
    });
    return { out, early };
  };

  const generate = await collect({ kind: 'generate', params: { prompt: 'x', negative_prompt: '', num_images: 3, steps: 3, guidance_scale: 2, seed: 40, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } }, { image: [facePattern(1, 64, 64)] });
  t.same(generate.early.map((e) => e.index), [0, 1, 2], 'generate: every image once, in order');
  t.same(generate.early.map((e) => e.seed), [40, 41, 42], 'with its seed');
  t.ok(generate.early.every((e, i) => Buffer.from(e.data).equals(Buffer.from(generate.out.images[i]?.rgb.data as Uint8Array))), 'the same pixels as the result');

  // 5 frames in batches of 2, paced: the first (measuring) pass sends nothing, the second sends
  // each frame once, with the re-spaced alpha that the result reports.
  const morph = await collect({ kind: 'morph', params: morphParams({ alphas: [0, 0.25, 0.5, 0.75, 1], prompt: 'x', steps: 3, seed: 7, pacing: 'even' }) }, images);
  t.same(morph.early.map((e) => e.index), [0, 1, 2, 3, 4], 'morph: the final pass\'s frames, each once');
  t.same(morph.early.map((e) => e.alpha), morph.out.images.map((i) => i.facts.alpha), 'with the alphas of the result');
  t.not(morph.early[1]?.alpha, 0.25, 'which pacing moved');
  t.ok(morph.early.every((e) => e.seed === 7));
  t.ok(morph.early.every((e, i) => Buffer.from(e.data).equals(Buffer.from(morph.out.images[i]?.rgb.data as Uint8Array))), 'the same pixels as the result');
});

t.test('a morph\'s frames come out batch by batch, and a generate\'s images one VAE call at a time, before they are scored', async (t) => {
  const bundle = await loadBundle(await tinyBundleDir(t));
  t.teardown(() => bundle.release());
  let steps = 0;
  const arrivals: Array<{ index: number; steps: number; scored: boolean }> = [];
  const ctx = stageContext(bundle, {
    onImage: (index) => arrivals.push({ index, steps, scored: 'score' in ctx.clock.totals() }),
    onStep: () => void steps++,
    maxBatch: 2,
  });
  await morph(ctx, { images, params: morphParams({ alphas: [0, 0.25, 0.5, 0.75, 1], prompt: 'x', steps: 4, seed: 1 }) });
  // 4 inversion steps, then 4 per batch of 2 frames.
  t.same(arrivals.map((a) => [a.index, a.steps]), [[0, 8], [1, 8], [2, 12], [3, 12], [4, 16]], 'each batch\'s frames as soon as it is decoded');
  t.ok(arrivals.every((a) => !a.scored), 'before scoring');

  // The VAE decodes one image per call: each image comes out before the next is decoded.
  let vaeCalls = 0;
  const vae = bundle.graphs.vae_decoder;
  const run = vae.run.bind(vae);
  vae.run = (feeds, into) => (vaeCalls++, run(feeds, into));
  t.teardown(() => void (vae.run = run));
  arrivals.length = 0;
  const gen = stageContext(bundle, { onImage: (index) => arrivals.push({ index, steps: vaeCalls, scored: 'score' in gen.clock.totals() }) });
  const out = await generate(gen, { images: { image: [facePattern(1, 64, 64)] }, params: { prompt: 'x', negative_prompt: '', num_images: 3, steps: 2, guidance_scale: 2, seed: 1, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } });
  t.same(arrivals.map((a) => [a.index, a.steps, a.scored]), [[0, 1, false], [1, 2, false], [2, 3, false]], 'generate: each image once, after its own VAE call, before the score stage ran');
  t.ok('score' in gen.clock.totals() && out.images.every((i) => typeof i.facts.arcface_similarity === 'number'), 'which then ran');
});

t.test('a generate job through the thread makes the images the pipeline makes here', async (t) => {
  const dir = await tinyBundleDir(t);
  const client = await startInference({ modelDir: dir, executionProvider: 'cpu', intraOpThreads: 1, maxBatch: 2 });
  t.teardown(() => client.close());
  const bundle = await loadBundle(dir);
  t.teardown(() => bundle.release());
  const photo = { image: [facePattern(1, 64, 64)] };
  const params = (seed: number) => ({ prompt: 'x', negative_prompt: '', num_images: 2, steps: 3, guidance_scale: 2, seed, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' }) as const;
  const pixels = (o: { images: Array<{ rgb: { data: Uint8Array } }> }) => o.images.map((i) => Buffer.from(i.rgb.data).toString('base64'));
  const inProcess = (seed: number) => generate(stageContext(bundle), { images: photo, params: params(seed) });

  const threaded = await client.run({ payload: { kind: 'generate', params: params(40) }, images: photo });
  const here = await inProcess(40);
  t.same(pixels(threaded), pixels(here), 'through the thread: the pipeline\'s own images');
  t.notSame(pixels(await inProcess(99)), pixels(here), 'another seed, other images');
});

// A U-Net slow enough (extra matmuls) that a step outlasts the progress message's trip.
const slowBundle = (t: Parameters<typeof tinyBundleDir>[0]) => tinyBundleDir(t, { burnMatmuls: 40 });

t.test('an aborted signal cancels: before the run at once, during it at the next step', async (t) => {
  const client = await startInference({ modelDir: await slowBundle(t), executionProvider: 'cpu', intraOpThreads: 1, maxBatch: 8 });
  t.teardown(() => client.close());
  const before = new AbortController();
  before.abort();
  const refused = await client.run({ payload: morphPayload(5), images }, { signal: before.signal }).catch((e: unknown) => e);
  t.ok(isCanceled(refused), 'a cancel: DIFFID_ERR_JOB_CANCELED');

  const during = new AbortController();
  let last = -1;
  const run = client.run({ payload: morphPayload(20), images }, {
    signal: during.signal,
    onProgress: (step) => {
      last = step;
      if (step >= 3) during.abort();
    },
  });
  const stopped = await run.catch((e: unknown) => e);
  t.ok(isCanceled(stopped), 'a cancel: DIFFID_ERR_JOB_CANCELED');
  t.equal(finalFailure(stopped)?.message, 'DIFFID_ERR_JOB_CANCELED: the job was canceled', 'which ends the job for good');
  t.ok(last >= 3 && last < plannedSteps(morphPayload(20), 8), `stopped at step ${last}, before the end`);
  const again = await client.run({ payload: { kind: 'compare', params: { priority: 'normal' } }, images });
  t.equal(typeof again.facts.similarity, 'number', 'the thread takes the next job');
});

t.test('a restart stops the job in flight as retryable, and the new thread runs jobs', async (t) => {
  const client = await startInference({ modelDir: await slowBundle(t), executionProvider: 'cpu', intraOpThreads: 1, maxBatch: 8 });
  t.teardown(() => client.close());
  let started!: () => void;
  const running = new Promise<void>((r) => (started = r));
  const run = client.run({ payload: morphPayload(20), images }, { onProgress: (step) => step >= 2 && started() });
  await running;
  await client.restart();
  await t.rejects(run, InferenceThreadLost);
  const out = await client.run({ payload: { kind: 'compare', params: { priority: 'normal' } }, images });
  t.equal(out.total, 1);
});

t.test('errors that end a job for good, and those BullMQ retries', async (t) => {
  const canceled = finalFailure(new DiffIdError('JOB_CANCELED', 'the job was canceled'));
  t.ok(canceled instanceof UnrecoverableError);
  t.equal(canceled?.message, 'DIFFID_ERR_JOB_CANCELED: the job was canceled');
  const bad = finalFailure(new DiffIdError('NO_FACE_DETECTED', 'image: no face found'));
  t.equal(bad?.message, 'DIFFID_ERR_NO_FACE_DETECTED: image: no face found');
  t.equal(finalFailure(new InferenceThreadLost('the thread exited')), null, 'a lost thread is retried');
  t.equal(finalFailure(new Error('ECONNRESET')), null, 'a transient fault is retried');
});

t.test("onnxruntime's output copies do not set off a full garbage collection in every job: the thread's heap starts at DIFFID_INFERENCE_HEAP_MB (256 by default)", async (t) => {
  // The demo bundle's generate of 4 × 30 allocates ~50 MB of output copies; from V8's default
  // start, every such job ran a mark-compact (151 in 151 jobs, docs/benchmarks.md).
  const dir = await tempDir(t, 'diffid-demo-');
  await writeBundle(dir, buildDemoBundle());
  const client = await startInference({ modelDir: dir, executionProvider: 'cpu', intraOpThreads: 1, maxBatch: 4 });
  t.teardown(() => client.close());
  const job = { payload: { kind: 'generate' as const, params: { prompt: 'a photo of a person', negative_prompt: '', num_images: 4, steps: 30, guidance_scale: 5, seed: 1, photos: 1, on_missing_face: 'fail' as const, identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' as const } }, images: { image: [facePattern(1, 256, 256)] } };
  await client.run(job);
  const before = client.gcStats();
  const JOBS = 12;
  for (let i = 0; i < JOBS; i++) await client.run(job);
  const after = client.gcStats();
  t.ok(after.fullGcs - before.fullGcs <= JOBS / 4, `${after.fullGcs - before.fullGcs} full collections in ${JOBS} jobs`);
  t.ok(after.seconds >= before.seconds, 'their pause time is counted with them');
});
