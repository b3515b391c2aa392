// Runs one job, whatever its kind, knowing nothing of BullMQ (service.ts and processor.ts map its
// errors and cancels onto it): read and decode the job's uploads, run its kind's pipeline on the
// inference thread, encode the PNGs (and a morph's animations), and store them with the result.
// Every kind runs the same way because every pipeline returns the same shape.

import type { Redis } from 'ioredis';
import type { Admission } from '@diffid/shared/admission';
import { DiffIdError, JOB_INPUTS, canceled, identityKeys, inputIdentity, inputLabel, inputNames, jobKeys, uploadCount, type AnimationInfo, type InputName, type JobPayload, type JobProgress, type JobResult, type MorphParams } from '@diffid/shared/contract';
import { WORKING_MAX_SIDE, decodeRgb, encodeAnimation, encodePng, playOrder } from '@diffid/shared/image';
import type { ImageProvenance } from '../stages/context.ts';
import type { InferenceClient } from '../thread/client.ts';
import type { InferenceJob } from '../pipelines/pipeline.ts';
import type { Rgb } from '../vision/pixels.ts';
import { SERVICE_NAME, SERVICE_VERSION, digitalSourceType, provenanceXmp } from './provenance.ts';
import { signPng, type C2paCredentials } from '@diffid/shared/c2pa';
import { createHash } from 'node:crypto';
import { mp4WithXmp } from '@diffid/shared/xmp';
import { encodeMp4 } from './video.ts';
import { readInverted, storeInverted } from './identity-cache.ts';

/** What the runner may know of the job it runs. */
export interface JobContext {
  id: string;
  /** Aborted when the job is canceled. */
  signal: AbortSignal;
  progress(progress: JobProgress): void;
}

/** Runs a job to its result; throws a DiffIdError for a final failure (cancellation included). */
export type JobRunner = (payload: JobPayload, ctx: JobContext) => Promise<JobResult>;

export interface JobRunnerDeps {
  redis: Redis;
  prefix: string;
  inference: Pick<InferenceClient, 'run' | 'bundle'>;
  resultTtlSeconds: number;
  /** Whether ffmpeg is here for MP4 animations. */
  video?: boolean;
  /** Admission's count of upload bytes, told when the job's uploads are deleted. */
  admission: Pick<Admission, 'releaseInputs'>;
  /** Who signs each PNG's C2PA manifest. */
  c2pa: C2paCredentials;
}

/**
 * Each input image of a job: its field, its label in messages, its Redis key (the job's upload, or
 * the stored identity's photo it names) and, for a stored one, the identity, in form order.
 */
function uploadsOf(payload: JobPayload, keys: ReturnType<typeof jobKeys>, prefix: string): Array<{ name: InputName; label: string; key: string; identity?: string }> {
  return inputNames(payload.kind).flatMap((name) => {
    const count = uploadCount(payload, name);
    const identity = inputIdentity(payload, name);
    return Array.from({ length: count }, (_, i) => ({
      name,
      label: inputLabel(name, i, count),
      ...(identity === undefined ? { key: keys.input(name, i) } : { key: identityKeys(prefix, identity).photo(i), identity }),
    }));
  });
}

/**
 * The job's uploaded images, decoded side by side (in sharp's threads), by name: one image, or a
 * list for a field that takes several. INPUT_EXPIRED names the first one gone, and a file that
 * does not decode fails the job naming the first such, whichever finished first.
 */
async function decodeInputs(payload: JobPayload, uploads: ReturnType<typeof uploadsOf>, bytes: Array<Buffer | null>): Promise<Record<string, Rgb | Rgb[]>> {
  const missing = uploads.find((_, i) => !bytes[i]);
  if (missing?.identity) throw new DiffIdError('INPUT_EXPIRED', `${missing.label}: the identity ${missing.identity} was deleted or has expired; store it again`);
  if (missing) throw new DiffIdError('INPUT_EXPIRED', `${missing.label}: the uploaded image is no longer stored; submit the job again`);
  const decoded = await Promise.allSettled(uploads.map((u, i) => decodeRgb(bytes[i] as Buffer, u.label, WORKING_MAX_SIDE)));
  const failed = decoded.find((d): d is PromiseRejectedResult => d.status === 'rejected');
  if (failed) throw failed.reason;
  const images: Record<string, Rgb | Rgb[]> = {};
  for (const [name, files] of Object.entries(JOB_INPUTS[payload.kind])) {
    const list = uploads.flatMap((u, i) => (u.name === name ? [(decoded[i] as PromiseFulfilledResult<Rgb>).value] : []));
    images[name] = files === 'one' ? (list[0] as Rgb) : list;
  }
  return images;
}

/** A morph's animations, in the formats it asked for. */
async function animate(frames: Rgb[], { animation, fps, boomerang }: Pick<MorphParams, 'animation' | 'fps' | 'boomerang'>, video: boolean, xmp: string): Promise<Array<{ info: AnimationInfo; bytes: Buffer }>> {
  return Promise.all(
    animation.map(async (format) => {
      if (format === 'mp4') {
        if (!video) throw new DiffIdError('VALIDATION', 'animation=mp4 needs ffmpeg on the worker, and the one that took this job has none; ask for webp or gif');
        const shown = playOrder(frames, boomerang);
        const bytes = mp4WithXmp(await encodeMp4(shown, fps), xmp);
        return { info: { format, frames: shown.length, fps, bytes: bytes.length }, bytes };
      }
      const { bytes, frames: shown } = await encodeAnimation(frames, { format, fps, boomerang, xmp });
      return { info: { format, frames: shown, fps, bytes: bytes.length }, bytes };
    }),
  );
}

