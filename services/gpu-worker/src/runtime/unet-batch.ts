// Step-level (continuous) batching: every job denoising on this thread owns rows of one arena
// (shared/ddim-arena.ts), and each step runs one U-Net call over all of them. A job joins at any
// step boundary and leaves when it finishes, without waiting for a batch to fill: the call runs as
// soon as every job in the batch has asked for its next step. With one job at a time (batching
// off) this is that job's own sampling loop, with memory reused from job to job.
//
// The U-Net is fed as its graph declares it: a per-row timestep ([B], float32 or int64) lets jobs
// at different steps share a call; a scalar timestep shares a call only among neighbouring jobs at
// the same step; a graph that fixes its batch at 1 runs row by row.
import { ddimArena, groupRows, type DdimArena, type PredictionType } from '@diffid/shared/diffusion';
import type { LoadedBundle } from './bundle-loader.ts';
import { latentValueCount } from './bundle-signature.ts';
import { dynamicBatch, scalarTimestep } from './graph-io.ts';
import type { Tensor } from './onnx.ts';

export interface BatchJoin {
  /** z_T per image (copied in). */
  latents: Float32Array[];
  /** Conditioning per U-Net row of the job: with guidance [unconditional × n, conditional × n]. */
  contexts: Float32Array[];
  guidanceScale: number;
  prediction: PredictionType;
}

/** One job in the batch. */
export interface BatchMember {
  /**
   * Runs the U-Net on this job's rows at timestep t (in one call with whichever jobs are waiting
   * too), then guidance and the DDIM step from ᾱ_t to ᾱ_prev on them.
   */
  step(t: number, alphaBarT: number, alphaBarPrev: number): Promise<void>;
  /** The job's latents now, copied out. */
  latents(): Float32Array[];
  /**
   * Replaces the job's conditioning rows (as many as it joined with) for its next steps: an
   * identity that acts only in a window of the steps. Between its steps no call is reading them.
   */
  recondition(contexts: Float32Array[]): void;
  /** Gives the job's rows back; pending steps of other jobs may then run. Idempotent. */
  leave(): void;
}

export interface UnetBatch {
  /** Takes rows for a job; waits while the batch is running a step or has no room for it. */
  join(job: BatchJoin): Promise<BatchMember>;
  /** Jobs in the batch now. */
  readonly members: number;
  /** U-Net calls made so far, and rows evaluated in them (rows ÷ calls is the mean batch). */
  readonly calls: number;
  readonly rowsRun: number;
}

