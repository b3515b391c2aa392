// diffid: Diff-ID Serve from the command line, on the typed client. The server comes from --url
// or DIFFID_URL, the key from --key or DIFFID_API_KEY. A job's progress shows as a bar (on
// stderr) from its event stream; Ctrl-C cancels the job. --json prints the finished job (or the
// error) as JSON on stdout instead of the summary.
//
// The job commands' options are not listed here: each run fetches the served contract
// (GET /openapi.yaml) and draws them from the route's form schema (contract-options.ts), so a
// field the service gains is a flag at once. Only what the contract cannot say is kept by hand,
// in the tables below.
//
// Exit codes: 0 the job succeeded; 1 it failed or was canceled; 2 a usage error or a request the
// API refused (4xx); 3 the service could not be reached or answered 5xx; 130 interrupted (Ctrl-C),
// the job canceled.
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import { DiffIdApiError, createDiffIdClient, type AnimationFormat, type Batch, type BatchRequest, type DiffIdClient, type FormValue, type Job, type JobRoute, type Upload } from './index.ts';
import { ContractError, addFormOptions, jobForm, parseContract, type FieldAlias, type FormOptions, type JobForm } from './contract-options.ts';

export const EXIT = { ok: 0, jobFailed: 1, usage: 2, unavailable: 3, interrupted: 130 } as const;

// What the contract does not say, kept here and only here. Every job option is drawn from the
// served openapi.yaml; these are the exceptions. The aliases keep the names that users, scripts
// and the README already type working as names of the contract's flags; the argument names keep
// the usage lines people know; the rest are options of the CLI itself, which are no form fields.

/** Old and short flag names, each an alias of the flag the contract draws for that field. */
export const FIELD_ALIASES: Readonly<Record<string, FieldAlias>> = {
  prompt: { short: 'p' },
  num_images: { short: 'n', long: ['images'] },
  guidance_scale: { long: ['guidance'] },
  negative_prompt: { long: ['negative'] },
};
/** The positional arguments' names for the file fields, as the usage lines have always shown them. */
export const ARGUMENT_NAMES: Readonly<Record<string, string>> = { image: 'photos', image_a: 'a', image_b: 'b' };
/** morph's frames when none of frames, alphas or alpha is given (the API wants one of them). */
export const MORPH_DEFAULT_FRAMES = 5;
/** morph's --webp/--gif/--mp4 <file>: each adds its format to the `animation` field and writes the file. */
const ANIMATION_FILES: ReadonlyArray<{ format: AnimationFormat; help: string }> = [
  { format: 'webp', help: 'write the morph as an animated WebP' },
  { format: 'gif', help: 'write the morph as an animated GIF' },
  { format: 'mp4', help: 'write the morph as an MP4 video (the workers need ffmpeg)' },
];
/** The job commands: the route whose form gives their options, and their line in the help. */
const JOB_COMMANDS: ReadonlyArray<{ name: string; route: JobRoute; description: string; out?: string }> = [
  { name: 'generate', route: '/generate', description: 'new images of the person in one or more photos of them', out: 'write the images here' },
  { name: 'morph', route: '/morph', description: 'morph from face A to face B', out: 'write the frames here' },
  { name: 'compare', route: '/compare', description: 'the similarity of the faces in two photos' },
];

/**
 * The contract this client was built from, one folder above src/ and dist/ alike: the help's
 * fallback when the service cannot be reached.
 */
export const BUILT_CONTRACT = new URL('../../openapi.yaml', import.meta.url);

class UsageError extends Error {}

export interface Globals {
  url: string;
  key?: string;
  json?: boolean;
  progress?: boolean;
}

/** A job route's form and where its contract came from, in words for the help. */
export interface LoadedForm {
  form: JobForm;
  source: string;
}

/**
 * Loads a job route's form. `forHelp`: the command line asks for help, which should work with no
 * service, so a contract that cannot be fetched falls back to the one the client was built from.
 */
