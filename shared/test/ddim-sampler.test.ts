import t from 'tap';
import { SD15_SCHEDULER, classifierFreeGuidance, ddimSampler, ddimSamplerPool, ddimStep, gaussianNoise, makeSchedule, samplingStepAlphas } from '../src/index.ts';

const bytes = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

// 4096 fills whole SIMD groups; 7 and 13 leave a remainder that the kernel's scalar loop takes.
for (const prediction of ['epsilon', 'v_prediction'] as const) {
  for (const latentSize of [4096, 7, 13]) {
    t.test(`guided, ${prediction}, ${latentSize} values: classifierFreeGuidance then ddimStep, byte for byte`, async (t) => {
      const images = 3;
      const n = images * latentSize;
      const s = ddimSampler({ images, latentSize, contextSize: 5, guidanceScale: 7.5, prediction });
      t.equal(s.rows, 6, 'two rows per image');
      t.equal(s.sample.length, 6 * latentSize);
      const z = gaussianNoise(1, n);
      const u = gaussianNoise(2, n);
      const c = gaussianNoise(3, n);
      s.latents.set(z);
      s.modelOutput.set(u, 0);
      s.modelOutput.set(c, n);
      s.step(0.3, 0.55);
      const want = ddimStep(z, classifierFreeGuidance(u, c, 7.5), 0.3, 0.55, prediction);
      t.same(bytes(s.latents), bytes(want), 'z updated in place');
      t.same(bytes(s.sample.subarray(n)), bytes(want), 'the guidance half of the sample batch repeats z');
      t.same(bytes(s.modelOutput.subarray(0, n)), bytes(u), 'the model output is only read');
      t.equal(s.context.length, 6 * 5, 'a conditioning row per U-Net row');
      t.equal(s.context.buffer, s.sample.buffer, 'in the same memory');
    });
  }
  t.test(`unguided, ${prediction}: ddimStep, byte for byte, one row per image`, async (t) => {
    const s = ddimSampler({ images: 2, latentSize: 1001, contextSize: 3, guidanceScale: 1, prediction });
    t.equal(s.rows, 2);
    const z = gaussianNoise(4, 2002);
    const eps = gaussianNoise(5, 2002);
    s.latents.set(z);
    s.modelOutput.set(eps);
    s.step(0.2, 0.9);
    t.same(bytes(s.latents), bytes(ddimStep(z, eps, 0.2, 0.9, prediction)));
  });
}

t.test('stepAt takes the levels of sampling timestep t as samplingStepAlphas gives them', async (t) => {
  const schedule = makeSchedule(SD15_SCHEDULER);
  const a = ddimSampler({ images: 1, latentSize: 64, contextSize: 8, guidanceScale: 5, prediction: 'epsilon' });
  const b = ddimSampler({ images: 1, latentSize: 64, contextSize: 8, guidanceScale: 5, prediction: 'epsilon' });
  for (const s of [a, b]) {
    s.latents.set(gaussianNoise(6, 64));
    s.modelOutput.set(gaussianNoise(7, 128));
  }
  a.stepAt(schedule, 30, 961);
  const { alphaBarT, alphaBarPrev } = samplingStepAlphas(schedule, 30, 961);
  b.step(alphaBarT, alphaBarPrev);
  t.same(bytes(a.latents), bytes(b.latents));
  t.not(bytes(a.latents).equals(bytes(gaussianNoise(6, 64))), true, 'the latents moved');
});

t.test('options it does not support are refused', async (t) => {
  const ok = { images: 1, latentSize: 4, contextSize: 2, guidanceScale: 5, prediction: 'epsilon' } as const;
  t.throws(() => ddimSampler({ ...ok, prediction: 'sample' as never }), /prediction type "sample" is not supported/);
  t.throws(() => ddimSampler({ ...ok, images: 0 }), /images must be a positive integer/);
  t.throws(() => ddimSampler({ ...ok, latentSize: 2.5 }), /latentSize must be a positive integer/);
  t.throws(() => ddimSampler({ ...ok, contextSize: 0 }), /contextSize must be a positive integer/);
  t.throws(() => ddimSampler({ ...ok, guidanceScale: Number.NaN }), /guidance scale must be finite/);
  t.throws(() => ddimSampler({ ...ok, images: 100_000, latentSize: 16_384 }), /over WebAssembly's/);
  const s = ddimSampler(ok);
  t.throws(() => s.step(0, 0.5), /alphaBarT must be in \(0, 1\]/);
  t.throws(() => s.step(0.5, 1.5), /alphaBarPrev must be in \(0, 1\]/);
});

t.test('a pool lends memory back out for the same shape, rebinding the guidance scale', async (t) => {
  const pool = ddimSamplerPool(2);
  const shape = { images: 2, latentSize: 32, contextSize: 4, prediction: 'epsilon' } as const;
  const a = pool.take({ ...shape, guidanceScale: 5 });
  t.not(pool.take({ ...shape, guidanceScale: 5 }).sample.buffer, a.sample.buffer, 'two at once have two memories');
  pool.give(a);
  t.equal(pool.idle, 1);
  const b = pool.take({ ...shape, guidanceScale: 3 });
  t.equal(b.sample.buffer, a.sample.buffer, 'the idle memory is reused');
  t.equal(pool.idle, 0);
  // The reused memory steps with the new scale: the same bytes as a fresh sampler at g = 3.
  const fresh = ddimSampler({ ...shape, guidanceScale: 3 });
  for (const s of [b, fresh]) {
    s.sample.set(gaussianNoise(8, 64));
    s.modelOutput.set(gaussianNoise(9, 128));
    s.step(0.4, 0.6);
  }
  t.same(bytes(b.latents), bytes(fresh.latents));
  t.not(pool.take({ ...shape, guidanceScale: 1 }).rows, b.rows, 'unguided is another layout');
  pool.give(b);
  t.throws(() => pool.give(b), /did not lend, or twice/);
  t.throws(() => pool.give(fresh), /did not lend/);
  for (let i = 0; i < 4; i++) pool.give(pool.take({ ...shape, images: 3 + i, guidanceScale: 5 }));
  t.equal(pool.idle, 2, 'no more idle memories than the limit');
});
