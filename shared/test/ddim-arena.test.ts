import t from 'tap';
import { classifierFreeGuidance, ddimArena, ddimStep, gaussianNoise, groupRows } from '@diffid/shared/diffusion';

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

// 4096 fills whole SIMD groups; 7 and 13 leave a remainder that the kernel's scalar loop takes.
for (const prediction of ['epsilon', 'v_prediction'] as const) {
  for (const latentSize of [4096, 7, 13]) {
    t.test(`guided, ${prediction}, ${latentSize} values: classifierFreeGuidance then ddimStep, byte for byte`, async (t) => {
      const images = 3;
      const n = images * latentSize;
      // The group sits after two rows of another job, which the step must leave alone.
      const arena = ddimArena(2 + 6, latentSize, 5);
      const first = 2;
      const z = gaussianNoise(1, n);
      const u = gaussianNoise(2, n);
      const c = gaussianNoise(3, n);
      const neighbour = gaussianNoise(4, 2 * latentSize);
      arena.sample.set(neighbour);
      arena.sample.set(z, first * latentSize);
      arena.modelOutput.set(u, first * latentSize);
      arena.modelOutput.set(c, first * latentSize + n);
      arena.step({ first, images, guidanceScale: 7.5, prediction }, 0.3, 0.55);
      const want = ddimStep(z, classifierFreeGuidance(u, c, 7.5), 0.3, 0.55, prediction);
      t.same(bytes(arena.sample.subarray(first * latentSize, first * latentSize + n)), bytes(want), 'z updated in place');
      t.same(bytes(arena.sample.subarray(first * latentSize + n, first * latentSize + 2 * n)), bytes(want), 'the conditional half of the group repeats z');
      t.same(bytes(arena.sample.subarray(0, 2 * latentSize)), bytes(neighbour), "the other job's rows are untouched");
      t.same(bytes(arena.modelOutput.subarray(first * latentSize, first * latentSize + n)), bytes(u), 'the model output is only read');
      t.equal(arena.context.length, 8 * 5, 'a conditioning row per U-Net row');
      t.equal(arena.context.buffer, arena.sample.buffer, 'in the same memory');
    });
  }
  t.test(`unguided, ${prediction}: ddimStep, byte for byte, one row per image`, async (t) => {
    t.equal(groupRows(2, 1), 2);
    t.equal(groupRows(2, 1.5), 4);
    const arena = ddimArena(3, 1001, 3);
    const z = gaussianNoise(4, 2002);
    const eps = gaussianNoise(5, 2002);
    arena.sample.set(z, 1001);
    arena.modelOutput.set(eps, 1001);
    arena.step({ first: 1, images: 2, guidanceScale: 1, prediction }, 0.2, 0.9);
    t.same(bytes(arena.sample.subarray(1001)), bytes(ddimStep(z, eps, 0.2, 0.9, prediction)));
  });
}

t.test('moveRows shifts sample and conditioning rows down, overlapping ranges included', async (t) => {
  const arena = ddimArena(4, 3, 2);
  arena.sample.set(Float32Array.from({ length: 12 }, (_, i) => i));
  arena.context.set(Float32Array.from({ length: 8 }, (_, i) => 100 + i));
  arena.moveRows(1, 0, 3);
  t.same([...arena.sample.subarray(0, 9)], [3, 4, 5, 6, 7, 8, 9, 10, 11]);
  t.same([...arena.context.subarray(0, 6)], [102, 103, 104, 105, 106, 107]);
});

t.test('options it does not support are refused', async (t) => {
  t.throws(() => ddimArena(0, 4, 2), /capacity must be a positive integer/);
  t.throws(() => ddimArena(1, 2.5, 2), /latentSize must be a positive integer/);
  t.throws(() => ddimArena(1, 4, 0), /contextSize must be a positive integer/);
  t.throws(() => ddimArena(200_000, 16_384, 62_208), /over WebAssembly's/);
  const arena = ddimArena(2, 4, 2);
  const ok = { first: 0, images: 1, guidanceScale: 5, prediction: 'epsilon' } as const;
  t.throws(() => arena.step({ ...ok, prediction: 'sample' as never }, 0.5, 0.6), /prediction type "sample" is not supported/);
  t.throws(() => arena.step({ ...ok, guidanceScale: Number.NaN }, 0.5, 0.6), /guidance scale must be finite/);
  t.throws(() => arena.step({ ...ok, first: 1 }, 0.5, 0.6), /rows \[1, 3\) are not in the arena's 2/);
  t.throws(() => arena.step(ok, 0, 0.5), /alphaBarT must be in \(0, 1\]/);
  t.throws(() => arena.step(ok, 0.5, 1.5), /alphaBarPrev must be in \(0, 1\]/);
});
