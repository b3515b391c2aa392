// The job contract between the API and the workers: job kinds, their parameters (typed from
// openapi.yaml's *Params schemas, api-types.ts), payloads, results and step plans. Images never
// travel in job data (BullMQ stores it as JSON); they sit under their own Redis keys with a TTL
// (redis-keys.ts) and the job carries their names.

import { createHash } from 'node:crypto';
import type { components } from './api-types.ts';

type Schemas = components['schemas'];

/** Job names as BullMQ sees them. Each must have a handler in the worker, or it refuses to start. */
export const JOB_KINDS = {
  generate: 'generate',
  morph: 'morph',
  compare: 'compare',
  /** Checks the photos of a stored identity (POST /identities): its faces, no images. */
  identity: 'identity',
} as const;
export type JobKind = (typeof JOB_KINDS)[keyof typeof JOB_KINDS];

/**
 * A generate job's parameters, every default settled by the API (job-params.ts): the job stores
 * the values used. `face_index`, when given, names one face per photo.
 */
export type GenerateParams = Schemas['GenerateParams'];
/** A morph job's parameters, every default settled by the API. The seed is recorded only. */
export type MorphParams = Schemas['MorphParams'];
/** compare takes only the choice of face in each image (no steps: `params.steps` does not compile). */
export type CompareParams = Schemas['CompareParams'];
/** An identity check's parameters: the identity whose photos it reads, how many, which faces. */
export type IdentityParams = Schemas['IdentityParams'];

/** The parameters of each job kind. */
export interface ParamsOf {
  generate: GenerateParams;
  morph: MorphParams;
  compare: CompareParams;
  identity: IdentityParams;
}

/** What /generate does with a photo in which no usable face is found. */
export type OnMissingFace = GenerateParams['on_missing_face'];
/** The paper's three morph strategies (Fig. 8). */
export type MorphStrategy = MorphParams['strategy'];
/**
 * How a morph's factors are spaced: `linear` as asked; `even` renders the frames once, measures
 * how much the picture changes between neighbours, and renders again at factors that make every
 * step change it equally (a second sampling pass).
 */
export type Pacing = MorphParams['pacing'];
/** Where a morph's pixels outside the face come from: the morph itself, or face A's / B's photo. */
export type MorphBackground = MorphParams['background'];

/** The seed of each image of a generate job: image i uses seed + i, whatever else is in the batch. */
export function imageSeeds(params: Pick<GenerateParams, 'seed' | 'num_images'>): number[] {
  return Array.from({ length: params.num_images }, (_, i) => params.seed + i);
}

/**
 * Animated files a morph can be delivered as, besides its PNG frames, with their media types.
 * MP4 needs ffmpeg on the worker (BundleInfo.animations says what the workers can make).
 */
export const ANIMATION_TYPES = { webp: 'image/webp', gif: 'image/gif', mp4: 'video/mp4' } as const satisfies Record<MorphParams['animation'][number], string>;
export type AnimationFormat = keyof typeof ANIMATION_TYPES;
export const ANIMATION_FORMATS = Object.keys(ANIMATION_TYPES) as AnimationFormat[];

/** Names of uploaded images, over all job kinds (their keys are jobKeys().input(name, i)). */
export const INPUT_NAMES = ['image', 'image_a', 'image_b'] as const;
export type InputName = (typeof INPUT_NAMES)[number];

/**
 * The images each job kind takes, in the order its pipeline reads them: `one` file, or `many`
 * for a repeated field (generate's photos of one person; how many, the form schema says).
 */
export const JOB_INPUTS = {
  generate: { image: 'many' },
  morph: { image_a: 'one', image_b: 'one' },
  compare: { image_a: 'one', image_b: 'one' },
  identity: { image: 'many' },
} as const satisfies Record<JobKind, Partial<Record<InputName, 'one' | 'many'>>>;

/** The input fields of a job kind, in order. */
export const inputNames = <K extends JobKind>(kind: K) => Object.keys(JOB_INPUTS[kind]) as Array<keyof (typeof JOB_INPUTS)[K] & InputName>;

