// Finds the faces an image holds and aligns the one it is about. With the bundle's detector:
// every face, left to right, and the largest (or the one the request names) aligned from its
// landmarks. Without one, the image is taken as an aligned portrait — its centred square laid out
// like the bundle's reference canvas, the template box spanning `face_fraction` of it (all of it
// for bundles that use the photo itself); the bundle's own outputs have exactly that layout.
// Either way the landmarks are mapped onto the embedder's template by a similarity transform
// (Umeyama) and warped to its crop size.
import { DETECTOR_LAYOUTS, type DetectorLayout, type FaceEmbedderEntry } from '@diffid/shared/bundle';
import { DiffIdError, type InputFaces, type ResultWarning, type SeenFace } from '@diffid/shared/contract';
import { alignmentPairs, portraitLandmarks, similarityTransform, templateOnCanvas, warpSimilarity, type Point } from '../vision/face-geometry.ts';
import { squarePortraitGeometry, type Rgb } from '../vision/pixels.ts';
import type { StageContext } from './context.ts';
import { detectFaces, detectionPlan } from '../runtime/face-detector.ts';
import { boxArea, type DetectedFace } from '../vision/detect-faces.ts';

/** Below this eye distance (pixels in the photo) a 112² recognizer crop is mostly upsampling. */
export const MIN_EYE_DISTANCE = 20;
/**
 * A photo whose long side (decoded pixels) is at least this is large: a 256² detector sees it
 * reduced 4× or more, and its small faces are found only by the tiled passes (face-tiles.ts).
 */
export const LARGE_PHOTO_SIDE = 1024;
/** Another face at least this fraction of the chosen face's box area makes the choice a close call. */
export const AMBIGUOUS_AREA_RATIO = 0.9;

export interface FoundFace extends DetectedFace {
  /** The embedder-sized aligned crop. */
  crop: Rgb;
  /** How `landmarks` are laid out (the detector's layout; SCRFD's 5 points for aligned portraits). */
  layout: DetectorLayout;
}

/** The face used from one input, what the input held, and what the caller should know. */
export interface FaceReport {
  face: FoundFace;
  input: InputFaces;
  warnings: ResultWarning[];
}

function layoutOf(ctx: StageContext): DetectorLayout {
  return ctx.bundle.manifest.models.face_detector?.layout ?? 'scrfd';
}

/** Every face in the image, left to right (by box centre). */
export async function locateFaces(ctx: StageContext, image: Rgb): Promise<DetectedFace[]> {
  const det = ctx.bundle.manifest.models.face_detector;
  const ports = ctx.bundle.ports.face_detector;
  const graph = ctx.bundle.graphs.face_detector;
  if (!det) return [portraitFace(ctx, image)];
  if (!ports || !graph) throw new Error('the bundle has no face detector graph');
  const centre = (f: DetectedFace) => f.box[0] + f.box[2];
  return (await detectFaces({ det, ports, graph }, image)).sort((a, b) => centre(a) - centre(b));
}

/** The face an aligned portrait (or the bundle's reference canvas) has by its layout. */
function portraitFace(ctx: StageContext, image: Rgb): DetectedFace {
  const m = ctx.bundle.manifest;
  const pre = m.models.face_embedder.preprocess;
  const fraction = m.reference?.kind === 'aligned_face' ? m.reference.face_fraction : 1;
  const box = Math.min(image.width, image.height) * fraction;
  const left = (image.width - box) / 2;
  const top = (image.height - box) / 2;
  return { landmarks: portraitLandmarks(image, pre.template as Point[], pre.size, fraction), box: [left, top, left + box, top + box], score: 1 };
}

/** How a recognizer wants its crop: the bundle's own, or a second recognizer's (npm run eval). */
type CropSpec = Pick<FaceEmbedderEntry['preprocess'], 'size' | 'template'>;

/** Aligns a face by its landmarks; a portrait face has the template's 5 points (SCRFD's layout). */
function align(ctx: StageContext, image: Rgb, face: DetectedFace, layout = layoutOf(ctx), pre: CropSpec = ctx.bundle.manifest.models.face_embedder.preprocess): FoundFace {
  const { src, dst } = alignmentPairs(layout, face.landmarks, pre.template as Point[]);
  return { ...face, layout, crop: warpSimilarity(image, similarityTransform(src, dst), pre.size, pre.size) };
}

/** Index of the face with the largest box (the first of equals). */
const largestIndex = (faces: DetectedFace[]) => faces.reduce((best, f, i) => (boxArea(f.box) > boxArea((faces[best] as DetectedFace).box) ? i : best), 0);

