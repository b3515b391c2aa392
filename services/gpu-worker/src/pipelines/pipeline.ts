// The one shape of a pipeline: a job's context and its input (decoded images and settled
// parameters) in, its images and facts out. The inference thread runs them by job kind.
import type { ImageFacts, JOB_INPUTS, JobKind, ParamsOf, PayloadOf, ResultFacts } from '@diffid/shared/contract';
import type { StageContext } from '../stages/context.ts';
import type { Rgb } from '../vision/pixels.ts';

/** A job kind's decoded input images, by the names its form uploads them under: a list for a field that takes several. */
export type InputImages<K extends JobKind> = { [N in keyof (typeof JOB_INPUTS)[K]]: (typeof JOB_INPUTS)[K][N] extends 'one' ? Rgb : Rgb[] };


/**
 * A morph's z_T per side (image_a, image_b), by DDIM inversion: given to the pipeline when a
 * stored identity has them for the job's conditioning, returned by it for the sides it inverted.
 */
export type InvertedLatents = Partial<Record<'image_a' | 'image_b', Float32Array>>;

/** What every pipeline returns: its images with what it says of each, and what it says of the job. */
export interface PipelineOutput {
  images: Array<{ rgb: Rgb; facts: ImageFacts }>;
  facts: ResultFacts;
  /** morph: the latents it inverted (none with embedding_only), for the identity cache. */
  inverted?: InvertedLatents;
}

/** What the inference thread runs: a job's payload, its decoded images, and latents cached for it. */
export type InferenceJobOf<K extends JobKind> = { payload: PayloadOf<K>; images: InputImages<K>; inverted?: InvertedLatents };
export type InferenceJob = { [K in JobKind]: InferenceJobOf<K> }[JobKind];

/** What a pipeline runs on: the job's decoded images, by field, and its parameters. */
export interface PipelineInput<K extends JobKind> {
  images: InputImages<K>;
  params: ParamsOf[K];
  /** morph: z_T of the sides a stored identity has them for; those sides are not inverted again. */
  inverted?: InvertedLatents;
}

export type Pipeline<K extends JobKind> = (ctx: StageContext, input: PipelineInput<K>) => Promise<PipelineOutput>;
