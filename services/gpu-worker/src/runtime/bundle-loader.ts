// Opens a model bundle: validates manifest.json, checks every file's sha256, opens every graph
// with onnxruntime and checks the manifest against the graphs' metadata, loads the tokenizer.
// Every failure is a DiffIdError naming the role, the file and what differs.

import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { DiffIdError } from '@diffid/shared/contract';
import { MANIFEST_FILE, ManifestError, ROLES, manifestFiles, validateManifest, type GraphEntry, type Manifest, type Role } from '@diffid/shared/bundle';
import { externalDataLocations } from './onnx-inspect.ts';
import { checkSignatures, SignatureMismatch, type BundleDims, type BundlePorts, type ResolvedSignatures } from './bundle-signature.ts';
import { probeDetector } from './face-detector.ts';
import { GRAPH_CACHE_MIN_BYTES } from './graph-cache.ts';
import { openGraph, type CacheStatus, type ExecutionProvider, type Graph, type GraphSignature } from './onnx.ts';
import { createPromptTokenizer, parseMerges, type PromptTokenizer, type TokenizerSource } from './tokenizer.ts';

/** The opened graphs: every required role, and the detector when the bundle has one. */
export type BundleGraphs = { [R in Exclude<Role, 'face_detector'>]: Graph } & { face_detector?: Graph };

export interface LoadedBundle {
  dir: string;
  manifest: Manifest;
  /** sha256 of manifest.json, which pins every file's sha256: the bundle's identity. */
  digest: string;
  graphs: BundleGraphs;
  ports: BundlePorts;
  dims: BundleDims;
  tokenizer: PromptTokenizer;
  /** Where loading took its time: checking the files' sha256, and opening each graph. */
  load: LoadReport;
  release(): Promise<void>;
}

export interface LoadReport {
  /** Bytes of every graph and weight file. */
  bytes: number;
  verify_s: number;
  graphs: Partial<Record<Role, { open_s: number; cache: CacheStatus }>>;
}

export interface LoadOptions {
  executionProvider?: ExecutionProvider;
  intraOpThreads?: number;
  /** onnxruntime's optimized-graph cache folder (graph-cache.ts); unset: every graph is optimized as it opens. */
  graphCacheDir?: string;
}

/** sha256 of a file, hex. */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Resolves a manifest path inside the bundle, refusing anything that leaves it. */
function inside(dir: string, file: string, where: string): string {
  const full = resolve(dir, file);
  const rel = relative(dir, full);
  if (rel.startsWith('..') || isAbsolute(rel)) {
    throw new DiffIdError('BUNDLE_MANIFEST_INVALID', `${where}: file "${file}" is outside the bundle directory ${dir}`);
  }
  return full;
}

