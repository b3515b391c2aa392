// The job runner without BullMQ: a payload and a context in, a result out, over real Redis and
// real image codecs, with the inference thread replaced by a recorder that returns fixed pixels.
import t from 'tap';
import { join } from 'node:path';
import { admission } from '@diffid/shared/admission';
import { c2paCredentials } from '@diffid/shared/c2pa';
import { DEFAULT_SETTINGS } from '@diffid/shared/settings';
import { DiffIdError, isCanceled, jobKeys, type BundleInfo, type JobProgress, type PayloadOf } from '@diffid/shared/contract';
import { decodeRgb, encodeImage, imageXmp } from '@diffid/shared/image';
import { facePattern, redisScope } from '@diffid/shared/testing';
import type { InferenceJob, InferenceJobOf } from '../src/pipelines/pipeline.ts';
import type { BundleDims } from '../src/runtime/bundle-signature.ts';
import type { RunOptions } from '../src/thread/client.ts';
import type { InferenceOutput } from '../src/thread/protocol.ts';
import { createJobRunner, type JobContext } from '../src/worker/job-runner.ts';

const ID = '0b7e3f9a-1c2d-4e5f-8a9b-0c1d2e3f4a5b';

function fakeInference(output: InferenceOutput) {
  const calls: Array<{ job: InferenceJob; options: RunOptions | undefined }> = [];
  return {
    calls,
    inference: {
      bundle: { name: 'fake', dir: '/nowhere', digest: 'ab'.repeat(32), dims: {} as BundleDims, info: {} as Omit<BundleInfo, 'max_batch'> },
      async run(job: InferenceJob, options?: RunOptions) {
        calls.push({ job, options });
        options?.onProgress?.(0, output.total);
        return output;
      },
    },
  };
}

function context(): JobContext & { reported: JobProgress[]; controller: AbortController } {
  const controller = new AbortController();
  const reported: JobProgress[] = [];
  return { id: ID, signal: controller.signal, progress: (p) => reported.push(p), reported, controller };
}

const rgb = (seed: number) => ({ ...facePattern(seed, 24, 16) });
/** The worker's C2PA credentials as a worker without settings makes them. */
const signer = () => c2paCredentials({ dir: join(DEFAULT_SETTINGS.dataDir, 'c2pa'), commonName: 'Diff-ID Serve' });

