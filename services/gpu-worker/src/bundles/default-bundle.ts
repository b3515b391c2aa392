// The embedded default: the analytic demo diffusion with the shipped face detector and
// recognizer (shipped-models.json), generated on first start when no bundle is configured. Its
// directory is named by the digest of what it holds, so a worker never loads a stale default
// written by an older version.
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MANIFEST_FILE, type FaceDetectorEntry, type FaceEmbedderEntry } from '@diffid/shared/bundle';
import { readShippedModel } from './shipped-models.ts';
import { buildDemoBundle } from './demo-bundle.ts';
import { linkDetector, linkEmbedder, type LinkedModel } from './link-models.ts';
import { sha256Hex, withChecksums, writeBundle, type GeneratedBundle } from './write-bundle.ts';

export const DEFAULT_BUNDLE_KIND = 'demo';

/** The shipped detector and recognizer, checked against their sha256 and linked (each file read once). */
export async function shippedFaceModels(): Promise<{ detector: LinkedModel<FaceDetectorEntry>; embedder: LinkedModel<FaceEmbedderEntry> & { width: number } }> {
  const detector = await readShippedModel('face_detector');
  const embedder = await readShippedModel('face_embedder');
  return { detector: linkDetector(detector.path, detector.file.sidecar, detector.bytes), embedder: linkEmbedder(embedder.path, embedder.file.sidecar, embedder.bytes) };
}

/** The demo bundle with the shipped detector and recognizer, in memory. */
export async function buildDefaultBundle(): Promise<GeneratedBundle> {
  return buildDemoBundle(await shippedFaceModels());
}

/** Returns the default bundle's directory under `dataDir`, generating it if it is not there. */
export async function ensureDefaultBundle(dataDir: string): Promise<{ dir: string; generated: boolean }> {
  const bundle = await buildDefaultBundle();
  const digest = sha256Hex(new TextEncoder().encode(JSON.stringify(withChecksums(bundle)))).slice(0, 12);
  const dir = join(dataDir, 'bundles', `${DEFAULT_BUNDLE_KIND}-${digest}`);
  if (existsSync(join(dir, MANIFEST_FILE))) return { dir, generated: false };
  await mkdir(dirname(dir), { recursive: true });
  // Written aside and renamed into place, so that workers starting together never see half a bundle.
  const tmp = await mkdtemp(`${dir}.tmp-`);
  try {
    await writeBundle(tmp, bundle);
    await rename(tmp, dir);
    return { dir, generated: true };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    if (existsSync(join(dir, MANIFEST_FILE))) return { dir, generated: false };
    throw err;
  }
}
