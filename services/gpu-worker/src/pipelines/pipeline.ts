// The one shape of a pipeline: a job's context and its input (decoded images and settled
// parameters) in, its images and facts out. The inference thread runs them by job kind.
import type { ImageFacts, JOB_INPUTS, JobKind, ParamsOf, PayloadOf, ResultFacts } from '@diffid/shared/contract';
import type { StageContext } from '../stages/context.ts';
import type { Rgb } from '../vision/pixels.ts';

/** A job kind's decoded input images, by the names its form uploads them under: a list for a field that takes several. */
export type InputImages<K extends JobKind> = { [N in keyof (typeof JOB_INPUTS)[K]]: (typeof JOB_INPUTS)[K][N] extends 'one' ? Rgb : Rgb[] };


/** What every pipeline returns: its images with what it says of each, and what it says of the job. */
export interface PipelineOutput {
  images: Array<{ rgb: Rgb; facts: ImageFacts }>;
  facts: ResultFacts;
}

/** What the inference thread runs: a job's payload and its decoded images. */
export type InferenceJobOf<K extends JobKind> = { payload: PayloadOf<K>; images: InputImages<K> };
export type InferenceJob = { [K in JobKind]: InferenceJobOf<K> }[JobKind];

/** What a pipeline runs on: the job's decoded images, by field, and its parameters. */
export interface PipelineInput<K extends JobKind> {
  images: InputImages<K>;
  params: ParamsOf[K];
}

export type Pipeline<K extends JobKind> = (ctx: StageContext, input: PipelineInput<K>) => Promise<PipelineOutput>;
