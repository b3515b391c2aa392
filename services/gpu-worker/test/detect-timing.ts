// Times face detection per image with the shipped detector on 2048×1152 group photos made from
// ../shared/faces (group-photos.ts): one uploaded at 2048 px, one at 4000 px (decoded at 2048),
// each with the tiled passes and with the whole-photo pass alone (the detection before tiling).
// Not a test: run it by hand, on an idle machine, and copy the figures into docs/face-models.md.
//   node --conditions=diffid-source --import tsx services/gpu-worker/test/detect-timing.ts [repeats]
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { buildDefaultBundle } from '../src/bundles/default-bundle.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { loadBundle } from '../src/runtime/bundle-loader.ts';
import { detectFaces, detectionPlan, type Detector } from '../src/runtime/face-detector.ts';
import { groupPhoto, photosAbsent } from './group-photos.ts';

if (photosAbsent) {
  console.log(photosAbsent);
  process.exit(0);
}
const repeats = Number(process.argv[2] ?? 7);
const dir = await mkdtemp(join(tmpdir(), 'diffid-timing-'));
await writeBundle(dir, await buildDefaultBundle());
const bundle = await loadBundle(dir);
const det = bundle.manifest.models.face_detector;
const ports = bundle.ports.face_detector;
const graph = bundle.graphs.face_detector;
if (!det || !ports || !graph) throw new Error('the embedded default has no detector');
const detector: Detector = { det, ports, graph };

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
};
console.log(`${cpus().length} × ${cpus()[0]?.model}; load average before ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
for (const width of [2048, 4000]) {
  const g = await groupPhoto({ width, height: Math.round((width * 9) / 16), faceWidths: [120, 40, 100, 50, 80, 64], seed: 1 });
  const plan = detectionPlan(det, g.image);
  for (const [name, options] of [['tiled', {}], ['whole photo only', { maxRuns: 1 }]] as const) {
    const times: number[] = [];
    let found = 0;
    await detectFaces(detector, g.image, options); // warm-up
    for (let i = 0; i < repeats; i++) {
      const started = performance.now();
      found = (await detectFaces(detector, g.image, options)).length;
      times.push(performance.now() - started);
    }
    const runs = name === 'tiled' ? plan.runs : 1;
    console.log(
      `${width}-px upload, decoded ${g.image.width}×${g.image.height}, ${name}: ${runs} runs, ${found} of ${g.faces.length} faces, ` +
        `median ${median(times).toFixed(0)} ms (${times.map((t) => t.toFixed(0)).join(', ')})`,
    );
  }
}
console.log(`load average after ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
await bundle.release();
await rm(dir, { recursive: true, force: true });
