// Finds the face an image is about and aligns it: with the bundle's detector, the largest face's
// 5 landmarks; without one, the image is taken as an aligned portrait (the template placed on its
// centred square). Either way the landmarks are mapped onto the embedder's template by a
// similarity transform (Umeyama) and warped to its crop size.
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

/**
 * The largest face, or null when the detector finds none. `layout: 'canvas'` says the image is
 * one of the bundle's own outputs: without a detector, its face is where the reference canvas
 * put it rather than filling the image.
 */
export async function tryFindFace(ctx: StageContext, image: Rgb, layout: 'photo' | 'canvas' = 'photo'): Promise<FoundFace | null> {
  const m = ctx.bundle.manifest;
  const pre = m.models.face_embedder.preprocess;
  const template = pre.template as Point[];
  let face: Omit<FoundFace, 'crop'>;
  if (m.models.face_detector) {
    const faces = await detectFaces(ctx, image);
    const largest = faces[0];
    if (!largest) return null;
    face = { landmarks: largest.landmarks, box: largest.box, score: largest.score, faces: faces.length };
  } else if (layout === 'canvas' && m.reference?.kind === 'aligned_face') {
    const landmarks = templateOnCanvas(template, pre.size, image.width, m.reference.face_fraction);
    const margin = ((1 - m.reference.face_fraction) * image.width) / 2;
    face = { landmarks, box: [margin, margin, image.width - margin, image.height - margin], score: 1, faces: 1 };
  } else {
    const side = Math.min(image.width, image.height);
    const left = (image.width - side) / 2;
    const top = (image.height - side) / 2;
    face = { landmarks: portraitLandmarks(image, template, pre.size), box: [left, top, left + side, top + side], score: 1, faces: 1 };
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
