// Writes a generated bundle: its files, then manifest.json with every file's sha256.

import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { MANIFEST_FILE, validateManifest, type GraphEntry, type Manifest } from '@diffid/shared/bundle';

/** A bundle in memory: file bytes by relative path, and the manifest (sha256 fields filled in on write). */
export interface GeneratedBundle {
  files: Map<string, Uint8Array>;
  manifest: Manifest;
}

/** A manifest graph entry whose sha256 `withChecksums` fills in. */
export function graphEntry(file: string, inputs: Record<string, string>, outputs: Record<string, string>): GraphEntry {
  return { file, sha256: '', inputs, outputs };
}

export const sha256Hex = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Fills every `{ file, sha256 }` of the manifest from the bytes it names. */
export function withChecksums(bundle: GeneratedBundle): Manifest {
  const fill = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(fill);
    if (node === null || typeof node !== 'object') return node;
    const obj = node as Record<string, unknown>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(obj)) out[k] = fill(v);
    if (typeof obj.file === 'string' && 'sha256' in obj) {
      const bytes = bundle.files.get(obj.file);
      if (!bytes) throw new Error(`manifest names "${obj.file}", which the bundle does not hold`);
      out.sha256 = sha256Hex(bytes);
    }
    return out;
  };
  return validateManifest(fill(bundle.manifest));
}

/** Writes the bundle into `dir` (created if needed); returns the manifest as written. */
export async function writeBundle(dir: string, bundle: GeneratedBundle): Promise<Manifest> {
  const manifest = withChecksums(bundle);
  for (const [rel, bytes] of bundle.files) {
    const path = join(dir, rel);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  }
  await writeFile(join(dir, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