/** A member's request for its next step. */
interface Step {
  t: number;
  alphaBarT: number;
  alphaBarPrev: number;
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Member {
  first: number;
  rows: number;
  images: number;
  guidanceScale: number;
  prediction: PredictionType;
  /** Set while the member waits for a step. */
  pending: Step | null;
  gone: boolean;
}

/**
 * The batch of one loaded bundle. `maxRows` bounds the rows of one U-Net call (memory, on the
 * device as much as here); a job larger than that still runs, alone. `onCall` hears of every call.
 */
export function unetBatch(bundle: LoadedBundle, maxRows: number, onCall: (rows: number) => void = () => {}): UnetBatch {
  const d = bundle.dims;
  const ports = bundle.ports.unet;
  const graph = bundle.graphs.unet;
  const latentSize = latentValueCount(d);
  const contextSize = d.conditioningTokens * d.conditioningWidth;
  const sampleDims = [d.latentChannels, d.latentHeight, d.latentWidth];
  const contextDims = [d.conditioningTokens, d.conditioningWidth];
  const tPort = ports.inputs.timestep;
  const scalarT = tPort.shape.length === 0;
  const rowByRow = [ports.inputs.sample, ports.inputs.encoder_hidden_states, tPort].some((p) => !dynamicBatch(p));

  let arena: DdimArena | null = null;
  let tFloat = new Float32Array(0);
  let tInt = new BigInt64Array(0);
  const members: Member[] = [];
  let used = 0;
  let running = false;
  const admissions: Array<() => void> = [];
  let calls = 0;
  let rowsRun = 0;

  /** An arena with room for `rows`, its used rows carried over when it grows. */
  function room(rows: number): DdimArena {
    if (arena && arena.capacity >= rows) return arena;
    const next = ddimArena(Math.max(rows, 2 * (arena?.capacity ?? 0)), latentSize, contextSize);
    if (arena) {
      next.sample.set(arena.sample.subarray(0, used * latentSize));
      next.context.set(arena.context.subarray(0, used * contextSize));
    }
    arena = next;
    tFloat = new Float32Array(next.capacity);
    tInt = new BigInt64Array(next.capacity);
    return next;
  }

  const fits = (rows: number) => !running && (used === 0 || used + rows <= maxRows);

  function admitWaiting(): void {
    while (admissions.length > 0 && !running) {
      const before = admissions.length;
      (admissions[0] as () => void)();
      if (admissions.length === before) return; // the first in line does not fit yet
    }
  }

  /** The timestep feed of rows [first, first+count): their own values, or `t` for a scalar port. */
  function timestep(first: number, count: number, t: number): Tensor {
    if (scalarT) return scalarTimestep(tPort, t);
    if (tPort.dtype === 'int64') return { dtype: 'int64', data: tInt.subarray(first, first + count), dims: [count] };
    return { dtype: 'float32', data: tFloat.subarray(first, first + count), dims: [count] };
  }

  /** One U-Net call over rows [first, first+count), its output written into the arena. */
  async function call(a: DdimArena, first: number, count: number, t: number): Promise<void> {
    const rows = (x: Float32Array, size: number) => x.subarray(first * size, (first + count) * size);
    await graph.run(
      {
        [ports.inputs.sample.name]: { dtype: 'float32', data: rows(a.sample, latentSize), dims: [count, ...sampleDims] },
        [ports.inputs.encoder_hidden_states.name]: { dtype: 'float32', data: rows(a.context, contextSize), dims: [count, ...contextDims] },
        [tPort.name]: timestep(first, count, t),
      },
      { [ports.outputs.noise.name]: { dtype: 'float32', data: rows(a.modelOutput, latentSize), dims: [count, ...sampleDims] } },
    );
    calls++;
    rowsRun += count;
    onCall(count);
  }

  /** Runs one step of every member once all of them wait for one. */
  async function maybeRun(): Promise<void> {
    if (running || members.length === 0 || members.some((m) => !m.pending)) return;
    running = true;
    const batch = members.slice();
    const steps = batch.map((m) => m.pending as Step);
    const a = arena as DdimArena;
    try {
      batch.forEach((m, i) => {
        const t = (steps[i] as Step).t;
        if (tPort.dtype === 'int64') tInt.fill(BigInt(t), m.first, m.first + m.rows);
        else tFloat.fill(t, m.first, m.first + m.rows);
      });
      if (rowByRow) {
        for (const [i, m] of batch.entries()) for (let r = m.first; r < m.first + m.rows; r++) await call(a, r, 1, (steps[i] as Step).t);
      } else if (scalarT) {
        // Neighbouring members at the same step share a call.
        for (let i = 0; i < batch.length; ) {
          const t = (steps[i] as Step).t;
          let j = i;
          while (j + 1 < batch.length && (steps[j + 1] as Step).t === t) j++;
          const from = (batch[i] as Member).first;
          const last = batch[j] as Member;
          await call(a, from, last.first + last.rows - from, t);
          i = j + 1;
        }
      } else {
        // Every row carries its own timestep (filled above): one call over all of them.
        await call(a, 0, used, Number.NaN);
      }
      // Every member's DDIM step before any of them resumes: a member that then leaves moves the
      // rows after it, and the model output is not moved with them.
      batch.forEach((m, i) => a.step(m, (steps[i] as Step).alphaBarT, (steps[i] as Step).alphaBarPrev));
    } catch (err) {
      running = false;
      for (const m of batch) settle(m, err);
      admitWaiting();
      return;
    }
    running = false;
    for (const m of batch) settle(m);
    admitWaiting();
  }

  function settle(m: Member, err?: unknown): void {
    const p = m.pending;
    m.pending = null;
    if (!p) return;
    if (err === undefined) p.resolve();
    else p.reject(err);
  }

  function remove(m: Member): void {
    if (m.gone) return;
    m.gone = true;
    const at = members.indexOf(m);
    members.splice(at, 1);
    const after = used - (m.first + m.rows);
    if (after > 0) (arena as DdimArena).moveRows(m.first + m.rows, m.first, after);
    for (const other of members.slice(at)) other.first -= m.rows;
    used -= m.rows;
    admitWaiting();
    void maybeRun();
  }

  return {
    get members() {
      return members.length;
    },
    get calls() {
      return calls;
    },
    get rowsRun() {
      return rowsRun;
    },
    join(job) {
      const images = job.latents.length;
      const rows = groupRows(images, job.guidanceScale);
      if (images < 1) throw new Error('a batch member needs at least one latent');
      if (job.contexts.length !== rows || job.contexts.some((c) => c.length !== contextSize) || job.latents.some((l) => l.length !== latentSize)) {
        throw new Error(`a batch member of ${images} latents of ${latentSize} values needs ${rows} conditioning rows of ${contextSize}`);
      }
      return new Promise<BatchMember>((resolve, reject) => {
        const admit = () => {
          if (!fits(rows)) return;
          admissions.shift();
          try {
            const a = room(used + rows);
            const m: Member = { first: used, rows, images, guidanceScale: job.guidanceScale, prediction: job.prediction, pending: null, gone: false };
            for (let r = 0; r < rows; r++) {
              a.sample.set(job.latents[r % images] as Float32Array, (m.first + r) * latentSize);
              a.context.set(job.contexts[r] as Float32Array, (m.first + r) * contextSize);
            }
            members.push(m);
            used += rows;
            resolve(member(m));
          } catch (err) {
            reject(err);
          }
        };
        admissions.push(admit);
        if (admissions.length === 1) admit();
      });
    },
  };

  function member(m: Member): BatchMember {
    return {
      step(t, alphaBarT, alphaBarPrev) {
        if (m.gone) return Promise.reject(new Error('this job has left the batch'));
        return new Promise<void>((resolve, reject) => {
          m.pending = { t, alphaBarT, alphaBarPrev, resolve, reject };
          void maybeRun();
        });
      },
      latents() {
        const a = arena as DdimArena;
        return Array.from({ length: m.images }, (_, i) => a.sample.slice((m.first + i) * latentSize, (m.first + i + 1) * latentSize));
      },
      recondition(contexts) {
        if (contexts.length !== m.rows || contexts.some((c) => c.length !== contextSize)) throw new Error(`recondition needs ${m.rows} conditioning rows of ${contextSize}`);
        const a = arena as DdimArena;
        contexts.forEach((c, r) => a.context.set(c, (m.first + r) * contextSize));
      },
      leave: () => remove(m),
    };
  }
}