/** Merges the check's faces into an identity's record (JSON) and marks it ready, if it still exists, keeping its expiry. */
const IDENTITY_READY = `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local record = cjson.decode(raw)
local found = cjson.decode(ARGV[1])
record.faces = found.faces
record.warnings = found.warnings
record.status = 'ready'
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return 1`;

/** The job runner over its dependencies. */
export function createJobRunner(deps: JobRunnerDeps): JobRunner {
  return async (payload, ctx) => {
    const started = performance.now();
    const keys = jobKeys(deps.prefix, ctx.id);
    const uploads = uploadsOf(payload, keys, deps.prefix);
    // One round trip: a cancel that came before this worker held the job (only its tombstone is
    // left), an earlier run that finished but could not mark the job done (it lost its lock; its
    // result stands), and the uploads, which are decoded only when there is neither.
    const [wasCanceled, earlier, bytes] = await Promise.all([deps.redis.exists(keys.canceled), deps.redis.get(keys.done), deps.redis.mgetBuffer(...uploads.map((u) => u.key))]);
    if (wasCanceled) throw canceled('the job was canceled before it started');
    if (earlier) return JSON.parse(earlier) as JobResult;
    const images = await decodeInputs(payload, uploads, bytes);
    const cached = payload.kind === 'morph' ? await readInverted(deps.redis, deps.prefix, payload, deps.inference.bundle.digest) : {};
    // Each PNG and animation says it is AI-generated, what made it and how (docs/operations.md).
    const bundle = deps.inference.bundle;
    // And carries a signed C2PA manifest: created by a trained model, from inputs named by their sha256.
    const claim = { digitalSourceType: digitalSourceType(payload.kind), softwareAgent: { name: SERVICE_NAME, version: SERVICE_VERSION }, inputSha256: bytes.map((b) => (b ? createHash('sha256').update(b).digest('hex') : '')) };
    const png = async (rgb: Rgb, { seed, alpha }: ImageProvenance) =>
      signPng(await encodePng(rgb, provenanceXmp({ kind: payload.kind, bundle: bundle.name, bundleDigest: bundle.digest, seed, params: payload.params, ...(alpha === undefined ? {} : { alpha }) })), claim, deps.c2pa);
    // Images come as soon as their pixels are final: their PNGs are encoded (in sharp's threads)
    // while the inference thread scores them or renders the next frames.
    const early = new Map<number, Promise<Buffer>>();
    const output = await deps.inference.run({ payload, images, inverted: cached } as InferenceJob, {
      signal: ctx.signal,
      onProgress: (step, total) => ctx.progress({ step, total }),
      onImage: (index, rgb, provenance) => {
        const encoding = png(rgb, provenance);
        // Awaited below when the job succeeds; a job that fails or is canceled drops it.
        encoding.catch(() => {});
        early.set(index, encoding);
      },
    });
    const pngs = await Promise.all(output.images.map((i, index) => early.get(index) ?? png(i.rgb, i.facts)));
    const animations =
      payload.kind === 'morph'
        ? await animate(output.images.map((i) => i.rgb), payload.params, deps.video ?? false, provenanceXmp({ kind: payload.kind, bundle: bundle.name, bundleDigest: bundle.digest, seed: payload.params.seed, params: payload.params }))
        : [];
    ctx.progress({ step: output.total, total: output.total });
    const result: JobResult = {
      images: output.images.map((i, index) => ({ index, width: i.rgb.width, height: i.rgb.height, ...i.facts })),
      ...output.facts,
      ...(animations.length > 0 ? { animations: animations.map((a) => a.info) } : {}),
      timings_ms: {
        total: Math.round(performance.now() - started),
        inference: Math.round(output.inferenceMs),
        onnxruntime: Math.round(output.onnxruntimeMs),
        stages: Object.fromEntries(Object.entries(output.stages).map(([stage, ms]) => [stage, Math.round(ms)])),
      },
    };
    // Same keys, same bytes on every run (seeds fix the outputs): a second writer changes nothing.
    // The uploads go in the same transaction as the result record, so a run that starts later
    // (this one lost its lock before BullMQ marked the job done) finds the result, not a gap.
    const tx = deps.redis.multi();
    pngs.forEach((png, index) => tx.set(keys.result(index), png, 'EX', deps.resultTtlSeconds));
    for (const a of animations) tx.set(keys.animation(a.info.format), a.bytes, 'EX', deps.resultTtlSeconds);
    tx.set(keys.done, JSON.stringify(result), 'EX', deps.resultTtlSeconds);
    const inputs = keys.inputs(payload);
    if (inputs.length > 0) tx.del(...inputs);
    // An identity check marks its identity ready with the faces it found; a deleted one stays deleted.
    if (payload.kind === 'identity') tx.eval(IDENTITY_READY, 1, identityKeys(deps.prefix, payload.params.identity).record, JSON.stringify({ faces: result.inputs ?? [], warnings: result.warnings ?? [] }));
    await tx.exec();
    // A cache: the job has its result whether or not the latents could be kept.
    if (payload.kind === 'morph' && output.inverted) await storeInverted(deps.redis, deps.prefix, payload, bundle.digest, output.inverted).catch(() => undefined);
    await deps.admission.releaseInputs(ctx.id);
    return result;
  };
}
