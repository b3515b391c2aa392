import t from 'tap';
import { SD15_SCHEDULER, schedulerFromDiffusers, alphasCumprod, betasScaledLinear, inversionStepAlphas, inversionTimesteps, makeSchedule, samplingStepAlphas, samplingTimesteps, type SchedulerConfig } from '@diffid/shared/diffusion';

// Reference values: torch 1.13 float32, linspace(√β_start, √β_end, 1000)² then cumprod, which is
// what diffusers' scaled_linear does; docs/reference-values.md has the script.
const TORCH_ACP: Array<[number, number]> = [
  [0, 0.9991499781608582],
  [1, 0.9982960224151611],
  [2, 0.9974380731582642],
  [10, 0.9904313087463379],
  [100, 0.894223153591156],
  [250, 0.67379230260849],
  [500, 0.2763324975967407],
  [501, 0.27499887347221375],
  [750, 0.05616981163620949],
  [961, 0.007281722966581583],
  [981, 0.005775496829301119],
  [999, 0.0046600960195064545],
];

t.test('alphas_cumprod matches the float32 reference at spot values', async (t) => {
  const s = makeSchedule(SD15_SCHEDULER);
  t.equal(s.alphasCumprod.length, 1000);
  for (const [i, want] of TORCH_ACP) {
    const got = s.alphasCumprod[i] as number;
    t.ok(Math.abs(got - want) <= 2e-7 * want, `acp[${i}] = ${got}, reference ${want}`);
  }
  t.equal(Math.round((s.alphasCumprod[0] as number) * 1e5) / 1e5, 0.99915, 'acp[0] = 0.99915 (docs/reference-values.md)');
  t.equal(Math.round((s.alphasCumprod[999] as number) * 1e7) / 1e7, 0.0046601, 'acp[999] ≈ 0.0046601 (docs/reference-values.md)');
  t.equal(s.finalAlphaCumprod, s.alphasCumprod[0], 'set_alpha_to_one = false: final ᾱ is ᾱ_0');
});

t.test('betas are the squared float32 linspace with exact end points', async (t) => {
  const b = betasScaledLinear(0.00085, 0.012, 1000);
  t.equal(b[0], Math.fround(Math.fround(Math.sqrt(0.00085)) ** 2));
  t.equal(b[999], Math.fround(Math.fround(Math.sqrt(0.012)) ** 2));
  t.ok(Math.abs((b[500] as number) - 0.004814954474568367) <= 1e-9, `β_500 = ${b[500]}`);
  const acp = alphasCumprod(new Float32Array([0.5, 0.5, 0.5]));
  t.same(Array.from(acp), [0.5, 0.25, 0.125]);
});

t.test('leading spacing with steps_offset gives SD1.5 timesteps', async (t) => {
  const ts = (n: number) => Array.from(samplingTimesteps(SD15_SCHEDULER, n));
  const t50 = ts(50);
  t.equal(t50.length, 50);
  t.same(t50.slice(0, 3), [981, 961, 941]);
  t.same(t50.slice(-2), [21, 1]);
  t.same(ts(4), [751, 501, 251, 1]);
  t.same(ts(5), [801, 601, 401, 201, 1]);
  const t30 = ts(30);
  t.equal(t30.length, 30);
  t.same(t30.slice(0, 3), [958, 925, 892], 'N=30: stride 1000//30 = 33');
  t.equal(t30[29], 1);
  t.same(Array.from(inversionTimesteps(SD15_SCHEDULER, 50)).slice(0, 3), [1, 21, 41]);
  t.equal(inversionTimesteps(SD15_SCHEDULER, 50)[49], 981);
});

t.test('trailing spacing rounds half to even like numpy', async (t) => {
  const trailing: SchedulerConfig = { ...SD15_SCHEDULER, timestep_spacing: 'trailing' };
  t.same(Array.from(samplingTimesteps(trailing, 4)), [999, 749, 499, 249]);
  const t50 = Array.from(samplingTimesteps(trailing, 50));
  t.same(t50.slice(0, 2), [999, 979]);
  t.equal(t50[49], 19);
  // 1000 − 62.5·k: 937.5 → 938 and 812.5 → 812 under round-half-even.
  t.same(Array.from(samplingTimesteps(trailing, 16)).slice(0, 4), [999, 937, 874, 811]);
  t.same(Array.from(samplingTimesteps(trailing, 30)).slice(0, 3), [999, 966, 932]);
});

t.test('step alphas use the boundary value past either end', async (t) => {
  const s = makeSchedule(SD15_SCHEDULER);
  const last = samplingStepAlphas(s, 50, 1);
  t.equal(last.alphaBarT, s.alphasCumprod[1]);
  t.equal(last.alphaBarPrev, s.alphasCumprod[0], 'prev = −19 → final ᾱ = ᾱ_0');
  const first = inversionStepAlphas(s, 50, 1);
  t.equal(first.alphaBarS, s.alphasCumprod[0], 'source −19 → initial ᾱ = ᾱ_0');
  t.equal(first.alphaBarT, s.alphasCumprod[1]);
  const one = makeSchedule({ ...SD15_SCHEDULER, set_alpha_to_one: true });
  t.equal(samplingStepAlphas(one, 50, 1).alphaBarPrev, 1);
});

t.test('unsupported scheduler options throw and name the option', async (t) => {
  const bad = (patch: Record<string, unknown>) => () => makeSchedule({ ...SD15_SCHEDULER, ...patch } as SchedulerConfig);
  t.throws(bad({ timestep_spacing: 'linspace' }), /timestep_spacing "linspace"/);
  t.throws(bad({ beta_schedule: 'linear' }), /beta_schedule "linear"/);
  t.throws(bad({ prediction_type: 'sample' }), /prediction_type "sample"/);
  t.throws(bad({ clip_sample: true }), /clip_sample/);
  t.throws(bad({ kind: 'pndm' }), /kind "pndm"/);
  t.throws(() => samplingTimesteps(SD15_SCHEDULER, 0), /1…1000/);
  t.throws(() => samplingTimesteps(SD15_SCHEDULER, 2.5), /1…1000/);
});

t.test("diffusers' scheduler_config.json: SD 1.5's gives the SD 1.5 schedule; unsupported options are refused by name", async (t) => {
  const sd15 = { _class_name: 'PNDMScheduler', _diffusers_version: '0.6.0', beta_end: 0.012, beta_schedule: 'scaled_linear', beta_start: 0.00085, num_train_timesteps: 1000, set_alpha_to_one: false, skip_prk_steps: true, steps_offset: 1, trained_betas: null, clip_sample: false };
  t.same(schedulerFromDiffusers(sd15), SD15_SCHEDULER);
  t.throws(() => schedulerFromDiffusers({ ...sd15, clip_sample: undefined }), /clip_sample must be false/, "DDIM's default clip_sample is true: refused");
  t.throws(() => schedulerFromDiffusers({ ...sd15, rescale_betas_zero_snr: true }), /rescale_betas_zero_snr is true; the DDIM core does not implement it/);
  t.throws(() => schedulerFromDiffusers({ ...sd15, beta_schedule: 'squaredcos_cap_v2' }), /beta_schedule "squaredcos_cap_v2" is not supported/);
  t.throws(() => schedulerFromDiffusers({ ...sd15, karras_sigmas: true }), /karras_sigmas is an unknown option/);
  t.equal(schedulerFromDiffusers({ ...sd15, prediction_type: 'v_prediction', timestep_spacing: 'trailing' }).prediction_type, 'v_prediction');
});
