export * from './schedule.ts';
export * from './ddim.ts';
export * from './interpolate.ts';
export * from './noise.ts';
