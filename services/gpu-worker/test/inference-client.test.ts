// The main thread's handle on the inference thread, over a real thread and the tiny bundle:
// progress sampled from shared memory up to the planned total, cancel by AbortSignal, restart
// while a job runs.
import t from 'tap';
import { UnrecoverableError } from 'bullmq';
import { DiffIdError, plannedSteps, type PayloadOf } from '@diffid/shared';
import { facePattern } from '@diffid/shared/testing';
import { InferenceCanceled, InferenceThreadLost, PROGRESS_INTERVAL_MS, startInference } from '../src/inference-client.ts';
import { finalFailure } from '../src/worker-service.ts';
import { tinyBundleDir } from './helpers.ts';

const morphPayload = (steps: number): PayloadOf<'morph'> => ({ kind: 'morph', params: { alphas: [0, 0.5, 1], interpolation: 'slerp', prompt: 'x', steps, seed: 1 } });
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

// A U-Net slow enough (extra matmuls) that a step outlasts the progress message's trip.
const slowBundle = (t: Parameters<typeof tinyBundleDir>[0]) => tinyBundleDir(t, { burnMatmuls: 40 });

t.test('an aborted signal cancels: before the run at once, during it at the next step', async (t) => {
  const client = await startInference({ modelDir: await slowBundle(t), executionProvider: 'cpu', intraOpThreads: 1, maxBatch: 8 });
  t.teardown(() => client.close());
  const before = new AbortController();
  before.abort();
  t.rejects(client.run({ payload: morphPayload(5), images }, { signal: before.signal }), InferenceCanceled);

  const during = new AbortController();
  let last = -1;
  const run = client.run({ payload: morphPayload(20), images }, {
    signal: during.signal,
    onProgress: (step) => {
      last = step;
      if (step >= 3) during.abort();
    },
  });
  await t.rejects(run, InferenceCanceled);
  t.ok(last >= 3 && last < plannedSteps(morphPayload(20), 8), `stopped at step ${last}, before the end`);
  const again = await client.run({ payload: { kind: 'compare', params: {} }, images });
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
  const out = await client.run({ payload: { kind: 'compare', params: {} }, images });
  t.equal(out.total, 1);
});

t.test('errors that end a job for good, and those BullMQ retries', async (t) => {
  const canceled = finalFailure(new InferenceCanceled());
  t.ok(canceled instanceof UnrecoverableError);
  t.equal(canceled?.message, 'DIFFID_ERR_JOB_CANCELED: the job was canceled');
  const bad = finalFailure(new DiffIdError('NO_FACE_DETECTED', 'image: no face found'));
  t.equal(bad?.message, 'DIFFID_ERR_NO_FACE_DETECTED: image: no face found');
  t.equal(finalFailure(new InferenceThreadLost('the thread exited')), null, 'a lost thread is retried');
  t.equal(finalFailure(new Error('ECONNRESET')), null, 'a transient fault is retried');
});
