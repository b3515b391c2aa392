// The README's curl examples, run as written (only the host and port swapped for the test's).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { imageInfo } from '@diffid/shared/image';
import { buildDefaultBundle, buildDemoBundle } from '@diffid/gpu-worker';
import { startStack } from './harness.ts';
import { faceFile } from './images.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../../..');
const hasCurl = await run('sh', ['-c', 'command -v curl']).then(() => true, () => false);

const PHOTOS = join(ROOT, '../shared/faces/photos');
const havePhotos = existsSync(join(PHOTOS, 'fr_obama.jpg'));

// The README describes `npm start`: the embedded default (shipped detector and recognizer) on the
// reader's own photos — here two from ../shared/faces. Without them, the same commands run on the
// demo bundle without a detector, which takes synthetic drawings (faceFile) as aligned faces.
const photo = (name: string) => () => readFile(join(PHOTOS, name));
const variants = [
  { name: 'on the embedded default with real photos', skip: !havePhotos && `../shared/faces is absent (looked in ${PHOTOS})`, build: () => buildDefaultBundle(), a: photo('fr_obama.jpg'), b: photo('fr_biden.jpg') },
  { name: 'on the demo bundle without a detector, with synthetic faces', skip: false, build: async () => buildDemoBundle(), a: () => faceFile(1), b: () => faceFile(2) },
];

for (const v of variants) t.test(`the README curl examples work ${v.name}`, { skip: (!hasCurl && 'curl is not installed') || v.skip }, async (t) => {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const block = /<!-- curl-examples:start -->\n```sh\n([\s\S]*?)```\n<!-- curl-examples:end -->/.exec(readme)?.[1];
  t.ok(block, 'the README has its curl examples block');
  const s = await startStack(t, { build: v.build });
  const dir = await mkdtemp(join(tmpdir(), 'diffid-readme-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  await writeFile(join(dir, 'face-a.jpg'), await v.a());
  await writeFile(join(dir, 'face-b.jpg'), await v.b());
  const script = `set -euo pipefail\n${(block as string).replaceAll('localhost:8080', s.base.replace('http://', ''))}`;
  const { stdout } = await run('bash', ['-c', script], { cwd: dir, timeout: 120_000 });
  t.match(stdout, /"status":"succeeded"/, 'the generate job succeeded');
  t.match(stdout, /"kind":"compare","status":"succeeded"[^\n]*"similarity":/, 'the compare answered in one request');
  t.match(stdout, /"status":"canceled"/, 'the last job was canceled');
  t.same(await imageInfo(await readFile(join(dir, 'generated-0.png'))), { format: 'png', width: 256, height: 256, channels: 3 });
  t.same(await imageInfo(await readFile(join(dir, 'morph-1.png'))), { format: 'png', width: 256, height: 256, channels: 3 });
});
