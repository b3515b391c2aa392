// @diffid/shared/diffusion: the diffusion math as pure functions over Float32Array — the noise
// schedule and DDIM (sampling and inversion), classifier-free guidance, the batched DDIM arena,
// SLERP/LERP interpolation, seeded Gaussian noise and morph pacing.
export * from './schedule.ts';
export * from './ddim.ts';
export * from './ddim-arena.ts';
export * from './interpolate.ts';
export * from './noise.ts';
export * from './pacing.ts';