/** A face as results report it: in the upload's pixels (`scale` of the decoded image), rounded. */
function seen(face: DetectedFace, layout: DetectorLayout, scale: number): SeenFace {
  const names = DETECTOR_LAYOUTS[layout].landmarks;
  const px = (v: number) => Math.round(v * scale * 10) / 10;
  return {
    box: face.box.map(px) as SeenFace['box'],
    score: Math.round(face.score * 1000) / 1000,
    landmarks: Object.fromEntries(face.landmarks.map((p, i) => [names[i] ?? `point_${i}`, [px(p[0]), px(p[1])]])),
  };
}

/**
 * The face an input is about: the one `faceIndex` names (left to right, from 0), else the largest.
 * Throws NO_FACE_DETECTED or FACE_INDEX_OUT_OF_RANGE naming the input.
 */
export async function findFace(ctx: StageContext, image: Rgb, label: string, faceIndex?: number): Promise<FaceReport> {
  const faces = await locateFaces(ctx, image);
  if (faces.length === 0) {
    const det = ctx.bundle.manifest.models.face_detector;
    throw new DiffIdError('NO_FACE_DETECTED', `${label}: no face found (detector score threshold ${det?.score_threshold}); use a photo where a face is clearly visible`);
  }
  const index = faceIndex ?? largestIndex(faces);
  const chosen = faces[index];
  if (!chosen) {
    throw new DiffIdError('FACE_INDEX_OUT_OF_RANGE', `${label}: face_index ${index} asks for a face that is not there; ${faces.length} face(s) were found (0 … ${faces.length - 1}, left to right)`);
  }
  const warnings: ResultWarning[] = [];
  if (faceIndex === undefined) {
    const close = faces.filter((f, i) => i !== index && boxArea(f.box) >= AMBIGUOUS_AREA_RATIO * boxArea(chosen.box));
    if (close.length > 0) {
      warnings.push({
        code: 'AMBIGUOUS_FACE',
        input: label,
        message: `${label}: ${faces.length} faces were found and ${close.length === 1 ? 'another is' : `${close.length} others are`} within ${Math.round((1 - AMBIGUOUS_AREA_RATIO) * 100)} % of the size of face ${index} (used); name the one you mean with face_index`,
      });
    }
  }
  // Measured in the pixels the recognizer's crop is warped from (the decoded image).
  const eyes = eyeDistance(chosen);
  if (eyes < MIN_EYE_DISTANCE) {
    warnings.push({
      code: 'SMALL_FACE',
      input: label,
      message: `${label}: the face's eyes are ${eyes.toFixed(1)} px apart (under ${MIN_EYE_DISTANCE}); the recognizer sees mostly upsampled pixels, so identity may be lost; use a larger or sharper photo of the face`,
    });
  }
  const crowded = smallFacesWarning(ctx, image, label, faces);
  if (crowded) warnings.push(crowded);
  const layout = layoutOf(ctx);
  const scale = image.scale ?? 1;
  return { face: align(ctx, image, chosen), input: { input: label, faces: faces.map((f) => seen(f, layout, scale)), face_index: index }, warnings };
}

/** Eye distance of a face (its first two landmarks are the eyes in every layout), in the image's pixels. */
function eyeDistance(face: DetectedFace): number {
  const [e1, e2] = face.landmarks as [Point, Point];
  return Math.hypot(e2[0] - e1[0], e2[1] - e1[1]);
}

/**
 * LARGE_PHOTO_SMALL_FACES, when a large photo holds faces whose eyes are under MIN_EYE_DISTANCE
 * apart (decoded pixels): faces a little smaller still are under what the detector looks for and
 * may be missing from the list, and faces this small keep little identity. Cropping closer helps
 * either way; when the upload was reduced to the working size, a crop also keeps the detail the
 * reduction drops. Null otherwise.
 */
