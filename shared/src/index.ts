export * from './schedule.ts';
export * from './ddim.ts';
export * from './interpolate.ts';
export * from './noise.ts';
export * from './errors.ts';
export * from './bundle/manifest.ts';
export * from './jobs.ts';
export * from './settings.ts';
