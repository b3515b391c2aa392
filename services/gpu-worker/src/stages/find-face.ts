// Finds the face an image is about and crops it for the face embedder. Without a detector in the
// bundle, the image is taken to be an aligned portrait: its centred square, resized to the
// embedder's crop size.
import { DiffIdError } from '@diffid/shared';
import { squarePortrait, type Rgb } from '../pixels.ts';
import type { StageContext } from './context.ts';

export interface FoundFace {
  /** The embedder-sized crop. */
  crop: Rgb;
  /** Faces seen in the image (1 for an aligned portrait). */
  faces: number;
}

export function findFace(ctx: StageContext, image: Rgb, label: string): FoundFace {
  const embedder = ctx.bundle.manifest.models.face_embedder;
  if (ctx.bundle.manifest.models.face_detector) {
    throw new DiffIdError('INFERENCE_FAILED', `${label}: this worker cannot run the bundle's face detector yet`);
  }
  return { crop: squarePortrait(image, embedder.preprocess.size), faces: 1 };
}
