// The job contract between the API and the workers: job names, payloads, results, Redis keys.
// Images never travel in job data (BullMQ stores it as JSON); they sit under their own keys with
// a TTL and the job carries the key names.

/** Job names as BullMQ sees them. Each must have a handler in the worker, or it refuses to start. */
export const JOB_KINDS = {
  generate: 'generate',
  morph: 'morph',
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

/** Job data: parameters plus the Redis keys of the uploaded images. */
export type JobPayload =
  | { kind: 'generate'; params: GenerateParams; inputs: { image: string } }
  | { kind: 'morph'; params: MorphParams; inputs: { image_a: string; image_b: string } };

export type PayloadOf<K extends JobKind> = Extract<JobPayload, { kind: K }>;

/** One result image's metadata; the PNG itself is stored under `resultKey(prefix, id, index)`. */
export interface ResultImage {
  index: number;
  width: number;
  height: number;
  seed: number;
  arcface_similarity?: number;
  alpha?: number;
  arcface_similarity_a?: number;
  arcface_similarity_b?: number;
}

export interface JobResult {
  images: ResultImage[];
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
