// The discrete noise schedule of Stable Diffusion 1.5 and the DDIM timestep grids, with diffusers'
// semantics (DDIMScheduler / DDIMInverseScheduler). Paper symbol: ᾱ_t, written α_t in eq. 17.

/** Scheduler settings a bundle's manifest carries; only what we implement is accepted. */
export interface SchedulerConfig {
  kind: 'ddim';
  num_train_timesteps: number;
  beta_schedule: 'scaled_linear';
  beta_start: number;
  beta_end: number;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  set_alpha_to_one: boolean;
  prediction_type: PredictionType;
  clip_sample: false;
}

export type TimestepSpacing = 'leading' | 'trailing';
export type PredictionType = 'epsilon' | 'v_prediction';

/** Stable Diffusion 1.5's scheduler config (diffusers' `scheduler_config.json` for DDIM). */
export const SD15_SCHEDULER: Readonly<SchedulerConfig> = Object.freeze({
  kind: 'ddim',
  num_train_timesteps: 1000,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  beta_end: 0.012,
  timestep_spacing: 'leading',
  steps_offset: 1,
  set_alpha_to_one: false,
  prediction_type: 'epsilon',
  clip_sample: false,
});

/** The precomputed schedule: ᾱ for every training step and the boundary values. */
export interface NoiseSchedule {
  readonly config: Readonly<SchedulerConfig>;
  /** ᾱ_t = ∏_{s≤t} (1 − β_s), t = 0 … T−1, in float32 like the reference. */
  readonly alphasCumprod: Float32Array;
  /** ᾱ used past the last sampling step (t < 0): 1 with set_alpha_to_one, else ᾱ_0. */
  readonly finalAlphaCumprod: number;
  /** ᾱ used before the first inversion step (source t < 0): same rule as above. */
  readonly initialAlphaCumprod: number;
}

/** Throws on any setting we do not implement, naming it, instead of silently sampling wrong. */
export function assertSupportedScheduler(config: SchedulerConfig): void {
  const c = config as unknown as Record<string, unknown>;
  if (c.kind !== 'ddim') throw new RangeError(`scheduler.kind "${String(c.kind)}" is not supported; only "ddim"`);
  if (c.beta_schedule !== 'scaled_linear') {
    throw new RangeError(`scheduler.beta_schedule "${String(c.beta_schedule)}" is not supported; only "scaled_linear"`);
  }
  if (c.timestep_spacing !== 'leading' && c.timestep_spacing !== 'trailing') {
    throw new RangeError(`scheduler.timestep_spacing "${String(c.timestep_spacing)}" is not supported; use "leading" or "trailing"`);
  }
  if (c.prediction_type !== 'epsilon' && c.prediction_type !== 'v_prediction') {
    throw new RangeError(`scheduler.prediction_type "${String(c.prediction_type)}" is not supported; use "epsilon" or "v_prediction"`);
  }
  if (c.clip_sample !== false) throw new RangeError('scheduler.clip_sample must be false (sample clipping is not implemented)');
  if (!Number.isInteger(config.num_train_timesteps) || config.num_train_timesteps < 2) {
    throw new RangeError('scheduler.num_train_timesteps must be an integer ≥ 2');
  }
  if (!Number.isInteger(config.steps_offset) || config.steps_offset < 0) {
    throw new RangeError('scheduler.steps_offset must be a non-negative integer');
  }
  if (!(config.beta_start > 0 && config.beta_end > config.beta_start && config.beta_end < 1)) {
    throw new RangeError('scheduler needs 0 < beta_start < beta_end < 1');
  }
}

/**
 * β_t for the "scaled_linear" schedule: linspace(√β_start, √β_end, T)², with the end points
 * rounded to float32 as torch does. The linspace itself runs in float64: torch's float32 kernel
 * depends on the CPU's vector width, and float64 lands closest to it on average (ᾱ within
 * 1.2e-7 relative of torch's at every t, measured against torch 1.13).
 */
export function betasScaledLinear(betaStart: number, betaEnd: number, T: number): Float32Array {
  const a = Math.fround(Math.sqrt(betaStart));
  const b = Math.fround(Math.sqrt(betaEnd));
  const step = (b - a) / (T - 1);
  const halfway = Math.floor(T / 2);
  const betas = new Float32Array(T);
  for (let i = 0; i < T; i++) {
    // Like torch: the first half counts up from the start, the second down from the end, so both
    // end points are exact.
    const root = Math.fround(i < halfway ? a + step * i : b - step * (T - 1 - i));
    betas[i] = Math.fround(root * root);
  }
  return betas;
}

/** ᾱ_t = cumprod(1 − β_t) (eq. 17's α_t); torch accumulates a float32 cumprod in float64. */
export function alphasCumprod(betas: Float32Array): Float32Array {
  const out = new Float32Array(betas.length);
  let acc = 1;
  for (let i = 0; i < betas.length; i++) {
    acc *= Math.fround(1 - (betas[i] as number));
    out[i] = acc;
  }
  return out;
}

/** Builds the schedule for a (validated) config. */
export function makeSchedule(config: SchedulerConfig): NoiseSchedule {
  assertSupportedScheduler(config);
  const alphas = alphasCumprod(betasScaledLinear(config.beta_start, config.beta_end, config.num_train_timesteps));
  const boundary = config.set_alpha_to_one ? 1 : (alphas[0] as number);
  return Object.freeze({
    config: Object.freeze({ ...config }),
    alphasCumprod: alphas,
    finalAlphaCumprod: boundary,
    initialAlphaCumprod: boundary,
  });
}

function assertSteps(config: SchedulerConfig, N: number): void {
  if (!Number.isInteger(N) || N < 1 || N > config.num_train_timesteps) {
    throw new RangeError(`number of inference steps must be an integer in 1…${config.num_train_timesteps}, got ${N}`);
  }
}

