// The job contract between the API and the workers: job names, payloads, results, Redis keys.
// Images never travel in job data (BullMQ stores it as JSON); they sit under their own keys with
// a TTL and the job carries the key names.

/** Job names as BullMQ sees them. Each must have a handler in the worker, or it refuses to start. */
export const JOB_KINDS = {
  generate: 'generate',
  morph: 'morph',
  compare: 'compare',
} as const;
export type JobKind = (typeof JOB_KINDS)[keyof typeof JOB_KINDS];

/** Limits shared by the API's validation and the worker's defence in depth. */
export const LIMITS = {
  maxImages: 8,
  minSteps: 1,
  maxSteps: 150,
  maxGuidance: 30,
  maxPromptChars: 1000,
  maxAlphas: 64,
  maxSeed: 2 ** 32 - 1,
} as const;

export const DEFAULTS = {
  numImages: 1,
  steps: 30,
  guidanceScale: 5,
  morphSteps: 50,
  interpolation: 'slerp',
} as const;

export interface GenerateParams {
  prompt: string;
  negative_prompt: string;
  num_images: number;
  steps: number;
  guidance_scale: number;
  /** Image i uses seed + i. */
  seed: number;
}

export type Interpolation = 'slerp' | 'lerp';

export interface MorphParams {
  alphas: number[];
  interpolation: Interpolation;
  prompt: string;
  steps: number;
  /** Morphing is deterministic (DDIM inversion then DDIM sampling); the seed is recorded only. */
  seed: number;
}

/** compare takes no parameters beyond its two images (no index signature: `params.steps` does not compile). */
export type CompareParams = Record<never, never>;

/** Names of uploaded images, over all job kinds (their keys are jobKeys().input(name)). */
export const INPUT_NAMES = ['image', 'image_a', 'image_b'] as const;
export type InputName = (typeof INPUT_NAMES)[number];

/** The images each job kind takes, in the order its pipeline reads them. */
export const JOB_INPUTS = {
  generate: ['image'],
  morph: ['image_a', 'image_b'],
  compare: ['image_a', 'image_b'],
} as const satisfies Record<JobKind, readonly InputName[]>;

/** Job data: the kind and its parameters. The images sit under jobKeys(prefix, id).input(name). */
export type JobPayload =
  | { kind: 'generate'; params: GenerateParams }
  | { kind: 'morph'; params: MorphParams }
  | { kind: 'compare'; params: CompareParams };

/** Refuses a per-kind table (handlers, pipelines) that misses a job kind of the contract. */
export function assertEveryKind(table: Partial<Record<string, unknown>>, what: string): void {
  const missing = Object.values(JOB_KINDS).filter((kind) => typeof table[kind] !== 'function');
  if (missing.length > 0) throw new Error(`${what} has no handler for job kind(s): ${missing.join(', ')}`);
}

/** BullMQ priorities (1 is served first): compare is quick and interactive. */
export const JOB_PRIORITY: Record<JobKind, number> = { compare: 1, generate: 10, morph: 10 };

function unknownKind(payload: never): never {
  throw new Error(`unknown job kind ${JSON.stringify((payload as { kind?: unknown }).kind)}`);
}

/**
 * The U-Net evaluations a job plans: its progress total, the same number whether the API shows
 * it queued or the worker counts it down. A morph inverts both faces in one run of `steps`, then
 * samples its frames in batches of at most `maxBatch`, one run of `steps` per batch. compare
 * runs no U-Net; its one step is the face comparison.
 */
export function plannedSteps(payload: JobPayload, maxBatch: number): number {
  switch (payload.kind) {
    case 'generate':
      return payload.params.steps;
    case 'morph':
      return payload.params.steps * (1 + Math.ceil(payload.params.alphas.length / maxBatch));
    case 'compare':
      return 1;
    default:
      return unknownKind(payload);
  }
}

/** How many result images a job writes (their keys are jobKeys().result(0 … n − 1)). */
export function plannedImages(payload: JobPayload): number {
  switch (payload.kind) {
    case 'generate':
      return payload.params.num_images;
    case 'morph':
      return payload.params.alphas.length;
    case 'compare':
      return 0;
    default:
      return unknownKind(payload);
  }
}

/** The face a compare job found in one image. */
export interface ComparedFace {
  image: 'image_a' | 'image_b';
  /** x1, y1, x2, y2 in the image's pixels (after EXIF orientation). */
  box: [number, number, number, number];
  score: number;
  /** Faces seen in the image; the largest is compared. */
  faces: number;
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
}

/** Redis key of the bundle info the workers publish. */
export const bundleInfoKey = (prefix: string) => `${prefix}:bundle`;

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
  /** compare only: the face found in each image. */
  faces?: ComparedFace[];
  /** Morph only: cosine similarity of face A to face B. */
  arcface_similarity_ab?: number;
  /** True when the prompt was longer than the text encoder takes and was cut. */
  prompt_truncated?: boolean;
}

export interface JobResult extends ResultFacts {
  images: ResultImage[];
  timings_ms: { total: number; inference: number };
}

export interface JobProgress {
  step: number;
  total: number;
}

/** Redis keys of one job, under the deployment's key prefix. */
export const jobKeys = (prefix: string, id: string) => {
  const input = (name: InputName) => `${prefix}:job:${id}:input:${name}`;
  return {
    input,
    /** The keys of every upload a job of `kind` has. */
    inputs: (kind: JobKind) => JOB_INPUTS[kind].map(input),
    result: (index: number) => `${prefix}:job:${id}:result:${index}`,
    /** Present once a cancel was asked for: the job's public view at that moment, as JSON. */
    canceled: `${prefix}:job:${id}:canceled`,
  };
};

/** Pub/sub channel on which the API announces cancels to running workers. */
export const cancelChannel = (prefix: string) => `${prefix}:cancel`;

/** How a worker reports a job failure: "CODE: message", parsed back by the API. */
export function formatFailure(code: string, message: string): string {
  return `${code}: ${message}`;
}

export function parseFailure(reason: string | undefined): { code: string; message: string } | null {
  const m = /^(DIFFID_ERR_[A-Z_]+): ([\s\S]*)$/.exec(reason ?? '');
  return m ? { code: m[1] as string, message: m[2] as string } : null;
}
