// The geometry of the tiled face detection (vision/face-tiles.ts): where tiles lie, which passes
// a photo gets and their bound, mapping a tile's faces back to the photo, and merging passes.
import t from 'tap';
import type { DetectedFace } from '../src/vision/detect-faces.ts';
import {
  DETECTABLE_FACE as DETECTABLE,
  EDGE_MARGIN,
  MAX_DETECTOR_RUNS,
  SHARP_FACE,
  cutByTile,
  faceFromTile,
  mergePasses,
  planDetection,
  tileCanvas,
  tileOrigins,
  type TileLevel,
} from '../src/vision/face-tiles.ts';

const DETECTABLE_FACE = DETECTABLE.blazeface;

/** A deterministic pseudo-random sequence in [0, 1). */
function random(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const face = (box: DetectedFace['box'], score = 0.9): DetectedFace => ({ box, score, landmarks: [[box[0] + 1, box[1] + 1], [box[2] - 1, box[1] + 1]] });

t.test('tile origins: the fewest tiles that cover the length, evenly spread, neighbours sharing the overlap', async (t) => {
  t.same(tileOrigins(200, 256, 60), [0], 'shorter than a tile: one tile, padded');
  t.same(tileOrigins(256, 256, 60), [0]);
  t.throws(() => tileOrigins(600, 256, 256), /overlap 256 must be under the tile size 256/);
  const rnd = random(3);
  for (let i = 0; i < 500; i++) {
    const size = [128, 256, 640][i % 3] as number;
    const overlap = 1 + Math.floor(rnd() * (size / 2));
    const length = size + 1 + Math.floor(rnd() * 4000);
    const xs = tileOrigins(length, size, overlap);
    const label = `length ${length}, tile ${size}, overlap ${overlap}`;
    if (xs[0] !== 0 || xs.at(-1) !== length - size) t.fail(`${label}: covers 0 … ${length} (${xs.join(', ')})`);
    for (let k = 1; k < xs.length; k++) {
      const shared = (xs[k - 1] as number) + size - (xs[k] as number);
      if (shared < overlap) t.fail(`${label}: tiles ${k - 1} and ${k} share ${shared}`);
    }
    // One tile fewer cannot do it: n − 1 tiles cover at most size + (n − 2)(size − overlap).
    if (size + (xs.length - 2) * (size - overlap) >= length) t.fail(`${label}: ${xs.length} tiles where fewer would do`);
  }
  t.pass('500 random lengths: covered, overlapping, fewest tiles');
});

t.test('every face up to a level\'s widest lies whole, clear of inner edges, in one of its tiles', async (t) => {
  const rnd = random(7);
  const size = 256;
  let checked = 0;
  for (const [w, h, scale] of [[2048, 1152, 1], [2048, 1152, 2], [2048, 2048, 2], [910, 1137, 1], [2048, 205, 2]] as const) {
    for (const level of planDetection({ width: w, height: h }, size, { uploadScale: scale }).levels) {
      for (let i = 0; i < 400; i++) {
        const fw = 1 + rnd() * (level.maxFace - 1);
        const x = -fw / 2 + rnd() * level.width;
        const y = -fw / 2 + rnd() * level.height;
        const box: DetectedFace['box'] = [x, y, x + fw, y + fw];
        const whole = level.tiles.some((tile) => {
          const local: DetectedFace['box'] = [box[0] - tile.x, box[1] - tile.y, box[2] - tile.x, box[3] - tile.y];
          const inside = (!tile.inner.left || local[0] >= 0) && (!tile.inner.top || local[1] >= 0) && (!tile.inner.right || local[2] <= size) && (!tile.inner.bottom || local[3] <= size);
          return inside && !cutByTile({ box: local }, tile, size);
        });
        if (!whole) t.fail(`${w}×${h} level ${level.scale.toFixed(3)}: a ${fw.toFixed(1)}-px face at ${x.toFixed(0)},${y.toFixed(0)} is cut in every tile`);
        checked++;
      }
    }
  }
  t.ok(checked > 0, `${checked} random faces, each whole in some tile`);
});

t.test('the plan: no tiles when the whole photo shows the smallest face big enough, and no gap in sizes between passes', async (t) => {
  for (const [w, h] of [[640, 480], [512, 512], [300, 200], [115, 115]] as const) {
    const p = planDetection({ width: w, height: h }, 256);
    t.same([p.runs, p.levels.length], [1, 0], `${w}×${h}: one run (a 40-px face is ≥ ${DETECTABLE_FACE} px in the letterbox)`);
  }
  const cases = [
    { w: 2048, h: 1152, scale: 1, minFace: 40, runs: 13 },
    { w: 2048, h: 1152, scale: 4000 / 2048, minFace: 20.48, runs: 47 },
    { w: 2048, h: 2048, scale: 2, minFace: 20, runs: 74 },
    { w: 910, h: 1137, scale: 1, minFace: 40, runs: 5 },
  ];
  for (const c of cases) {
    const p = planDetection({ width: c.w, height: c.h }, 256, { uploadScale: c.scale });
    const label = `${c.w}×${c.h} uploaded at ${Math.round(c.w * c.scale)} px`;
    t.ok(Math.abs(p.minFace - c.minFace) < 1e-9, `${label}: faces down to ${p.minFace.toFixed(1)} px looked for`);
    t.equal(p.runs, c.runs, `${label}: ${p.runs} runs`);
    t.equal(p.runs, 1 + p.levels.reduce((s, l) => s + l.tiles.length, 0), 'runs count every tile and the whole photo');
    t.ok(Math.abs(DETECTABLE_FACE / (p.levels.at(-1) as TileLevel).scale - p.minFace) < 1e-6, 'the finest level shows the smallest face at the detectable size');
    let coarsest = p.wholePhotoMinFace;
    for (const l of p.levels) {
      t.ok(l.maxFace / l.scale >= coarsest, `level ${l.scale.toFixed(3)} finds faces up to ${(l.maxFace / l.scale).toFixed(1)} px, where the coarser pass finds from ${coarsest.toFixed(1)}`);
      t.ok(l.overlap >= l.maxFace + 2 * EDGE_MARGIN, 'its tiles overlap by more than its widest face');
      coarsest = DETECTABLE_FACE / l.scale;
    }
  }
  const capped = planDetection({ width: 2048, height: 1152 }, 256, { uploadScale: 2, maxRuns: 20 });
  t.ok(capped.runs <= 20 && capped.minFace > 20.5, `a lower bound looks for larger faces: ${capped.runs} runs, from ${capped.minFace.toFixed(1)} px`);
  const single = planDetection({ width: 2048, height: 1152 }, 256, { maxRuns: 1 });
  t.same([single.runs, single.levels.length], [1, 0], 'maxRuns 1 is the whole-photo pass alone');
});

t.test(`no photo the worker decodes (at most 2048 px, sides within 10×) needs more than ${MAX_DETECTOR_RUNS} runs`, async (t) => {
  let worst = { runs: 0, at: '' };
  for (let w = 64; w <= 2048; w += 32) {
    for (let h = Math.max(64, Math.ceil(w / 10)); h <= w; h += 32) {
      for (const scale of [1, 1.5, 2, 4]) {
        const { runs } = planDetection({ width: w, height: h }, 256, { uploadScale: scale });
        if (runs > worst.runs) worst = { runs, at: `${w}×${h} (upload ×${scale})` };
      }
    }
  }
  t.ok(worst.runs <= MAX_DETECTOR_RUNS, `the most is ${worst.runs}, at ${worst.at}`);
  t.equal(worst.runs, 74, 'the figure docs/face-models.md states');
});

t.test('a tile\'s faces map back to the photo; the tile\'s pixels are the level\'s, black beyond', async (t) => {
  const img = { width: 2048, height: 1152 };
  const level = { width: 800, height: 450 };
  const tile = { x: 544, y: 194 };
  const kx = level.width / img.width;
  const ky = level.height / img.height;
  const truth = face([1500, 700, 1560, 760]);
  const onTile: DetectedFace = {
    score: truth.score,
    box: [truth.box[0] * kx - tile.x, truth.box[1] * ky - tile.y, truth.box[2] * kx - tile.x, truth.box[3] * ky - tile.y],
    landmarks: truth.landmarks.map(([x, y]) => [x * kx - tile.x, y * ky - tile.y]),
  };
  const back = faceFromTile(onTile, tile, level, img);
  back.box.forEach((v, i) => t.ok(Math.abs(v - (truth.box[i] as number)) < 1e-9, `box[${i}] ${v}`));
  back.landmarks.forEach((p, i) => t.ok(Math.abs(p[0] - (truth.landmarks[i] as [number, number])[0]) + Math.abs(p[1] - (truth.landmarks[i] as [number, number])[1]) < 1e-9, `landmark ${i}`));

  const pixels = { width: 5, height: 3, data: Uint8Array.from({ length: 45 }, (_, i) => i + 1) };
  const c = tileCanvas(pixels, { x: 2, y: 1 }, 4);
  t.same([c.width, c.height], [4, 4]);
  t.same(Array.from(c.data.subarray(0, 12)), [22, 23, 24, 25, 26, 27, 28, 29, 30, 0, 0, 0], 'row 0: level pixels (2…4, 1), then black');
  t.same(Array.from(c.data.subarray(24, 48)), new Array(24).fill(0), 'rows past the level are black');
});

t.test('a face touching an inner side of its tile is cut; at the photo\'s border it is not', async (t) => {
  const inner = { left: true, top: true, right: true, bottom: true };
  const border = { left: false, top: false, right: false, bottom: false };
  t.notOk(cutByTile({ box: [EDGE_MARGIN, EDGE_MARGIN, 256 - EDGE_MARGIN, 256 - EDGE_MARGIN] }, { inner }, 256), 'just clear of every side');
  t.ok(cutByTile({ box: [EDGE_MARGIN - 1, 50, 60, 100] }, { inner }, 256), 'left');
  t.ok(cutByTile({ box: [200, 50, 270, 100] }, { inner }, 256), 'past the right side');
  t.ok(cutByTile({ box: [50, 230, 100, 256 - EDGE_MARGIN + 1] }, { inner }, 256), 'bottom');
  t.notOk(cutByTile({ box: [-10, -10, 270, 270] }, { inner: border }, 256), "the photo's own borders cut nothing more");
});

t.test('merging passes: the coarse pass keeps its faces, duplicates and parts are dropped, faces it saw small come from the finer pass', async (t) => {
  const big = face([100, 100, 400, 400], 0.8);
  const smallCoarse = face([1000, 100, 1128, 228], 0.8); // 16 input px at scale 0.125
  const coarse = { faces: [big, smallCoarse], scale: 0.125 };
  const fine = {
    faces: [
      face([102, 98, 398, 404], 0.99), // the big face again
      face([150, 150, 200, 200], 0.95), // a part of it taken for a face
      face([1004, 102, 1126, 230], 0.9), // the small face, seen at 49 input px
      face([1600, 600, 1640, 640], 0.85), // a face only this pass sees
    ],
    scale: 0.4,
  };
  const merged = mergePasses([coarse, fine], 0.3);
  t.equal(merged.length, 3);
  t.equal(merged[0], big, 'the whole-photo face keeps its box and landmarks');
  t.equal(merged[1], fine.faces[2], `the face the coarse pass saw under ${SHARP_FACE} px comes from the finer pass`);
  t.equal(merged[2], fine.faces[3], 'a new face is added');
  t.same(mergePasses([coarse, fine], 0.3, 0).slice(0, 2), [big, smallCoarse], 'with no sharp width the coarse pass wins every time');
  const part = { faces: [face([1010, 110, 1040, 140], 0.99)], scale: 0.8 };
  t.same(mergePasses([coarse, part], 0.3), [big, smallCoarse], 'a part of a face the coarse pass saw small does not take its place');
  const overlapping = { faces: [face([0, 0, 100, 100]), face([50, 0, 150, 100])], scale: 1 };
  t.equal(mergePasses([overlapping], 0.3).length, 2, 'within a pass nothing is merged (its own NMS has run)');
});
