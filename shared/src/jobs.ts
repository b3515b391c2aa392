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

/** compare takes no parameters beyond its two images. */
export type CompareParams = Record<string, never>;

/** Job data: parameters plus the Redis keys of the uploaded images. */
export type JobPayload =
  | { kind: 'generate'; params: GenerateParams; inputs: { image: string } }
  | { kind: 'morph'; params: MorphParams; inputs: { image_a: string; image_b: string } }
  | { kind: 'compare'; params: CompareParams; inputs: { image_a: string; image_b: string } };

/** BullMQ priorities (1 is served first): compare is quick and interactive. */
export const JOB_PRIORITY: Record<JobKind, number> = { compare: 1, generate: 10, morph: 10 };

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
}

/** Redis key of the bundle info the workers publish. */
export const bundleInfoKey = (prefix: string) => `${prefix}:bundle`;

export type PayloadOf<K extends JobKind> = Extract<JobPayload, { kind: K }>;

/** One result image's metadata; the PNG itself is stored under `resultKey(prefix, id, index)`. */
export interface ResultImage {
  index: number;
  width: number;
  height: number;
  seed: number;
  /** null when no face was found in this output. */
  arcface_similarity?: number | null;
  alpha?: number;
  arcface_similarity_a?: number | null;
  arcface_similarity_b?: number | null;
}

export interface JobResult {
  images: ResultImage[];
  /** compare only: cosine similarity of the two faces under the bundle's embedder. */
  similarity?: number;
  /** compare only: the face found in each image. */
  faces?: ComparedFace[];
  /** Morph only: cosine similarity of face A to face B. */
  arcface_similarity_ab?: number;
  /** True when the prompt was longer than the text encoder takes and was cut. */
  prompt_truncated?: boolean;
  timings_ms: { total: number; inference: number };
}

export interface JobProgress {
  step: number;
  total: number;
}

/** Names of uploaded images, over all job kinds (their keys are jobKeys().input(name)). */
export const INPUT_NAMES = ['image', 'image_a', 'image_b'] as const;

/** Redis keys of one job, under the deployment's key prefix. */
export const jobKeys = (prefix: string, id: string) => ({
  input: (name: string) => `${prefix}:job:${id}:input:${name}`,
  result: (index: number) => `${prefix}:job:${id}:result:${index}`,
  /** Present once a cancel was asked for: the job's public view at that moment, as JSON. */
  canceled: `${prefix}:job:${id}:canceled`,
});

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
