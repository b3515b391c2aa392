// `npm run bundle -- --check-colour A,B[,C…] --embedder FILE`: which channel order a recognizer
// wants, measured on the caller's photos — A and B of one person, any others of other people.
// Each order is linked into a scratch demo bundle with the detector (the linked one, else the
// shipped BlazeFace), and the order whose same-person similarity stands further above the
// different-person ones wins.
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { cosineSimilarity } from '@diffid/shared/diffusion';
import { type FaceDetectorEntry, type Normalization } from '@diffid/shared/bundle';
import { decodeRgb } from '@diffid/shared/image';
import { loadBundle } from '../runtime/bundle-loader.ts';
import { stageContext } from '../stages/context.ts';
import { embedFaces } from '../stages/embed-face.ts';
import { findInputFaces } from '../stages/find-face.ts';
import { buildDemoBundle } from './demo-bundle.ts';
import { linkEmbedder, type LinkedModel } from './link-models.ts';
import { writeBundle } from './write-bundle.ts';

export interface ColourOrderRow {
  order: Normalization['channel_order'];
  /** Similarity of the two photos of one person. */
  same: number;
  /** The highest similarity of a different-person pair; null when no other photo was given. */
  different: number | null;
  /** same − different (same alone without others). */
  margin: number;
}

/** Similarities under each channel order; the first row is the better one. */
export async function checkColourOrder(embedderPath: string, detector: LinkedModel<FaceDetectorEntry>, photoPaths: string[]): Promise<ColourOrderRow[]> {
  if (photoPaths.length < 2) throw new Error('--check-colour needs two photos of one person, then any number of photos of other people');
  const photos = await Promise.all(photoPaths.map(async (p) => decodeRgb(new Uint8Array(await readFile(p)), basename(p))));
  const rows: ColourOrderRow[] = [];
  for (const order of ['RGB', 'BGR'] as const) {
    const dir = await mkdtemp(join(tmpdir(), 'diffid-colour-'));
    try {
      await writeBundle(dir, buildDemoBundle({ detector, embedder: linkEmbedder(embedderPath, { preprocess: { channel_order: order } }) }));
      const bundle = await loadBundle(dir);
      try {
        const ctx = stageContext(bundle);
        const { used } = await findInputFaces(ctx, photos.map((image, i) => ({ image, label: basename(photoPaths[i] as string) })));
        const [a, b, ...others] = await embedFaces(ctx, used.map((u) => u.face.crop));
        const same = cosineSimilarity(a as Float32Array, b as Float32Array);
        const cross = others.flatMap((o) => [cosineSimilarity(a as Float32Array, o), cosineSimilarity(b as Float32Array, o)]);
        const different = cross.length > 0 ? Math.max(...cross) : null;
        rows.push({ order, same, different, margin: same - (different ?? 0) });
      } finally {
        await bundle.release();
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }
  return rows.sort((x, y) => y.margin - x.margin);
}

/** Margins closer than this are within what one more photo could change. */
export const UNDECIDED_MARGIN = 0.02;

/** The report `npm run bundle` prints. */
export function colourOrderReport(embedderPath: string, rows: ColourOrderRow[]): string {
  const [best, other] = rows as [ColourOrderRow, ColourOrderRow];
  const f = (v: number | null) => (v === null ? '—' : v.toFixed(3));
  const side = `${basename(embedderPath).replace(/\.onnx$/, '')}.json`;
  return [
    `channel order of ${basename(embedderPath)}: same person, most similar different pair, margin`,
    ...rows.map((r) => `  ${r.order}  same ${f(r.same)}  different ${f(r.different)}  margin ${f(r.margin)}`),
    best.margin - other.margin < UNDECIDED_MARGIN
      ? `The orders are within ${UNDECIDED_MARGIN} of each other on these photos (${best.order} ahead by ${f(best.margin - other.margin)}): too close to call; add photos of more people.`
      : `${best.order} separates same from different better (margin ${f(best.margin)} against ${f(other.margin)}).`,
    `Write it in the sidecar ${side}: { "preprocess": { "channel_order": "${best.order}" } }`,
  ].join('\n');
}