export type FormLoader = (g: Globals, route: FormRoute, forHelp: boolean) => Promise<LoadedForm>;
/** The routes whose multipart form gives a command its options: the jobs', and storing an identity. */
export type FormRoute = JobRoute | '/identities';

/** Why a request did not get through, in a word where there is one (ECONNREFUSED). */
function reason(err: unknown): string {
  if (err instanceof DiffIdApiError) return `${err.status} ${err.code}`;
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause;
  if (cause instanceof Error) return 'code' in cause && typeof cause.code === 'string' ? cause.code : cause.message;
  return err.message;
}

function errorCode(err: unknown): string {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : err instanceof Error ? err.message : String(err);
}

async function upload(path: string): Promise<Upload> {
  try {
    return { bytes: new Uint8Array(await readFile(path)), name: basename(path) };
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${errorCode(err)}`);
  }
}

/** The form to send: what the user gave, with the files read. */
async function request(given: { fields: Record<string, FormValue>; files: Record<string, string | string[]> }): Promise<Record<string, FormValue>> {
  const form: Record<string, FormValue> = { ...given.fields };
  for (const [name, paths] of Object.entries(given.files)) form[name] = Array.isArray(paths) ? await Promise.all(paths.map(upload)) : await upload(paths);
  return form;
}

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

/** Prints what the API answered: as JSON with --json, else the summary line(s). */
function report(g: Globals, answer: unknown, text: string): void {
  if (g.json) process.stdout.write(`${JSON.stringify(answer, null, 2)}\n`);
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

/** Runs a job command's work with the client and the global options; resolves with the exit code. */
export type Runner = (action: (client: DiffIdClient, g: Globals) => Promise<number>) => void;

/** Whether the command line asks for help (before any `--`). */
function helpAsked(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '-h' || a === '--help');
}

/**
 * The diffid program. `run` runs a command's work and keeps its exit code (tests call it
 * in-process too); `load` gives a job command its form, just before commander parses the job
 * command's arguments.
 */
export function program(run: Runner, load: FormLoader): Command {
  const cmd = new Command('diffid')
    .description('Diff-ID Serve from the command line: generate, morph and compare faces')
    .addOption(new Option('--url <url>', 'the service').env('DIFFID_URL').default('http://localhost:8080'))
    .addOption(new Option('--key <key>', 'API key').env('DIFFID_API_KEY'))
    .option('--json', 'print the finished job as JSON')
    .option('--no-progress', 'no progress bar')
    .addHelpText('after', '\ngenerate, morph and compare take their options from the service\'s contract (GET /openapi.yaml):\n`diffid <command> --help` lists them, and -i name=value gives any field of the form.')
    .showHelpAfterError()
    .exitOverride()
    // The built-in help command shows a command's help without dispatching to it, so without the
    // contract's options: this one loads them first.
    .helpCommand(false);

  const forms = new Map<Command, FormOptions>();
  const routes = new Map<Command, FormRoute>();
  /** Gives a job command the options of its route's form (once); other commands have none. */
  const prepare = async (sub: Command, forHelp: boolean): Promise<void> => {
    const route = routes.get(sub);
    if (route === undefined || forms.has(sub)) return;
    const { form, source } = await load(cmd.opts<Globals>(), route, forHelp);
    forms.set(sub, addFormOptions(sub, form, { aliases: FIELD_ALIASES, argumentNames: ARGUMENT_NAMES }));
    sub.addHelpText('after', `\nThe fields are drawn from ${source}.`);
  };
  cmd.hook('preSubcommand', async (_, sub) => {
    await prepare(sub, helpAsked(cmd.args));
  });
  const formOf = (sub: Command): FormOptions => {
    const form = forms.get(sub);
    // The preSubcommand hook adds it before commander parses the command's arguments.
    if (!form) throw new Error(`diffid ${sub.name()}: no form loaded`);
    return form;
  };

  for (const spec of JOB_COMMANDS) {
    const sub = cmd.command(spec.name).description(spec.description);
    routes.set(sub, spec.route);
    if (spec.out) sub.option('-o, --out <dir>', spec.out);
    if (spec.name === 'morph') for (const { format, help } of ANIMATION_FILES) sub.option(`--${format} <file>`, help);
    sub.action(() =>
      run(async (client, g) => {
        const given = formOf(sub).collect();
        const o = sub.opts<{ out?: string } & Partial<Record<AnimationFormat, string>>>();
        if (spec.name === 'generate') {
          const accepted = await client.submit(spec.route, await request(given));
          return follow(client, g, accepted.id, (job) => saveImages(client, job, o.out, 'generated'));
        }
        if (spec.name === 'morph') {
          const fields: Record<string, FormValue> = given.fields;
          if (fields.frames === undefined && fields.alphas === undefined && fields.alpha === undefined && formOf(sub).form.fields.some((f) => f.name === 'frames')) {
            fields.frames = MORPH_DEFAULT_FRAMES;
          }
          const writes = animationFiles(o);
          if (writes.length > 0) {
            const listed = typeof fields.animation === 'string' ? fields.animation.split(',').map((f) => f.trim()).filter((f) => f !== '') : [];
            fields.animation = [...new Set([...listed, ...writes.map((w) => w.format)])].join(',');
          }
          const accepted = await client.submit(spec.route, await request({ ...given, fields }));
          return follow(client, g, accepted.id, async (job) => {
            const written = await saveImages(client, job, o.out, 'frame');
            for (const { format, file } of writes) {
              await writeFile(file, await client.animation(job.id, format));
              written.push(file);
            }
            return written;
          });
        }
        const answer = await client.submit(spec.route, await request(given), 30);
        // Prefer: wait usually brings the finished job; only a slow queue leaves it to follow.
        if (answer.status === 'succeeded') {
          report(g, answer, summary(answer, []));
          return EXIT.ok;
        }
        return follow(client, g, answer.id, async () => []);
      }),
    );
  }

  cmd
    .command('help')
    .description('display help for command')
    .argument('[command]')
    .action(async (name?: string) => {
      if (name === undefined) return cmd.outputHelp();
      const sub = cmd.commands.find((c) => c.name() === name);
      if (!sub) return cmd.error(`error: unknown command '${name}'`);
      await prepare(sub, true);
      sub.outputHelp();
    });

  const identities = cmd.command('identities').description('store photos of a person once, then use the id (--identity, --identity-a, --identity-b)');
  const add = identities.command('add').description('store photos of one person as an identity');
  routes.set(add, '/identities');
  identities.hook('preSubcommand', async (_, sub) => {
    await prepare(sub, helpAsked(identities.args));
  });
  add.action(() =>
    run(async (client, g) => {
      const identity = await client.createIdentity((await request(formOf(add).collect())) as never);
      report(g, identity, `identity ${identity.id} ${identity.status}${identity.name ? ` (${identity.name})` : ''}, ${identity.photos} photo(s), expires ${identity.expires_at}`);
      return EXIT.ok;
    }),
  );
  identities
    .command('list')
    .description("this key's stored identities, soonest to expire first")
    .action(() =>
      run(async (client, g) => {
        const all = [];
        let cursor: string | null | undefined;
        do {
          const page = await client.identities({ limit: 100, ...(cursor ? { cursor } : {}) });
          all.push(...page.identities);
          cursor = page.next_cursor;
        } while (cursor);
        report(g, all, all.map((i) => `${i.id}  ${i.status}  ${i.photos} photo(s)  expires ${i.expires_at}${i.name ? `  ${i.name}` : ''}`).join('\n') || 'no stored identities');
        return EXIT.ok;
      }),
    );
  identities
    .command('rm')
    .description('delete a stored identity and everything kept for it')
    .argument('<id>')
    .action((id: string) =>
      run(async (client, g) => {
        await client.deleteIdentity(id);
        report(g, { id, deleted: true }, `identity ${id} deleted`);
        return EXIT.ok;
      }),
    );

  const batches = cmd.command('batches').description('many morphs or generates of stored identities at once, and their results as one zip');
  const describe = (b: Batch) =>
    `batch ${b.id}: ${b.kind} ${b.status}, ${b.jobs} jobs — ${Object.entries(b.counts).map(([k, n]) => `${n} ${k}`).join(', ')}${b.eta_s === undefined ? '' : `, about ${b.eta_s} s left`}`;
  batches
    .command('create')
    .description('queue a batch: a JSON file (or - for stdin) as POST /batches takes it, e.g. {"kind":"morph","pairs":[[A,B]],"alphas":[0.5]}')
    .argument('<file>')
    .action((file: string) =>
      run(async (client, g) => {
        const text = file === '-' ? await new Response(process.stdin as never).text() : await readFile(file, 'utf8');
        let request: BatchRequest;
        try {
          request = JSON.parse(text) as BatchRequest;
        } catch (err) {
          throw new UsageError(`${file} is not JSON: ${reason(err)}`);
        }
        const batch = await client.createBatch(request);
        report(g, batch, describe(batch));
        return EXIT.ok;
      }),
    );
  batches
    .command('get')
    .argument('<id>')
    .action((id: string) =>
      run(async (client, g) => {
        const batch = await client.batch(id);
        report(g, batch, describe(batch));
        return EXIT.ok;
      }),
    );
  batches
    .command('wait')
    .description('wait until the batch has ended, then write its results.zip')
    .argument('<id>')
    .option('-o, --out <file>', 'the zip to write', 'results.zip')
    .option('--every <seconds>', 'how often to ask', (v) => Number(v), 5)
    .action((id: string, o: { out: string; every: number }) =>
      run(async (client, g) => {
        let batch = await client.batch(id);
        while (batch.ended_at === null) {
          if (!g.json) process.stderr.write(`${describe(batch)}\n`);
          await new Promise((resolve) => setTimeout(resolve, Math.max(1, o.every) * 1000));
          batch = await client.batch(id);
        }
        await pipeline(Readable.fromWeb((await client.batchResults(id)) as never), createWriteStream(o.out));
        report(g, { ...batch, file: o.out }, `${describe(batch)}\nwrote ${o.out}`);
        return batch.counts.failed > 0 ? EXIT.jobFailed : EXIT.ok;
      }),
    );
  batches
    .command('results')
    .description('write the batch\'s outputs so far and manifest.csv as a zip')
    .argument('<id>')
    .option('-o, --out <file>', 'the zip to write', 'results.zip')
    .action((id: string, o: { out: string }) =>
      run(async (client, g) => {
        await pipeline(Readable.fromWeb((await client.batchResults(id)) as never), createWriteStream(o.out));
        report(g, { id, file: o.out }, `wrote ${o.out}`);
        return EXIT.ok;
      }),
    );
  batches
    .command('cancel')
    .argument('<id>')
    .action((id: string) =>
      run(async (client, g) => {
        const batch = await client.cancelBatch(id);
        report(g, batch, describe(batch));
        return EXIT.ok;
      }),
    );

  cmd
    .command('verify')
    .description("what a file says of where it came from: its C2PA manifest, checked, and its XMP (exit 1 when a manifest is there but does not hold)")
    .argument('<file>')
    .action((file: string) =>
      run(async (client, g) => {
        const v = await client.verify({ bytes: new Uint8Array(await readFile(file)), name: basename(file) });
        const c = v.c2pa;
        const lines = [
          c.present ? `C2PA: ${c.valid ? 'valid' : `NOT valid (${c.errors.join(', ')})`}, signed by ${c.signer ?? '?'}, issued by ${c.issuer ?? '?'}` : 'C2PA: no manifest',
          ...c.actions.map((a) => `  ${a.action}${a.digitalSourceType ? ` (${a.digitalSourceType.split('/').at(-1)})` : ''}${a.softwareAgent ? ` by ${a.softwareAgent}` : ''}`),
          v.xmp.present ? `XMP: ${v.xmp.digital_source_type ?? 'no digital source type'}${v.xmp.creator_tool ? `, made with ${v.xmp.creator_tool}` : ''}${v.xmp.kind ? ` (${v.xmp.kind})` : ''}` : 'XMP: none',
        ];
        report(g, v, lines.join('\n'));
        return c.present && !c.valid ? EXIT.jobFailed : EXIT.ok;
      }),
    );

  const jobs = cmd.command('jobs').description('look at, wait for, cancel or download a job');
  jobs
    .command('list')
    .description("this key's jobs, newest first")
    .option('--status <status>', 'only jobs in this status (queued, running, succeeded, failed, canceled)')
    .option('--kind <kind>', 'only jobs of this kind (generate, morph, compare, identity)')
    .option('--batch <id>', 'only the jobs of this batch')
    .option('--limit <n>', 'at most this many', (v) => Number(v), 20)
    .action((o: { status?: string; kind?: string; batch?: string; limit: number }) =>
      run(async (client, g) => {
        const listed: Job[] = [];
        let cursor: string | null | undefined;
        // The API checks the filters; a page holds at most 100.
        do {
          const page = await client.jobs({ limit: Math.min(100, o.limit - listed.length), ...(o.status ? { status: o.status as never } : {}), ...(o.kind ? { kind: o.kind as never } : {}), ...(o.batch ? { batch: o.batch } : {}), ...(cursor ? { cursor } : {}) });
          listed.push(...page.jobs);
          cursor = page.next_cursor;
        } while (cursor && listed.length < o.limit);
        report(g, listed, listed.map((j) => `${j.id}  ${j.kind}  ${j.status}  ${j.created_at}`).join('\n') || 'no jobs');
        return EXIT.ok;
      }),
    );
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
    .action((id: string, o: { out?: string }) => run((client, g) => follow(client, g, id, (job) => saveImages(client, job, o.out, job.kind === 'morph' ? 'frame' : 'generated'))));
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

/** The animation files morph was asked to write, in the order of ANIMATION_FILES. */
function animationFiles(o: Partial<Record<AnimationFormat, string>>): Array<{ format: AnimationFormat; file: string }> {
  return ANIMATION_FILES.flatMap(({ format }) => {
    const file = o[format];
    return typeof file === 'string' ? [{ format, file }] : [];
  });
}

function clientFor(g: Globals): DiffIdClient {
  return createDiffIdClient({ baseUrl: g.url, ...(g.key ? { apiKey: g.key } : {}) });
}

/**
 * Loads a job route's form from the served contract, with the API key as every request sends it.
 * For help only, a service that cannot be reached (or whose contract has no such form) leaves
 * the contract the client was built from, and the help says so.
 */
export const loadServedForm: FormLoader = async (g, route, forHelp) => {
  const base = g.url.replace(/\/+$/, '');
  try {
    return { form: jobForm(parseContract(await clientFor(g).openapi()), route), source: `the contract served at ${base}/openapi.yaml` };
  } catch (err) {
    if (!forHelp) throw err;
    const form = await readFile(BUILT_CONTRACT, 'utf8').then((text) => jobForm(parseContract(text), route), () => undefined);
    if (!form) throw err;
    return { form, source: `the openapi.yaml this client was built from (${fileURLToPath(BUILT_CONTRACT)}):\nthe service at ${base} could not be asked (${reason(err)}), and its own may differ` };
  }
};

/** Runs the command line; resolves with the exit code. */
export async function main(argv: string[], load: FormLoader = loadServedForm): Promise<number> {
  let pending: Promise<number> = Promise.resolve(EXIT.ok);
  const cmd = program((action) => {
    const g = cmd.opts<Globals>();
    pending = action(clientFor(g), g);
  }, load);
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
  if (err instanceof ContractError) {
    process.stderr.write(`diffid: the service at ${g.url}: ${err.message}; check --url or DIFFID_URL\n`);
    return EXIT.unavailable;
  }
  process.stderr.write(`diffid: cannot reach the service (${reason(err)}); check --url or DIFFID_URL\n`);
  return EXIT.unavailable;
}
