// Finds the face an image is about and aligns it: with the bundle's detector, the largest face's
// 5 landmarks; without one, the image is taken as an aligned portrait — its centred square laid
// out like the bundle's reference canvas, the template box spanning `face_fraction` of it (all of
// it for bundles that use the photo itself). The bundle's own outputs have exactly that layout.
// Either way the landmarks are mapped onto the embedder's template by a similarity transform
// (Umeyama) and warped to its crop size.
import { DiffIdError } from '@diffid/shared';
import { portraitLandmarks, similarityTransform, templateOnCanvas, warpSimilarity, type Point } from '../face-geometry.ts';
import type { Rgb } from '../pixels.ts';
import type { StageContext } from './context.ts';
import { detectFaces, type DetectedFace } from './detect-faces.ts';

export interface FoundFace {
  /** The embedder-sized aligned crop. */
  crop: Rgb;
  landmarks: Point[];
  box: DetectedFace['box'];
  /** Detector confidence (1 for an aligned portrait). */
  score: number;
  /** Faces seen in the image (1 for an aligned portrait). */
  faces: number;
}

/** The largest face; throws NO_FACE_DETECTED naming the image when there is none. */
export async function findFace(ctx: StageContext, image: Rgb, label: string): Promise<FoundFace> {
  const found = await tryFindFace(ctx, image);
  if (!found) {
    const det = ctx.bundle.manifest.models.face_detector;
    throw new DiffIdError('NO_FACE_DETECTED', `${label}: no face found (detector score threshold ${det?.score_threshold}); use a photo where one face is clearly visible`);
  }
  return found;
}

/** The largest face, or null when the detector finds none. */
export async function tryFindFace(ctx: StageContext, image: Rgb): Promise<FoundFace | null> {
  const m = ctx.bundle.manifest;
  const pre = m.models.face_embedder.preprocess;
  const template = pre.template as Point[];
  let face: Omit<FoundFace, 'crop'>;
  if (m.models.face_detector) {
    const faces = await detectFaces(ctx, image);
    const largest = faces[0];
    if (!largest) return null;
    face = { landmarks: largest.landmarks, box: largest.box, score: largest.score, faces: faces.length };
  } else {
    const fraction = m.reference?.kind === 'aligned_face' ? m.reference.face_fraction : 1;
    const box = Math.min(image.width, image.height) * fraction;
    const left = (image.width - box) / 2;
    const top = (image.height - box) / 2;
    face = { landmarks: portraitLandmarks(image, template, pre.size, fraction), box: [left, top, left + box, top + box], score: 1, faces: 1 };
  }
  const crop = warpSimilarity(image, similarityTransform(face.landmarks, template), pre.size, pre.size);
  return { crop, ...face };
}

/**
 * The reference image I of the paper (CLIP's input, and the VAE's for morphing): the photo
 * itself, or — when the manifest asks for `aligned_face` — the face aligned onto a square canvas
 * of the bundle's image size, the template box spanning `face_fraction` of its width.
 */
export function referenceImage(ctx: StageContext, image: Rgb, face: FoundFace): Rgb {
  const m = ctx.bundle.manifest;
  const ref = m.reference;
  if (!ref || ref.kind === 'photo') return image;
  const pre = m.models.face_embedder.preprocess;
  const canvas = templateOnCanvas(pre.template as Point[], pre.size, m.image.width, ref.face_fraction);
  return warpSimilarity(image, similarityTransform(face.landmarks, canvas), m.image.width, m.image.height);
}
