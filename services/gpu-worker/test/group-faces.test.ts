// Faces in group photos with the shipped detector (the embedded default): group photos made from
// the real portraits of ../shared/faces (group-photos.ts), 40–120 px faces on 2000- and 4000-px
// canvases, decoded as the worker decodes uploads; the real two-person photo; and the portraits,
// whose face must come out as it did before the tiled passes existed. Skips, saying so, when
// ../shared/faces is absent.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { WORKING_MAX_SIDE, decodeRgb } from '@diffid/shared/image';
import type { SeenFace } from '@diffid/shared/contract';
import { buildDefaultBundle } from '../src/bundles/default-bundle.ts';
import { writeBundle } from '../src/bundles/write-bundle.ts';
import { loadBundle, type LoadedBundle } from '../src/runtime/bundle-loader.ts';
import { detectFaces, detectionPlan, type Detector } from '../src/runtime/face-detector.ts';
import { stageContext } from '../src/stages/context.ts';
import { findFace } from '../src/stages/find-face.ts';
import { MAX_DETECTOR_RUNS } from '../src/vision/face-tiles.ts';
import { PHOTOS, groupPhoto, photosAbsent } from './group-photos.ts';
import { tempDir } from './helpers.ts';

const skip = photosAbsent;

async function shipped(t: Test): Promise<{ bundle: LoadedBundle; detector: Detector }> {
  const dir = await tempDir(t, 'diffid-group-');
  await writeBundle(dir, await buildDefaultBundle());
  const bundle = await loadBundle(dir);
  t.teardown(() => bundle.release());
  const det = bundle.manifest.models.face_detector;
  const ports = bundle.ports.face_detector;
  const graph = bundle.graphs.face_detector;
  if (!det || !ports || !graph) throw new Error('the embedded default has no detector');
  return { bundle, detector: { det, ports, graph } };
}

type Box = [number, number, number, number];
const iou = (a: Box, b: Box) => {
  const w = Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]));
  const h = Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
  const area = (x: Box) => (x[2] - x[0]) * (x[3] - x[1]);
  return (w * h) / (area(a) + area(b) - w * h);
};

const photo = async (name: string) => decodeRgb(new Uint8Array(await readFile(join(PHOTOS, name))), name, WORKING_MAX_SIDE);

t.test('group photos of 4 and 6 people, faces 40–120 px, on 2000- and 4000-px canvases: every face found where it was pasted, left to right', { skip }, async (t) => {
  const { bundle, detector } = await shipped(t);
  const ctx = stageContext(bundle);
  const groups = [
    { width: 2000, height: 1125, faceWidths: [64, 120, 40, 90] },
    { width: 2000, height: 1125, faceWidths: [120, 40, 100, 50, 80, 64] },
    { width: 4000, height: 2250, faceWidths: [64, 120, 40, 90] },
    { width: 4000, height: 2250, faceWidths: [120, 40, 100, 50, 80, 64] },
  ];
  for (const spec of groups) {
    for (const seed of [1, 2]) {
      const g = await groupPhoto({ ...spec, seed });
      const label = `${g.width}×${g.height}, ${g.faces.length} faces (${spec.faceWidths.join(', ')} px), seed ${seed}`;
      const started = performance.now();
      const report = await findFace(ctx, g.image, 'image');
      const ms = performance.now() - started;
      const seen = report.input.faces;
      t.equal(seen.length, g.faces.length, `${label}: ${seen.length} faces found`);
      // Results report boxes in the upload's pixels: the canvas's.
      const matched = g.faces.map((pasted, i) => {
        const f = seen[i] as SeenFace | undefined;
        return !!f && iou(f.box, pasted.box) > 0.5;
      });
      t.same(matched, g.faces.map(() => true), `${label}: face i of the list is the i-th pasted from the left (${g.faces.map((f) => f.name).join(', ')}), its box over 0.5 IoU with where it was pasted`);
      const whole = await detectFaces(detector, g.image, { maxRuns: 1 });
      t.comment(`${label}: decoded ${g.image.width}×${g.image.height}, ${detectionPlan(detector.det, g.image).runs} runs, ${Math.round(ms)} ms; the whole-photo pass alone (as before) finds ${whole.length}`);
      const warning = report.warnings.find((w) => w.code === 'LARGE_PHOTO_SMALL_FACES');
      t.ok(warning, `${label}: the small faces of a large photo are warned about`);
      t.match(warning?.message ?? '', /^image: the photo is \d+×\d+ px and \d of its \d faces ha(s|ve) eyes under 20 px apart.*faces narrower than about 4\d px are not looked for.*crop the photo closer around the people you mean/);
      if (g.width > WORKING_MAX_SIDE) t.match(warning?.message ?? '', /a crop keeps the detail that reducing the photo to 2048×1152 px drops/, 'and a crop keeps the detail the working size drops');
    }
  }
});

t.test(`the tiled passes stay within ${MAX_DETECTOR_RUNS} runs of the detector`, { skip }, async (t) => {
  const { detector } = await shipped(t);
  const g = await groupPhoto({ width: 4000, height: 2250, faceWidths: [40], seed: 1 });
  const plan = detectionPlan(detector.det, g.image);
  t.equal(plan.runs, 47, '2048×1152 decoded from a 4000-px upload: the whole photo, then 6 and 40 tiles');
  let runs = 0;
  const graph = detector.graph;
  const counting: Detector = {
    ...detector,
    graph: { path: graph.path, signature: graph.signature, cache: graph.cache, release: () => graph.release(), run: (feeds, into) => (runs++, graph.run(feeds, into)) },
  };
  await detectFaces(counting, g.image);
  t.equal(runs, plan.runs, 'as many runs as planned');
});

t.test('the real two-person photo: both faces, a close call, no small-face warning', { skip }, async (t) => {
  const { bundle } = await shipped(t);
  const report = await findFace(stageContext(bundle), await photo('fr_two_people.jpg'), 'image');
  t.equal(report.input.faces.length, 2, 'both people');
  t.same(report.warnings.map((w) => w.code), ['AMBIGUOUS_FACE']);
});

t.test('a portrait keeps the face the whole-photo pass finds: box and landmarks as before the tiled passes', { skip }, async (t) => {
  const { bundle } = await shipped(t);
  const ctx = stageContext(bundle);
  // Printed by the detection before tiling existed (the whole photo letterboxed once).
  const before: Record<string, { box: number[]; landmarks: number[][] }> = {
    'fr_obama.jpg': {
      box: [361.4, 148.41, 624.75, 411.75],
      landmarks: [[442.03, 217.93], [550.68, 216.85], [499.61, 277.96], [498.99, 333.49], [377.15, 250.44], [608.28, 247.9]],
    },
    'fr_biden.jpg': {
      box: [391.5, 247.12, 659.17, 514.78],
      landmarks: [[495.94, 300.77], [604.24, 330.37], [549.82, 371.95], [530.18, 431.37], [400.56, 318.1], [639.66, 376.99]],
    },
  };
  for (const [name, want] of Object.entries(before)) {
    const report = await findFace(ctx, await photo(name), 'image');
    t.equal(report.input.faces.length, 1, `${name}: one face`);
    const off = Math.max(...report.face.box.map((v, i) => Math.abs(v - (want.box[i] as number))), ...report.face.landmarks.flatMap((p, i) => p.map((v, k) => Math.abs(v - (want.landmarks[i]?.[k] as number)))));
    t.ok(off < 0.01, `${name}: box and six landmarks within ${off.toFixed(3)} px of before`);
    t.same(report.warnings, [], `${name}: no warning`);
  }
});