/** Reads and validates manifest.json. */
export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, MANIFEST_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new DiffIdError('BUNDLE_FILE_MISSING', `no ${MANIFEST_FILE} in the bundle directory ${dir}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new DiffIdError('BUNDLE_MANIFEST_INVALID', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  try {
    return validateManifest(json);
  } catch (err) {
    if (err instanceof ManifestError) throw new DiffIdError('BUNDLE_MANIFEST_INVALID', `${path}: ${err.message}`, { cause: err });
    throw err;
  }
}

/** Checks that every file the manifest names exists and hashes to its sha256. */
export async function verifyFiles(dir: string, manifest: Manifest): Promise<void> {
  for (const { where, entry } of manifestFiles(manifest)) {
    const path = inside(dir, entry.file, where);
    try {
      if (!(await stat(path)).isFile()) throw new Error('not a file');
    } catch {
      throw new DiffIdError('BUNDLE_FILE_MISSING', `${where}: file "${entry.file}" is missing from the bundle directory ${dir}`);
    }
    const actual = await sha256File(path);
    if (actual !== entry.sha256) {
      throw new DiffIdError('BUNDLE_CHECKSUM_MISMATCH', `${where}: file "${entry.file}" has sha256 ${actual}, the manifest says ${entry.sha256}; refusing to load it`);
    }
  }
}

async function readTokenizer(dir: string, manifest: Manifest): Promise<PromptTokenizer> {
  const spec = manifest.tokenizer;
  try {
    let source: TokenizerSource;
    if (spec.tokenizer_json) {
      source = { kind: 'tokenizer_json', json: JSON.parse(await readFile(inside(dir, spec.tokenizer_json.file, 'tokenizer'), 'utf8')) };
    } else if (spec.vocab && spec.merges) {
      source = {
        kind: 'vocab_merges',
        vocab: JSON.parse(await readFile(inside(dir, spec.vocab.file, 'tokenizer'), 'utf8')) as Record<string, number>,
        merges: parseMerges(await readFile(inside(dir, spec.merges.file, 'tokenizer'), 'utf8')),
      };
    } else {
      throw new Error('no tokenizer files');
    }
    return createPromptTokenizer(source, spec);
  } catch (err) {
    throw new DiffIdError('BUNDLE_TOKENIZER_INVALID', `tokenizer: ${(err as Error).message}`, { cause: err });
  }
}

/** Graphs up to this size are read to see which weight files they name; larger ones are 2 GB exports that must keep their weights outside anyway. */
const INSPECT_LIMIT_BYTES = 256 * 1024 * 1024;

/**
 * Refuses a graph that reads weights from a file the manifest does not list (that file would
 * escape the sha256 checks). Read from the graph itself, which holds no weights when they are
 * external, so nothing large is read twice.
 */
async function checkExternalData(dir: string, role: Role, entry: GraphEntry, path: string): Promise<void> {
  if ((await stat(path)).size > INSPECT_LIMIT_BYTES) return;
  const graphDir = dirname(path);
  const listed = new Set((entry.external_data ?? []).map((d) => inside(dir, d.file, `${role} external data`)));
  let locations: string[];
  try {
    locations = externalDataLocations(new Uint8Array(await readFile(path)));
  } catch {
    return; // Not a readable ONNX graph: onnxruntime says so when it opens it.
  }
  for (const location of locations) {
    const file = resolve(graphDir, location);
    if (!listed.has(file)) {
      throw new DiffIdError(
        'BUNDLE_MANIFEST_INVALID',
        `${role}: the graph "${entry.file}" keeps weights in "${location}", which the manifest does not list; add it as models.${role}.external_data: [{ "file": "${relative(dir, file)}", "sha256": "…" }]`,
      );
    }
  }
}

/** The cache key of a graph large enough to be worth caching (its files, verified, by their sha256). */
async function cacheKey(dir: string, entry: GraphEntry, cacheDir: string | undefined): Promise<{ dir: string; sources: string[] } | undefined> {
  if (!cacheDir) return undefined;
  const files = [entry, ...(entry.external_data ?? [])];
  let bytes = 0;
  for (const f of files) bytes += (await stat(join(dir, f.file))).size;
  return bytes < GRAPH_CACHE_MIN_BYTES ? undefined : { dir: cacheDir, sources: files.map((f) => f.sha256) };
}

/** Loads and checks a whole bundle; nothing is left open when it throws. */
export async function loadBundle(dirInput: string, options: LoadOptions = {}): Promise<LoadedBundle> {
  const dir = resolve(dirInput);
  const manifest = await readManifest(dir);
  const verifyStart = performance.now();
  await verifyFiles(dir, manifest);
  const load: LoadReport = { bytes: 0, verify_s: (performance.now() - verifyStart) / 1000, graphs: {} };
  const tokenizer = await readTokenizer(dir, manifest);
  const graphs: Partial<Record<Role, Graph>> = {};
  const release = async () => {
    await Promise.all(Object.values(graphs).map((g) => g.release()));
  };
  try {
    for (const role of ROLES) {
      const entry = manifest.models[role];
      if (!entry) continue;
      const path = inside(dir, entry.file, role);
      await checkExternalData(dir, role, entry, path);
      for (const f of [entry, ...(entry.external_data ?? [])]) load.bytes += (await stat(join(dir, f.file))).size;
      const started = performance.now();
      try {
        const graph = await openGraph(path, { executionProvider: options.executionProvider ?? 'cpu', intraOpThreads: options.intraOpThreads ?? 0, cache: await cacheKey(dir, entry, options.graphCacheDir) });
        graphs[role] = graph;
        load.graphs[role] = { open_s: (performance.now() - started) / 1000, cache: graph.cache };
      } catch (err) {
        if (err instanceof DiffIdError) throw err;
        throw new DiffIdError('BUNDLE_GRAPH_UNREADABLE', `${role}: onnxruntime cannot open "${entry.file}": ${(err as Error).message}`, { cause: err });
      }
    }
    const signatures: Partial<Record<Role, GraphSignature>> = {};
    for (const [role, g] of Object.entries(graphs) as Array<[Role, Graph]>) signatures[role] = g.signature;
    let resolved: ResolvedSignatures;
    try {
      resolved = checkSignatures(manifest, signatures);
    } catch (err) {
      if (err instanceof SignatureMismatch) throw new DiffIdError('BUNDLE_GRAPH_MISMATCH', err.message, { cause: err });
      throw err;
    }
    const det = manifest.models.face_detector;
    if (det && graphs.face_detector && resolved.ports.face_detector) {
      try {
        await probeDetector({ det, graph: graphs.face_detector, ports: resolved.ports.face_detector });
      } catch (err) {
        if (err instanceof DiffIdError) throw err;
        throw new DiffIdError('BUNDLE_GRAPH_MISMATCH', `face_detector (${det.file}): a trial run on a blank ${det.preprocess.size}² input failed: ${(err as Error).message}`, { cause: err });
      }
    }
    // checkSignatures refuses a bundle missing a required role's graph, so every one was opened.
    const digest = await sha256File(join(dir, MANIFEST_FILE));
    return { dir, manifest, digest, graphs: graphs as BundleGraphs, ports: resolved.ports, dims: resolved.dims, tokenizer, load, release };
  } catch (err) {
    await release();
    throw err;
  }
}