/** numpy's np.round: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * The T // N stride between consecutive DDIM timesteps. diffusers uses it for the previous
 * timestep of every spacing, trailing included.
 */
export function stepRatio(config: SchedulerConfig, N: number): number {
  assertSteps(config, N);
  return Math.floor(config.num_train_timesteps / N);
}

/**
 * Sampling timesteps, descending (DDIMScheduler.set_timesteps).
 * leading: t_i = i·(T // N) + steps_offset; trailing: round(arange(T, 0, −T/N)) − 1.
 */
export function samplingTimesteps(config: SchedulerConfig, N: number): Int32Array {
  assertSteps(config, N);
  const T = config.num_train_timesteps;
  if (config.timestep_spacing === 'leading') {
    const r = Math.floor(T / N);
    const out = new Int32Array(N);
    for (let i = 0; i < N; i++) out[i] = (N - 1 - i) * r + config.steps_offset;
    return out;
  }
  if (config.timestep_spacing === 'trailing') {
    const ratio = T / N;
    // np.arange's length is ceil((stop − start) / step); it can exceed N by float rounding.
    const count = Math.ceil(-T / -ratio);
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = roundHalfEven(T - i * ratio) - 1;
    return out;
  }
  throw new RangeError(`timestep_spacing "${String(config.timestep_spacing)}" is not supported`);
}

/**
 * Inversion timesteps, ascending (DDIMInverseScheduler.set_timesteps): the sampling grid reversed.
 * For SD1.5 and N = 50: 1, 21, …, 981.
 */
export function inversionTimesteps(config: SchedulerConfig, N: number): Int32Array {
  return samplingTimesteps(config, N).reverse();
}

/** ᾱ at a timestep, with the boundary value for t < 0. */
export function alphaBarAt(schedule: NoiseSchedule, t: number, boundary: number): number {
  if (t < 0) return boundary;
  const T = schedule.alphasCumprod.length;
  if (!Number.isInteger(t) || t >= T) throw new RangeError(`timestep ${t} is outside 0…${T - 1}`);
  return schedule.alphasCumprod[t] as number;
}

/** (ᾱ_t, ᾱ_prev) for the sampling step that leaves timestep t, prev = t − T // N. */
export function samplingStepAlphas(schedule: NoiseSchedule, N: number, t: number): { alphaBarT: number; alphaBarPrev: number } {
  const prev = t - stepRatio(schedule.config, N);
  return {
    alphaBarT: alphaBarAt(schedule, t, schedule.finalAlphaCumprod),
    alphaBarPrev: alphaBarAt(schedule, prev, schedule.finalAlphaCumprod),
  };
}

/**
 * (ᾱ_s, ᾱ_t) for the inversion step that arrives at timestep t from s = min(t − T // N, T − 1).
 * The noise model is evaluated at the target t on the latent at level s.
 */
export function inversionStepAlphas(schedule: NoiseSchedule, N: number, t: number): { alphaBarS: number; alphaBarT: number } {
  const T = schedule.config.num_train_timesteps;
  const s = Math.min(t - stepRatio(schedule.config, N), T - 1);
  return {
    alphaBarS: alphaBarAt(schedule, s, schedule.initialAlphaCumprod),
    alphaBarT: alphaBarAt(schedule, Math.min(t, T - 1), schedule.initialAlphaCumprod),
  };
}

/** diffusers' scheduler_config.json keys that change nothing the DDIM core computes. */
const IGNORED_DIFFUSERS_KEYS = new Set(['_class_name', '_diffusers_version', 'skip_prk_steps', 'trained_betas', 'variance_type', 'sample_max_value', 'dynamic_thresholding_ratio', 'timestep_type']);

/**
 * A diffusers scheduler_config.json (SD 1.5 ships a PNDM one; DDIM's is the same schedule) as the
 * DDIM core's configuration. Missing keys take DDIMScheduler's defaults; an option the core does
 * not implement is refused by name.
 */
export function schedulerFromDiffusers(json: Record<string, unknown>): SchedulerConfig {
  const refuse = (key: string, why: string) => {
    throw new RangeError(`scheduler_config.json: ${key} ${why}; the DDIM core does not implement it`);
  };
  if (json.trained_betas !== undefined && json.trained_betas !== null) refuse('trained_betas', 'is set');
  if (json.thresholding === true) refuse('thresholding', 'is true');
  if (json.rescale_betas_zero_snr === true) refuse('rescale_betas_zero_snr', 'is true');
  const known = new Set(['num_train_timesteps', 'beta_schedule', 'beta_start', 'beta_end', 'timestep_spacing', 'steps_offset', 'set_alpha_to_one', 'prediction_type', 'clip_sample', 'thresholding', 'rescale_betas_zero_snr', 'clip_sample_range']);
  for (const key of Object.keys(json)) if (!known.has(key) && !IGNORED_DIFFUSERS_KEYS.has(key)) refuse(key, 'is an unknown option');
  const config = {
    kind: 'ddim',
    num_train_timesteps: json.num_train_timesteps ?? 1000,
    beta_schedule: json.beta_schedule ?? 'linear',
    beta_start: json.beta_start ?? 0.0001,
    beta_end: json.beta_end ?? 0.02,
    timestep_spacing: json.timestep_spacing ?? 'leading',
    steps_offset: json.steps_offset ?? 0,
    set_alpha_to_one: json.set_alpha_to_one ?? true,
    prediction_type: json.prediction_type ?? 'epsilon',
    clip_sample: json.clip_sample ?? true,
  } as unknown as SchedulerConfig;
  assertSupportedScheduler(config);
  return config;
}