t.test('a morph job: its two images read and decoded, PNGs stored, inputs deleted, one result shape back', async (t) => {
  const scope = await redisScope('handlers');
  t.teardown(() => scope.cleanup());
  const keys = jobKeys(scope.prefix, ID);
  await scope.redis.set(keys.input('image_a'), await encodeImage(facePattern(1, 40, 30), 'png'));
  await scope.redis.set(keys.input('image_b'), await encodeImage(facePattern(2, 50, 20), 'png'));
  const { calls, inference } = fakeInference({
    images: [
      { rgb: rgb(3), facts: { seed: 9, alpha: 0, arcface_similarity_a: 1, arcface_similarity_b: 0.1 } },
      { rgb: rgb(4), facts: { seed: 9, alpha: 1, arcface_similarity_a: 0.1, arcface_similarity_b: null } },
    ],
    facts: { arcface_similarity_ab: 0.1, prompt_truncated: false },
    inferenceMs: 12.4,
    onnxruntimeMs: 9.6,
    stages: { invert: 4.4, denoise: 6.6 },
    total: 40,
  });
  const runJob = createJobRunner({ redis: scope.redis, prefix: scope.prefix, inference, resultTtlSeconds: 120, admission: admission(scope.redis, scope.prefix, 'jobs'), c2pa: await signer() });
  const payload: PayloadOf<'morph'> = { kind: 'morph', params: { alphas: [0, 1], strategy: 'slerp', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal', prompt: '', steps: 20, seed: 9, pacing: 'linear', background: 'morph', animation: [], fps: 12, boomerang: false } };
  const ctx = context();
  const result = await runJob(payload, ctx);

  t.equal(calls.length, 1);
  const job = calls[0]!.job as InferenceJobOf<'morph'>;
  t.same(job.payload, payload, 'the payload reaches the thread as it is');
  t.same([job.images.image_a.width, job.images.image_a.height, job.images.image_b.width, job.images.image_b.height], [40, 30, 50, 20], 'both uploads decoded by name');
  t.equal(calls[0]!.options?.signal, ctx.signal, "the job's signal reaches the thread");
  t.same(ctx.reported, [{ step: 0, total: 40 }, { step: 40, total: 40 }], 'progress relayed, then marked complete');

  t.same(
    result.images,
    [
      { index: 0, width: 24, height: 16, seed: 9, alpha: 0, arcface_similarity_a: 1, arcface_similarity_b: 0.1 },
      { index: 1, width: 24, height: 16, seed: 9, alpha: 1, arcface_similarity_a: 0.1, arcface_similarity_b: null },
    ],
  );
  t.equal(result.arcface_similarity_ab, 0.1);
  t.equal(result.prompt_truncated, false);
  t.equal(result.timings_ms.inference, 12);
  t.equal(result.timings_ms.onnxruntime, 10, "onnxruntime's share of the run, rounded");
  t.same(result.timings_ms.stages, { invert: 4, denoise: 7 }, "the thread's per-stage wall times, rounded");
  const stored = await scope.redis.getBuffer(keys.result(1));
  t.same((await decodeRgb(stored!, 'result')).data, rgb(4).data, 'result 1 is the PNG of the second image, lossless');
  t.ok((await scope.redis.ttl(keys.result(0))) > 100, 'results carry the result TTL');
  t.equal(await scope.redis.exists(keys.input('image_a'), keys.input('image_b')), 0, 'uploads deleted');
  t.same(JSON.parse((await scope.redis.get(keys.done)) as string), result, 'the result record, written with the PNGs, for any later run of the job');
  const xmp = await imageXmp((await scope.redis.getBuffer(keys.result(1))) as Buffer);
  t.match(xmp, /Iptc4xmpExt:DigitalSourceType="http:\/\/cv\.iptc\.org\/newscodes\/digitalsourcetype\/compositeWithTrainedAlgorithmicMedia"/, 'the PNG says it is an AI composite of real faces (IPTC digital source type)');
  t.match(xmp, /xmp:CreatorTool="Diff-ID Serve"/);
  t.match(xmp, new RegExp(`diffid:BundleManifestSha256="${'ab'.repeat(32)}"`), 'and which bundle made it');
  t.match(xmp, /diffid:Seed="9"/);
  t.match(xmp, /diffid:Alpha="1"/);
  t.match(xmp, /diffid:Parameters="\{&quot;alphas&quot;/, 'and with which parameters');
});

t.test('an image the thread sends early is encoded then and stored as sent; one it did not send is encoded at the end', async (t) => {
  const scope = await redisScope('handlers');
  t.teardown(() => scope.cleanup());
  const keys = jobKeys(scope.prefix, ID);
  await scope.redis.set(keys.input('image', 0), await encodeImage(facePattern(1, 40, 30), 'png'));
  const output: InferenceOutput = {
    images: [
      { rgb: rgb(3), facts: { seed: 5, arcface_similarity: 0.9 } },
      { rgb: rgb(4), facts: { seed: 6, arcface_similarity: null } },
    ],
    facts: { prompt_truncated: false },
    inferenceMs: 1,
    onnxruntimeMs: 1,
    stages: {},
    total: 2,
  };
  const { inference } = fakeInference(output);
  const run = inference.run;
  // Image 0 goes out early with other pixels and seed than the result gives it: what is stored
  // shows which encoding was used.
  inference.run = async (job, options) => {
    options?.onImage?.(0, rgb(7), { seed: 70 });
    return run(job, options);
  };
  const runJob = createJobRunner({ redis: scope.redis, prefix: scope.prefix, inference, resultTtlSeconds: 120, admission: admission(scope.redis, scope.prefix, 'jobs'), c2pa: await signer() });
  const params = { prompt: 'x', negative_prompt: '', num_images: 2, steps: 1, guidance_scale: 1, seed: 5, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } as const;
  await runJob({ kind: 'generate', params }, context());
  const first = (await scope.redis.getBuffer(keys.result(0))) as Buffer;
  t.same((await decodeRgb(first, 'result')).data, rgb(7).data, 'image 0: the early pixels');
  t.match(await imageXmp(first), /diffid:Seed="70"/, 'with the early provenance');
  const second = (await scope.redis.getBuffer(keys.result(1))) as Buffer;
  t.same((await decodeRgb(second, 'result')).data, rgb(4).data, 'image 1: encoded from the result');
  t.match(await imageXmp(second), /diffid:Seed="6"/);

  // A job that fails after an early image whose encoding fails too: the job's own error, and
  // no unhandled rejection from the dropped encoding.
  await scope.redis.del(keys.done, keys.result(0), keys.result(1));
  await scope.redis.set(keys.input('image', 0), await encodeImage(facePattern(1, 40, 30), 'png'));
  inference.run = async (_job, options) => {
    options?.onImage?.(0, { data: new Uint8Array(5), width: 0, height: 0 }, { seed: 1 });
    await new Promise((r) => setTimeout(r, 20));
    throw new DiffIdError('NO_FACE_DETECTED', 'image: no face found');
  };
  await t.rejects(runJob({ kind: 'generate', params }, context()), { code: 'DIFFID_ERR_NO_FACE_DETECTED' });
  t.equal(await scope.redis.exists(keys.result(0)), 0, 'and nothing of it stored');
});

t.test('a missing upload is INPUT_EXPIRED naming it, and nothing runs', async (t) => {
  const scope = await redisScope('handlers');
  t.teardown(() => scope.cleanup());
  await scope.redis.set(jobKeys(scope.prefix, ID).input('image_a'), await encodeImage(facePattern(1), 'png'));
  const { calls, inference } = fakeInference({ images: [], facts: {}, inferenceMs: 0, onnxruntimeMs: 0, stages: {}, total: 1 });
  const runJob = createJobRunner({ redis: scope.redis, prefix: scope.prefix, inference, resultTtlSeconds: 120, admission: admission(scope.redis, scope.prefix, 'jobs'), c2pa: await signer() });
  const err = await runJob({ kind: 'compare', params: { priority: 'normal' } }, context()).catch((e: unknown) => e);
  t.ok(err instanceof DiffIdError);
  t.equal((err as DiffIdError).code, 'DIFFID_ERR_INPUT_EXPIRED');
  t.match((err as Error).message, /^image_b: the uploaded image is no longer stored/);
  t.equal(calls.length, 0);
});

t.test('uploads that do not decode fail the job naming the first in form order, and nothing runs', async (t) => {
  const scope = await redisScope('handlers');
  t.teardown(() => scope.cleanup());
  const keys = jobKeys(scope.prefix, ID);
  const png = await encodeImage(facePattern(1, 64, 64), 'png');
  // image_b is cut short after its header; image_a is not an image at all and fails sooner.
  await scope.redis.set(keys.input('image_a'), Buffer.from('not an image at all'));
  await scope.redis.set(keys.input('image_b'), png.subarray(0, 60));
  const { calls, inference } = fakeInference({ images: [], facts: {}, inferenceMs: 0, onnxruntimeMs: 0, stages: {}, total: 1 });
  const runJob = createJobRunner({ redis: scope.redis, prefix: scope.prefix, inference, resultTtlSeconds: 120, admission: admission(scope.redis, scope.prefix, 'jobs'), c2pa: await signer() });
  const err = await runJob({ kind: 'compare', params: { priority: 'normal' } }, context()).catch((e: unknown) => e);
  t.equal((err as DiffIdError).code, 'DIFFID_ERR_UNSUPPORTED_IMAGE');
  t.match((err as Error).message, /^image_a: /);
  await scope.redis.set(keys.input('image_a'), png);
  const second = await runJob({ kind: 'compare', params: { priority: 'normal' } }, context()).catch((e: unknown) => e);
  t.match((second as Error).message, /^image_b: /, 'then the second');
  t.equal(calls.length, 0);
});

t.test('a job canceled before it started stops before reading anything', async (t) => {
  const scope = await redisScope('handlers');
  t.teardown(() => scope.cleanup());
  await scope.redis.set(jobKeys(scope.prefix, ID).canceled, '{}');
  const { calls, inference } = fakeInference({ images: [], facts: {}, inferenceMs: 0, onnxruntimeMs: 0, stages: {}, total: 1 });
  const runJob = createJobRunner({ redis: scope.redis, prefix: scope.prefix, inference, resultTtlSeconds: 120, admission: admission(scope.redis, scope.prefix, 'jobs'), c2pa: await signer() });
  const err = await runJob({ kind: 'generate', params: { prompt: '', negative_prompt: '', num_images: 1, steps: 1, guidance_scale: 1, seed: 0, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } }, context()).catch((e: unknown) => e);
  t.ok(isCanceled(err), 'a cancel: DIFFID_ERR_JOB_CANCELED');
  t.equal(calls.length, 0);
});

t.test('a job run again after an earlier run finished returns that run\'s result without running', async (t) => {
  const scope = await redisScope('handlers');
  t.teardown(() => scope.cleanup());
  const keys = jobKeys(scope.prefix, ID);
  const earlier = { images: [{ index: 0, width: 8, height: 8, seed: 3 }], timings_ms: { total: 5, inference: 4, onnxruntime: 2, stages: {} } };
  await scope.redis.set(keys.done, JSON.stringify(earlier));
  const { calls, inference } = fakeInference({ images: [], facts: {}, inferenceMs: 0, onnxruntimeMs: 0, stages: {}, total: 1 });
  const runJob = createJobRunner({ redis: scope.redis, prefix: scope.prefix, inference, resultTtlSeconds: 120, admission: admission(scope.redis, scope.prefix, 'jobs'), c2pa: await signer() });
  const result = await runJob({ kind: 'generate', params: { prompt: '', negative_prompt: '', num_images: 1, steps: 1, guidance_scale: 1, seed: 3, photos: 1, on_missing_face: 'fail', identity_scale: 1, identity_start: 0, identity_end: 1, priority: 'normal' } }, context());
  t.same(result, earlier, 'the stored result, as it was');
  t.equal(calls.length, 0, 'no inference, and no uploads needed (the first run deleted them with the result)');
});
