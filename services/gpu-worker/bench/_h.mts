import { measureHostStep } from './host-step.ts';
for (let i = 0; i < 3; i++) { (globalThis as any).JOIN = 0; const r = await measureHostStep(0); console.log(JSON.stringify(Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.host_ms_per_step.toFixed(3)]))), 'setup per step over all', ((globalThis as any).JOIN / (3 * 10 * 20)).toFixed(4)); }