/** The webhook events a job can announce. */
export const WEBHOOK_EVENTS = ['start', 'completed', 'failed', 'canceled'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

/** Where a job's events go and which of them (stored in the job's payload; webhooks.ts delivers). */
export interface WebhookTarget {
  url: string;
  events: WebhookEvent[];
}

/**
 * Job data: the kind, its parameters, the tenant whose API key made it (absent when the API runs
 * without keys), and where to announce its events (webhooks.ts). The images sit under
 * jobKeys(prefix, id).input(name, i).
 */
export type JobPayload = (
  | { kind: 'generate'; params: GenerateParams }
  | { kind: 'morph'; params: MorphParams }
  | { kind: 'compare'; params: CompareParams }
  | { kind: 'identity'; params: IdentityParams }
) & { owner?: string; webhook?: WebhookTarget; batch?: BatchRef };

/** A batch as clients see it (GET /batches/{id}): its jobs by status, progress, links. */
export type BatchView = Schemas['Batch'];
/** What POST /batches takes: the kind, what it multiplies, and the fields every job gets. */
export type BatchRequest = Schemas['BatchRequest'];

/** The batch a job belongs to (POST /batches) and its place in it. */
export interface BatchRef {
  id: string;
  index: number;
}

/**
 * The id of a batch's job `index`: fixed by the two, so that queueing it again (after an API
 * process died between choosing the job and queueing it) finds the same job, not a second one.
 * UUID-shaped (version 8, RFC 9562), like every job id.
 */
export function batchJobId(batch: string, index: number): string {
  return hashUuid(`${batch}:${index}`);
}

/** A UUID (version 8, RFC 9562) from the sha256 of some text or bytes: the same input, the same id. */
export function hashUuid(input: string | Uint8Array): string {
  const h = createHash('sha256').update(input).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${((parseInt(h.slice(16, 17), 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Refuses a per-kind table (handlers, pipelines) that misses a job kind of the contract. */
export function assertEveryKind(table: Partial<Record<string, unknown>>, what: string): void {
  const missing = Object.values(JOB_KINDS).filter((kind) => typeof table[kind] !== 'function');
  if (missing.length > 0) throw new Error(`${what} has no handler for job kind(s): ${missing.join(', ')}`);
}

/** BullMQ priorities at normal priority (1 is served first): compare is quick and interactive. */
export const JOB_PRIORITY: Record<JobKind, number> = { compare: 1, identity: 1, generate: 10, morph: 10 };

/** The priority a job asks for (`priority`; identity checks have none: normal). */
export type Priority = GenerateParams['priority'];

/**
 * A job's BullMQ priority: its kind's, moved by what it asked for. `high` goes ahead of every
 * normal generate and morph (not of compare), `low` behind every normal job.
 */
export function jobPriority(kind: JobKind, priority: Priority = 'normal'): number {
  const base = JOB_PRIORITY[kind];
  return priority === 'high' ? Math.max(1, base - 5) : priority === 'low' ? base + 20 : base;
}

function unknownKind(payload: never): never {
  throw new Error(`unknown job kind ${JSON.stringify((payload as { kind?: unknown }).kind)}`);
}

/** Sampling passes over a morph's frames: two when `even` pacing measures first. */
export const morphPasses = (params: Pick<MorphParams, 'pacing'>) => (params.pacing === 'even' ? 2 : 1);

/** Whether a morph inverts its two faces (one run of `steps` over both): every strategy but embedding_only. */
const inverts = (params: Pick<MorphParams, 'strategy'>) => params.strategy !== 'embedding_only';

/**
 * The U-Net evaluations a job plans: its progress total, the same number whether the API shows
 * it queued or the worker counts it down. A morph inverts both faces in one run of `steps` (not
 * with strategy embedding_only), then
 * samples its frames in batches of at most `maxBatch`, one run of `steps` per batch, once per
 * pass (morphPasses). compare runs no U-Net; its one step is the face comparison.
 */
export function plannedSteps(payload: JobPayload, maxBatch: number): number {
  switch (payload.kind) {
    case 'generate':
      return payload.params.steps;
    case 'morph':
      return payload.params.steps * ((inverts(payload.params) ? 1 : 0) + morphPasses(payload.params) * Math.ceil(payload.params.alphas.length / maxBatch));
    case 'compare':
    case 'identity':
      return 1;
    default:
      return unknownKind(payload);
  }
}

/**
 * A job's cost for admission: the U-Net evaluations of single images it plans (a generate batch
 * of n images costs n per step, a morph batch its frames per step). The unit of the per-key
 * queued-work limit.
 */
export function plannedCost(payload: JobPayload): number {
  switch (payload.kind) {
    case 'generate':
      return payload.params.steps * payload.params.num_images;
    case 'morph':
      return payload.params.steps * ((inverts(payload.params) ? 2 : 0) + morphPasses(payload.params) * payload.params.alphas.length);
    case 'compare':
    case 'identity':
      return 1;
    default:
      return unknownKind(payload);
  }
}

/** How many files a job has under an input name: generate's (or an identity's) photos, one image otherwise. */
export function uploadCount(payload: JobPayload, name: InputName): number {
  return (payload.kind === 'generate' || payload.kind === 'identity') && name === 'image' ? payload.params.photos : 1;
}

/**
 * The field that names a stored identity in place of each input's photos: generate's `identity`
 * for its photos, morph's and compare's `identity_a` / `identity_b` for each side (and an identity
 * check's own id, under `identity`). Forms and job parameters use the same names.
 */
export const IDENTITY_FIELDS = { image: 'identity', image_a: 'identity_a', image_b: 'identity_b' } as const satisfies Record<InputName, string>;

/**
 * The stored identity whose photos a job reads under an input name, if any. Those photos stay
 * under the identity's keys (identityKeys); the job's own uploads are the inputs that name none.
 */
export function inputIdentity(payload: JobPayload, name: InputName): string | undefined {
  const id = (payload.params as Record<string, unknown>)[IDENTITY_FIELDS[name]];
  return typeof id === 'string' ? id : undefined;
}

/** The job kinds a client submits at POST /{kind}; identity checks come from POST /identities. */
export const SUBMITTED_JOB_KINDS = [JOB_KINDS.generate, JOB_KINDS.morph, JOB_KINDS.compare] as const;

/** How an input image is named in results and messages: its field, and its place when repeated. */
export function inputLabel(name: InputName, index: number, count: number): string {
  return count > 1 ? `${name}[${index}]` : name;
}

/** How many result images a job writes (their keys are jobKeys().result(0 … n − 1)). */
export function plannedImages(payload: JobPayload): number {
  switch (payload.kind) {
    case 'generate':
      return payload.params.num_images;
    case 'morph':
      return payload.params.alphas.length;
    case 'compare':
    case 'identity':
      return 0;
    default:
      return unknownKind(payload);
  }
}

/** One face a detector found: box and landmarks in the image's pixels (after EXIF orientation). */
export interface SeenFace {
  box: [number, number, number, number];
  score: number;
  /** By name, as seen in the image (left_eye is the eye on the image's left). */
  landmarks: Record<string, [number, number]>;
}

/** The faces found in one input image, left to right, and the one used. */
export interface InputFaces {
  /** The input's field, with its place when the field is repeated: image, image[1], image_a. */
  input: string;
  faces: SeenFace[];
  /** The face used (an index into `faces`); null when the photo was skipped. */
  face_index: number | null;
}

/** Something the caller should know about a result that did not stop the job. */
export interface ResultWarning {
  code: 'AMBIGUOUS_FACE' | 'SMALL_FACE' | 'LARGE_PHOTO_SMALL_FACES' | 'FACE_SKIPPED';
  input: string;
  message: string;
}

/** What a worker publishes about its bundle, for the API to apply its defaults. */
export interface BundleInfo {
  name: string;
  architecture: string;
  image: { width: number; height: number };
  defaults: { steps?: number; guidance_scale?: number };
  face_detector: boolean;
  /** The publishing worker's DIFFID_MAX_BATCH: morph frames per U-Net batch, which sets a morph's step total. */
  max_batch: number;
  /** The animation formats the publishing worker can write (mp4 only with ffmpeg); absent from workers older than animations. */
  animations?: AnimationFormat[];
}

export type PayloadOf<K extends JobKind> = Extract<JobPayload, { kind: K }>;

/** What a pipeline says of one output image besides its pixels. */
export interface ImageFacts {
  seed: number;
  /** generate: similarity to the input face; null when no face was found in this output. */
  arcface_similarity?: number | null;
  /** morph: the frame's interpolation factor and its similarity to face A and to face B. */
  alpha?: number;
  arcface_similarity_a?: number | null;
  arcface_similarity_b?: number | null;
}

/** One result image's metadata; the PNG itself is stored under `jobKeys(prefix, id).result(index)`. */
export interface ResultImage extends ImageFacts {
  index: number;
  width: number;
  height: number;
}

/** What a pipeline says of the job as a whole; a job's result is these plus its images and timings. */
export interface ResultFacts {
  /** compare only: cosine similarity of the two faces under the bundle's embedder. */
  similarity?: number;
  /** Every input image's faces and the one used. */
  inputs?: InputFaces[];
  warnings?: ResultWarning[];
  /** Morph only: cosine similarity of face A to face B. */
  arcface_similarity_ab?: number;
  /**
   * Morph only: how evenly the frames change, the coefficient of variation (std / mean) of the
   * RMS pixel differences between consecutive frames; 0 is perfectly even.
   */
  pacing_evenness?: number;
  /** Morph with `even` pacing: the same measure of the first, linearly spaced pass. */
  pacing_evenness_linear?: number;
  /** Morph only: the animations written (their bytes sit under jobKeys().animation(format)). */
  animations?: AnimationInfo[];
  /** True when the prompt was longer than the text encoder takes and was cut. */
  prompt_truncated?: boolean;
}

/** One animated file of a morph. */
export interface AnimationInfo {
  format: AnimationFormat;
  /** Frames shown, the return trip of a boomerang included. */
  frames: number;
  fps: number;
  bytes: number;
}

export interface JobResult extends ResultFacts {
  images: ResultImage[];
  /**
   * Wall-clock milliseconds: the whole job in the worker, the inference thread's run, the part of
   * that run with onnxruntime running a graph, and each pipeline stage within the run (stages that
   * ran concurrently are counted once).
   */
  timings_ms: { total: number; inference: number; onnxruntime: number; stages: Record<string, number> };
}

export interface JobProgress {
  step: number;
  total: number;
}
