// diffid: Diff-ID Serve from the command line, on the typed client. The server comes from --url
// or DIFFID_URL, the key from --key or DIFFID_API_KEY. A job's progress shows as a bar (on
// stderr) from its event stream; Ctrl-C cancels the job. --json prints the finished job (or the
// error) as JSON on stdout instead of the summary.
//
// Exit codes: 0 the job succeeded; 1 it failed or was canceled; 2 a usage error or a request the
// API refused (4xx); 3 the service could not be reached or answered 5xx; 130 interrupted (Ctrl-C),
// the job canceled.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import { DiffIdApiError, createDiffIdClient, type AnimationFormat, type DiffIdClient, type Job, type Upload } from './index.ts';

export const EXIT = { ok: 0, jobFailed: 1, usage: 2, unavailable: 3, interrupted: 130 } as const;

class UsageError extends Error {}

interface Globals {
  url: string;
  key?: string;
  json?: boolean;
  progress?: boolean;
}

async function upload(path: string): Promise<Upload> {
  try {
    return { bytes: new Uint8Array(await readFile(path)), name: basename(path) };
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

const positiveInt = (name: string) => (v: string) => {
  if (!/^[0-9]{1,9}$/.test(v)) throw new UsageError(`${name} must be a whole number (got ${JSON.stringify(v)})`);
  return Number(v);
};
const decimal = (name: string) => (v: string) => {
  if (!/^[-+]?[0-9]{1,20}(\.[0-9]{1,20})?$/.test(v)) throw new UsageError(`${name} must be a decimal number (got ${JSON.stringify(v)})`);
  return Number(v);
};

/** What a command does once its job is accepted: follow it, then write its outputs. */
async function follow(client: DiffIdClient, g: Globals, id: string, write: (job: Job) => Promise<string[]>): Promise<number> {
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    if (interrupted) process.exit(EXIT.interrupted);
    interrupted = true;
    process.stderr.write(`\ncanceling job ${id}…\n`);
    controller.abort();
    // Whatever the network does, Ctrl-C ends the program soon (a second one at once).
    setTimeout(() => process.exit(EXIT.interrupted), 10_000).unref();
  };
  process.on('SIGINT', onSigint);
  const bar = g.progress === false || g.json ? null : progressBar();
  try {
    process.stderr.write(`job ${id}\n`);
    const job = await client.wait(id, {
      signal: controller.signal,
      onUpdate: (j) => bar?.update(j.status, j.progress.step, j.progress.total),
    }).catch(async (err: unknown) => {
      if (!interrupted) throw err;
      return client.cancel(id).catch(() => client.job(id));
    });
    bar?.stop();
    if (interrupted) {
      report(g, job, `job ${id} canceled`);
      return EXIT.interrupted;
    }
    if (job.status !== 'succeeded') {
      report(g, job, `job ${id} ${job.status}: ${job.error?.code ?? ''} ${job.error?.message ?? ''}`.trim());
      return EXIT.jobFailed;
    }
    const files = await write(job);
    report(g, job, summary(job, files));
    return EXIT.ok;
  } finally {
    bar?.stop();
    process.off('SIGINT', onSigint);
  }
}

const BAR_FORMAT = '{status} [{bar}] {value}/{total} steps';

/**
 * Progress on stderr: cli-progress's bar on a terminal; piped or logged, a line each time the
 * status changes or another tenth of the steps is done.
 */
function progressBar(): { update(status: string, step: number, total: number): void; stop(): void } {
  if (process.stderr.isTTY) {
    const bar = new SingleBar({ format: BAR_FORMAT, stream: process.stderr, hideCursor: true, clearOnComplete: false }, undefined);
    let started = false;
    return {
      update(status, step, total) {
        if (!started) bar.start(total, step, { status });
        else {
          bar.setTotal(total);
          bar.update(step, { status });
        }
        started = true;
      },
      stop() {
        if (started) bar.stop();
        started = false;
      },
    };
  }
  let last = { status: '', tenth: -1 };
  return {
    update(status, step, total) {
      const tenth = total > 0 ? Math.floor((10 * step) / total) : 10;
      if (status === last.status && tenth === last.tenth) return;
      last = { status, tenth };
      const filled = total > 0 ? Math.round((40 * step) / total) : 40;
      process.stderr.write(`${BAR_FORMAT.replace('{status}', status).replace('{bar}', '='.repeat(filled) + '-'.repeat(40 - filled)).replace('{value}', String(step)).replace('{total}', String(total))}\n`);
    },
    stop: () => undefined,
  };
}

function report(g: Globals, job: Job, text: string): void {
  if (g.json) process.stdout.write(`${JSON.stringify(job, null, 2)}\n`);
  else process.stdout.write(`${text}\n`);
}

function summary(job: Job, files: string[]): string {
  const r = job.result;
  const lines: string[] = [];
  if (typeof r?.similarity === 'number') lines.push(`similarity ${r.similarity.toFixed(4)}`);
  for (const img of r?.images ?? []) {
    const parts = [`image ${img.index}`, `seed ${img.seed}`];
    if (typeof img.alpha === 'number') parts.push(`alpha ${img.alpha.toFixed(3)}`);
    if (typeof img.arcface_similarity === 'number') parts.push(`similarity ${img.arcface_similarity.toFixed(3)}`);
    if (typeof img.arcface_similarity_a === 'number') parts.push(`to A ${img.arcface_similarity_a.toFixed(3)}`);
    if (typeof img.arcface_similarity_b === 'number') parts.push(`to B ${img.arcface_similarity_b.toFixed(3)}`);
    lines.push(parts.join(', '));
  }
  if (typeof r?.pacing_evenness === 'number') lines.push(`pacing evenness ${r.pacing_evenness.toFixed(4)}${typeof r.pacing_evenness_linear === 'number' ? ` (linear pass ${r.pacing_evenness_linear.toFixed(4)})` : ''}`);
  for (const w of r?.warnings ?? []) lines.push(`warning ${w.code}: ${w.message}`);
  for (const f of files) lines.push(`wrote ${f}`);
  return lines.join('\n');
}

async function saveImages(client: DiffIdClient, job: Job, dir: string | undefined, stem: string): Promise<string[]> {
  if (!dir) return [];
  await mkdir(dir, { recursive: true });
  const out: string[] = [];
  for (const img of job.result?.images ?? []) {
    const file = join(dir, `${stem}-${img.index}.png`);
    await writeFile(file, await client.image(job.id, img.index));
    out.push(file);
  }
  return out;
}

/** The diffid program; `run` returns the exit code instead of exiting (tests call it in-process too). */
export function program(run: (action: (client: DiffIdClient, g: Globals) => Promise<number>) => void): Command {
  const cmd = new Command('diffid')
    .description('Diff-ID Serve from the command line: generate, morph and compare faces')
    .addOption(new Option('--url <url>', 'the service').env('DIFFID_URL').default('http://localhost:8080'))
    .addOption(new Option('--key <key>', 'API key').env('DIFFID_API_KEY'))
    .option('--json', 'print the finished job as JSON')
    .option('--no-progress', 'no progress bar')
    .showHelpAfterError()
    .exitOverride();

  cmd
    .command('generate')
    .description('new images of the person in one or more photos of them')
    .argument('<photos...>', 'JPEG, PNG or WebP photos of one person (up to 4)')
    .requiredOption('-p, --prompt <text>', 'what to generate')
    .option('-n, --images <n>', 'how many images', positiveInt('--images'))
    .option('--seed <n>', 'seed of the first image', positiveInt('--seed'))
    .option('--steps <n>', 'DDIM steps', positiveInt('--steps'))
    .option('--guidance <x>', 'guidance scale', decimal('--guidance'))
    .option('--negative <text>', 'negative prompt')
    .option('-o, --out <dir>', 'write the images here')
    .action((photos: string[], o) =>
      run(async (client, g) => {
        const accepted = await client.generate({
          image: await Promise.all(photos.map(upload)),
          prompt: o.prompt,
          ...(o.images === undefined ? {} : { num_images: o.images }),
          ...(o.seed === undefined ? {} : { seed: o.seed }),
          ...(o.steps === undefined ? {} : { steps: o.steps }),
          ...(o.guidance === undefined ? {} : { guidance_scale: o.guidance }),
          ...(o.negative === undefined ? {} : { negative_prompt: o.negative }),
        });
        return follow(client, g, accepted.id, (job) => saveImages(client, job, o.out, 'generated'));
      }),
    );

  cmd
    .command('morph')
    .description('morph from face A to face B')
    .argument('<a>', 'photo of face A')
    .argument('<b>', 'photo of face B')
    .option('--frames <n>', 'frames from A to B', positiveInt('--frames'))
    .option('--alphas <list>', 'morph factors, e.g. 0,0.5,1')
    .option('--pacing <mode>', 'linear, or even: re-spaced so each step changes the picture equally')
    .option('--background <face>', 'a or b: morph the face only, keeping that photo around it')
    .option('--webp <file>', 'write the morph as an animated WebP')
    .option('--gif <file>', 'write the morph as an animated GIF')
    .option('--mp4 <file>', 'write the morph as an MP4 video (the workers need ffmpeg)')
    .option('--fps <n>', 'animation frame rate', positiveInt('--fps'))
    .option('--boomerang', 'the animation plays forward, then back')
    .option('--steps <n>', 'DDIM steps', positiveInt('--steps'))
    .option('--prompt <text>', 'prompt for both faces')
    .option('-o, --out <dir>', 'write the frames here')
    .action((a: string, b: string, o) =>
      run(async (client, g) => {
        const files: Partial<Record<AnimationFormat, string>> = { webp: o.webp, gif: o.gif, mp4: o.mp4 };
        const animation = (Object.keys(files) as AnimationFormat[]).filter((f) => files[f] !== undefined);
        const accepted = await client.morph({
          image_a: await upload(a),
          image_b: await upload(b),
          ...(o.alphas === undefined && o.frames === undefined ? { frames: 5 } : {}),
          ...(o.frames === undefined ? {} : { frames: o.frames }),
          ...(o.alphas === undefined ? {} : { alphas: o.alphas }),
          ...(o.pacing === undefined ? {} : { pacing: o.pacing }),
          ...(o.background === undefined ? {} : { background: o.background }),
          ...(animation.length > 0 ? { animation: animation.join(',') } : {}),
          ...(o.fps === undefined ? {} : { fps: o.fps }),
          ...(o.boomerang ? { boomerang: true } : {}),
          ...(o.steps === undefined ? {} : { steps: o.steps }),
          ...(o.prompt === undefined ? {} : { prompt: o.prompt }),
        });
        return follow(client, g, accepted.id, async (job) => {
          const written = await saveImages(client, job, o.out, 'frame');
          for (const format of animation) {
            const file = files[format] as string;
            await writeFile(file, await client.animation(job.id, format));
            written.push(file);
          }
          return written;
        });
      }),
    );

  cmd
    .command('compare')
    .description('the similarity of the faces in two photos')
    .argument('<a>', 'first photo')
    .argument('<b>', 'second photo')
    .action((a: string, b: string) =>
      run(async (client, g) => {
        const answer = await client.compare({ image_a: await upload(a), image_b: await upload(b) }, 30);
        // Prefer: wait usually brings the finished job; only a slow queue leaves it to follow.
        if ('status' in answer && answer.status === 'succeeded') {
          report(g, answer as Job, summary(answer as Job, []));
          return EXIT.ok;
        }
        return follow(client, g, answer.id, async () => []);
      }),
    );

  const jobs = cmd.command('jobs').description('look at, wait for, cancel or download a job');
  jobs
    .command('get')
    .argument('<id>')
    .action((id: string) =>
      run(async (client, g) => {
        const job = await client.job(id);
        report(g, job, `job ${id}: ${job.kind} ${job.status}, step ${job.progress.step}/${job.progress.total}${job.error ? `, ${job.error.code}: ${job.error.message}` : ''}`);
        return job.status === 'failed' || job.status === 'canceled' ? EXIT.jobFailed : EXIT.ok;
      }),
    );
  jobs
    .command('wait')
    .argument('<id>')
    .option('-o, --out <dir>', 'write the images here')
    .action((id: string, o) => run((client, g) => follow(client, g, id, (job) => saveImages(client, job, o.out, job.kind === 'morph' ? 'frame' : 'generated'))));
  jobs
    .command('cancel')
    .argument('<id>')
    .action((id: string) =>
      run(async (client, g) => {
        const job = await client.cancel(id);
        report(g, job, `job ${id} ${job.status}`);
        return EXIT.ok;
      }),
    );
  return cmd;
}

/** Runs the command line; resolves with the exit code. */
export async function main(argv: string[]): Promise<number> {
  let pending: Promise<number> = Promise.resolve(EXIT.ok);
  const cmd = program((action) => {
    const g = cmd.opts<Globals>();
    const client = createDiffIdClient({ baseUrl: g.url, ...(g.key ? { apiKey: g.key } : {}) });
    pending = action(client, g);
  });
  try {
    await cmd.parseAsync(argv, { from: 'user' });
    return await pending;
  } catch (err) {
    return failure(err, cmd.opts<Globals>());
  }
}

function failure(err: unknown, g: Globals): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
  if (err instanceof UsageError) {
    process.stderr.write(`diffid: ${err.message}\n`);
    return EXIT.usage;
  }
  if (err instanceof DiffIdApiError) {
    if (g.json) process.stdout.write(`${JSON.stringify({ error: { status: err.status, code: err.code, message: err.message } })}\n`);
    process.stderr.write(`diffid: ${err.code}: ${err.message}\n`);
    return err.status >= 500 ? EXIT.unavailable : EXIT.usage;
  }
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  process.stderr.write(`diffid: cannot reach the service (${cause?.code ?? cause?.message ?? (err as Error).message}); check --url or DIFFID_URL\n`);
  return EXIT.unavailable;
}