function smallFacesWarning(ctx: StageContext, image: Rgb, label: string, faces: DetectedFace[]): ResultWarning | null {
  const det = ctx.bundle.manifest.models.face_detector;
  if (!det || Math.max(image.width, image.height) < LARGE_PHOTO_SIDE) return null;
  const small = faces.filter((f) => eyeDistance(f) < MIN_EYE_DISTANCE);
  if (small.length === 0) return null;
  const scale = image.scale ?? 1;
  const upload = `${Math.round(image.width * scale)}×${Math.round(image.height * scale)}`;
  const reduced = scale > 1.001;
  const floor = Math.round(detectionPlan(det, image).minFace * scale);
  const which = small.length === faces.length ? (faces.length === 1 ? 'its face has' : `all ${faces.length} faces have`) : `${small.length} of its ${faces.length} faces ${small.length === 1 ? 'has' : 'have'}`;
  return {
    code: 'LARGE_PHOTO_SMALL_FACES',
    input: label,
    message:
      `${label}: the photo is ${upload} px and ${which} eyes under ${MIN_EYE_DISTANCE} px apart${reduced ? ` at the ${image.width}×${image.height} px the service works at` : ''}; ` +
      `faces narrower than about ${floor} px are not looked for and may be missing from the list, and faces this small keep little identity; ` +
      `crop the photo closer around the people you mean${reduced ? ` (a crop keeps the detail that reducing the photo to ${image.width}×${image.height} px drops)` : ', or send a sharper photo taken closer'}`,
  };
}

/**
 * The aligned crop of a generated image's face, for scoring: the largest face found; when the
 * detector finds none in an output of a bundle whose outputs are laid out on the reference
 * canvas (`aligned_face`), the face that layout puts there — a detector's confidence drops on
 * sampling noise, and the canvas fixes where the face is; otherwise null.
 */
export async function largestFaceCrop(ctx: StageContext, image: Rgb, pre?: CropSpec): Promise<Rgb | null> {
  const faces = await locateFaces(ctx, image);
  const largest = faces[largestIndex(faces)];
  if (largest) return align(ctx, image, largest, layoutOf(ctx), pre).crop;
  const m = ctx.bundle.manifest;
  const onCanvas = m.reference?.kind === 'aligned_face' && image.width === m.image.width && image.height === m.image.height;
  return onCanvas ? align(ctx, image, portraitFace(ctx, image), 'scrfd', pre).crop : null;
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
  const { src, dst } = alignmentPairs(face.layout, face.landmarks, canvas);
  return warpSimilarity(image, similarityTransform(src, dst), m.image.width, m.image.height);
}

/**
 * Where a face's eyes are on the frames made from its reference image: the VAE sees the
 * reference's centred square at the bundle's size (encodeLatents), and an `aligned_face`
 * reference puts the eyes on the canvas template.
 */
export function eyesOnFrame(ctx: StageContext, image: Rgb, face: FoundFace): [Point, Point] {
  const m = ctx.bundle.manifest;
  const size = m.image.width;
  if (m.reference?.kind === 'aligned_face') {
    const pre = m.models.face_embedder.preprocess;
    const [a, b] = templateOnCanvas(pre.template as Point[], pre.size, size, m.reference.face_fraction) as [Point, Point];
    return [a, b];
  }
  const { left, top, scale } = squarePortraitGeometry(image, size);
  const [a, b] = face.landmarks as [Point, Point];
  return [
    [(a[0] - left) * scale, (a[1] - top) * scale],
    [(b[0] - left) * scale, (b[1] - top) * scale],
  ];
}

/** One input image to find a face in: its pixels, how results name it, the face asked for. */
export interface FaceRequest {
  image: Rgb;
  label: string;
  faceIndex?: number;
}

/** The faces used (in input order, skipped ones left out), every input's report, and warnings. */
export interface FoundInputs {
  used: Array<{ image: Rgb; face: FoundFace }>;
  inputs: InputFaces[];
  warnings: ResultWarning[];
}

/**
 * The face of each input. An input without a face fails the job naming it, or — with `skip` —
 * is left out with a FACE_SKIPPED warning (the job still fails when every input is skipped).
 */
export async function findInputFaces(ctx: StageContext, requests: FaceRequest[], onMissing: 'fail' | 'skip' = 'fail'): Promise<FoundInputs> {
  const out: FoundInputs = { used: [], inputs: [], warnings: [] };
  for (const r of requests) {
    try {
      const report = await findFace(ctx, r.image, r.label, r.faceIndex);
      out.used.push({ image: r.image, face: report.face });
      out.inputs.push(report.input);
      out.warnings.push(...report.warnings);
    } catch (err) {
      if (onMissing === 'fail' || !(err instanceof DiffIdError) || err.key !== 'NO_FACE_DETECTED') throw err;
      out.inputs.push({ input: r.label, faces: [], face_index: null });
      out.warnings.push({ code: 'FACE_SKIPPED', input: r.label, message: `${err.message}; on_missing_face=skip left this photo out` });
    }
  }
  if (out.used.length === 0) {
    throw new DiffIdError('NO_FACE_DETECTED', `no photo has a usable face (${requests.map((r) => r.label).join(', ')}); use photos where the face is clearly visible`);
  }
  return out;
}
