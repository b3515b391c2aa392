// The service's settings: every environment variable the API, the worker and `npm start` read,
// with its default and its check, in one table. Only the entry points call `readSettings`; the
// rest of the code takes plain options.
import { fileURLToPath } from 'node:url';
import { webhookKey } from '../contract/webhooks.ts';

/** Where the repository's own writable data goes by default (`var/`, git-ignored). */
const DEFAULT_DATA_DIR = fileURLToPath(new URL('../../../var', import.meta.url));

/** The onnxruntime execution providers a worker may ask for. */
export const EXECUTION_PROVIDERS = ['cpu', 'cuda'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

interface Setting<T> {
  env: string;
  default: T;
  /** Turns the variable's text into the value, or says what is wrong with it. */
  parse(raw: string): T | { error: string };
  doc: string;
}

function int(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (raw: string): number | { error: string } => {
    // Number() also takes "0x10", "1e3" and " 8 "; a setting is plain decimal digits.
    const n = /^[0-9]{1,15}$/.test(raw) ? Number(raw) : Number.NaN;
    return Number.isInteger(n) && n >= min && n <= max ? n : { error: `an integer in ${min}…${max}` };
  };
}

function oneOf<const T extends readonly string[]>(values: T) {
  return (raw: string): T[number] | { error: string } =>
    (values as readonly string[]).includes(raw) ? (raw as T[number]) : { error: `one of ${values.join(', ')}` };
}

const text = (raw: string): string => raw;
const secret = (raw: string): string | { error: string } => {
  const key = webhookKey(raw);
  return Buffer.isBuffer(key) ? raw : key;
};
const optionalText = (raw: string): string | undefined => raw;

/** Every setting: its variable, default, check and meaning (the README's table is this one). */
export const SETTINGS = {
  redisUrl: { env: 'REDIS_URL', default: 'redis://127.0.0.1:6379', parse: text, doc: 'Redis that the API and the workers share' },
  redisPrefix: { env: 'DIFFID_REDIS_PREFIX', default: 'diffid', parse: text, doc: 'prefix of every Redis key, BullMQ’s included' },
  queueName: { env: 'DIFFID_QUEUE', default: 'jobs', parse: text, doc: 'BullMQ queue name' },
  resultTtlSeconds: { env: 'DIFFID_RESULT_TTL_SECONDS', default: 86_400, parse: int(60), doc: 'how long results and finished jobs are kept' },
  logLevel: { env: 'LOG_LEVEL', default: 'info', parse: oneOf(LOG_LEVELS), doc: 'pino log level' },
  port: { env: 'PORT', default: 8080, parse: int(0, 65_535), doc: 'API port' },
  host: { env: 'HOST', default: undefined, parse: optionalText, doc: 'API listen address; unset: 0.0.0.0 when API keys are configured, else 127.0.0.1 (loopback only)' },
  apiKeys: { env: 'DIFFID_API_KEYS', default: undefined, parse: optionalText, doc: 'API keys as tenant:key[:requests-per-minute], comma-separated; when any are set, every route but health, readiness and metrics needs Authorization: Bearer KEY' },
  apiKeysFile: { env: 'DIFFID_API_KEYS_FILE', default: undefined, parse: optionalText, doc: 'a file of API keys, one tenant:key[:requests-per-minute] per line (# comments); joined with DIFFID_API_KEYS' },
  highPriorityTenants: { env: 'DIFFID_HIGH_PRIORITY_TENANTS', default: undefined, parse: optionalText, doc: 'tenants, comma-separated, whose keys may ask for priority=high (ahead of normal jobs); every key may ask for low. Without API keys anyone may' },
  adminTenant: { env: 'DIFFID_ADMIN_TENANT', default: undefined, parse: optionalText, doc: 'the tenant whose key opens the read-only queue dashboard at /admin/queues (with keys configured, no one else can)' },
  rateLimitPerMinute: { env: 'DIFFID_RATE_LIMIT_PER_MINUTE', default: 300, parse: int(1, 1_000_000), doc: 'requests per minute per API key, unless its entry says otherwise (Redis-backed: holds across API replicas)' },
  maxJobsPerKey: { env: 'DIFFID_MAX_JOBS_PER_KEY', default: 50, parse: int(1, 1_000_000), doc: 'jobs one key may have queued or running at once' },
  maxQueuedStepsPerKey: { env: 'DIFFID_MAX_QUEUED_STEPS_PER_KEY', default: 100_000, parse: int(1, 1_000_000_000), doc: 'U-Net evaluations of single images one key may have queued or running (a generate job costs steps × images, a morph steps × (2 + frames), frames twice with pacing=even)' },
  webhookSecret: { env: 'DIFFID_WEBHOOK_SECRET', default: undefined, parse: secret, doc: 'the Standard Webhooks signing secret (whsec_ then base64 of at least 24 random bytes); unset: requests that ask for a webhook get 400' },
  webhookAllow: { env: 'DIFFID_WEBHOOK_ALLOW', default: undefined, parse: optionalText, doc: 'host names and CIDRs, each with an optional :port, comma-separated, that webhooks may reach although not public (loopback, private, link-local and reserved addresses are refused otherwise); an entry without a port admits every port of it, so name one: hooks.internal:8443, 10.0.0.0/8:443, [fd00::1]:8443' },
  maxInputMbPerKey: { env: 'DIFFID_MAX_INPUT_MB_PER_KEY', default: 512, parse: int(1, 1_000_000), doc: 'MB of uploaded images one key’s queued and running jobs may hold in Redis; past it, 429 TOO_MANY_JOBS' },
  maxInputMb: { env: 'DIFFID_MAX_INPUT_MB', default: 2048, parse: int(1, 10_000_000), doc: 'MB of uploaded images all queued and running jobs may hold in Redis; past it, 503 STORAGE_FULL with Retry-After. Keep it well under Redis’s maxmemory, which results and the queue share' },
  maxQueueDepth: { env: 'DIFFID_MAX_QUEUE_DEPTH', default: 10_000, parse: int(1, 10_000_000), doc: 'jobs queued or running in all; past it new jobs get 503 with Retry-After' },
  maxStreamsPerKey: { env: 'DIFFID_MAX_STREAMS_PER_KEY', default: 50, parse: int(1, 100_000), doc: 'event streams one key may hold open on one API process (10 per job)' },
  inputTtlSeconds: { env: 'DIFFID_INPUT_TTL_SECONDS', default: 7 * 86_400, parse: int(60), doc: 'how long uploads wait for a worker' },
  identityTtlSeconds: { env: 'DIFFID_IDENTITY_TTL_SECONDS', default: 30 * 86_400, parse: int(60), doc: 'how long a stored identity (POST /identities: its photos, faces and cached latents) is kept from its creation' },
  maxIdentitiesPerKey: { env: 'DIFFID_MAX_IDENTITIES_PER_KEY', default: 100, parse: int(1, 1_000_000), doc: 'stored identities one key may have at once (each holds up to four photos in Redis); past it, 429 TOO_MANY_IDENTITIES' },
  maxBatchedJobsPerKey: { env: 'DIFFID_MAX_BATCHED_JOBS_PER_KEY', default: 10_000, parse: int(1, 10_000_000), doc: 'jobs one key’s open batches (POST /batches) may hold in all, queued or waiting for room; a batch past it gets 429 TOO_MANY_JOBS. Their jobs enter the queue in waves under DIFFID_MAX_JOBS_PER_KEY' },
  maxIdentityMbPerKey: { env: 'DIFFID_MAX_IDENTITY_MB_PER_KEY', default: 1024, parse: int(1, 1_000_000), doc: 'MB of photos one key’s stored identities may hold in Redis together; past it, 429 TOO_MANY_IDENTITIES' },
  jobAttempts: { env: 'DIFFID_JOB_ATTEMPTS', default: 3, parse: int(1, 20), doc: 'tries of a job whose failure is transient, or whose worker was lost (killed, cut off)' },
  lockSeconds: { env: 'DIFFID_LOCK_SECONDS', default: 120, parse: int(10, 3600), doc: 'how long a running job’s lock lasts without renewal (renewed every 15 s): a Redis pause shorter than this minus 15 s loses no lock' },
  stalledCheckSeconds: { env: 'DIFFID_STALLED_CHECK_SECONDS', default: 5, parse: int(1, 300), doc: 'how often workers look for jobs whose worker is gone; a killed worker’s job runs again within about three of these' },
  c2paKey: { env: 'DIFFID_C2PA_KEY', default: undefined, parse: optionalText, doc: 'a PEM file of the PKCS#8 Ed25519 or ECDSA key that signs outputs’ C2PA manifests, with DIFFID_C2PA_CERT; unset: a key and a local CA made once in DIFFID_DATA_DIR/c2pa, which no public validator trusts' },
  c2paCert: { env: 'DIFFID_C2PA_CERT', default: undefined, parse: optionalText, doc: 'a PEM file of the signing certificate chain for DIFFID_C2PA_KEY, the signer’s certificate first' },
  modelDir: { env: 'DIFFID_MODEL_DIR', default: undefined, parse: optionalText, doc: 'model bundle directory; unset: the embedded default bundle' },
  dataDir: { env: 'DIFFID_DATA_DIR', default: DEFAULT_DATA_DIR, parse: text, doc: 'where the embedded default bundle is generated' },
  executionProvider: { env: 'DIFFID_EXECUTION_PROVIDER', default: 'cpu', parse: oneOf(EXECUTION_PROVIDERS), doc: 'onnxruntime execution provider' },
  intraOpThreads: { env: 'DIFFID_INTRA_OP_THREADS', default: 0, parse: int(0, 1024), doc: 'onnxruntime threads per operator; 0: one fewer than the machine’s cores (at least 1), leaving a core to the worker’s own threads' },
  inferenceHeapMb: { env: 'DIFFID_INFERENCE_HEAP_MB', default: 256, parse: int(16, 65_536), doc: 'where V8 starts the inference thread’s old-generation limit, in MB: onnxruntime-node copies every graph output into a new buffer, and with less room than a few jobs’ copies the thread pauses for a full garbage collection in every job (watch diffid_inference_full_gc_total; docs/operations.md)' },
  workerMetricsPort: { env: 'DIFFID_WORKER_METRICS_PORT', default: undefined, parse: int(1, 65_535), doc: 'a worker serves its Prometheus metrics on this port at /metrics; unset: not served' },
  graphCacheDir: { env: 'DIFFID_GRAPH_CACHE_DIR', default: undefined, parse: optionalText, doc: 'where onnxruntime’s optimized graphs are kept, so that a worker’s second start skips optimizing graphs of 8 MB and more (docs/full-size.md); unset: DIFFID_DATA_DIR/graph-cache; off: no cache' },
  memoryMb: { env: 'DIFFID_MEMORY_MB', default: undefined, parse: int(256, 16_777_216), doc: 'memory one worker’s models and batches may take: GPU memory with CUDA, RAM on the CPU; it bounds the rows of a batched U-Net call by the formula in docs/full-size.md. Unset: the machine’s memory (its cgroup limit in a container), or the GPU’s as nvidia-smi reports it' },
  maxBatch: { env: 'DIFFID_MAX_BATCH', default: 8, parse: int(1, 64), doc: 'most morph frames in one U-Net batch, and half the most U-Net rows one call takes when jobs are batched; give every worker on one Redis the same value (it sets a morph’s step total)' },
  batchJobs: { env: 'DIFFID_BATCH_JOBS', default: 1, parse: int(1, 64), doc: 'jobs one worker runs at once, their denoising steps batched into shared U-Net calls (docs/benchmarks.md); 1 turns batching off. Worth it on a GPU, where a U-Net call costs about the same for one image as for several; on a CPU it is not' },
} as const satisfies Record<string, Setting<unknown>>;

type Table = typeof SETTINGS;
/** The settings as the entry points use them. */
export type Settings = { -readonly [K in keyof Table]: Table[K]['default'] | Exclude<ReturnType<Table[K]['parse']>, { error: string }> };

/** Every bad variable at once, each with what it must be. */
export class SettingsError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid settings:\n  - ${problems.join('\n  - ')}`);
    this.name = 'SettingsError';
    this.problems = problems;
  }
}

/** The settings a process runs with: defaults for unset or empty variables, every value checked. */
export function readSettings(env: Record<string, string | undefined>): Settings {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, setting] of Object.entries(SETTINGS) as Array<[keyof Table, Setting<unknown>]>) {
    const raw = env[setting.env];
    if (raw === undefined || raw === '') {
      out[key] = setting.default;
      continue;
    }
    const value = setting.parse(raw);
    if (typeof value === 'object' && value !== null && 'error' in value) problems.push(`${setting.env} must be ${value.error}, got ${JSON.stringify(raw)}`);
    else out[key] = value;
  }
  if (problems.length > 0) throw new SettingsError(problems);
  return out as Settings;
}

/** The default settings (what an empty environment gives). */
export const DEFAULT_SETTINGS: Readonly<Settings> = readSettings({});

/**
 * The settings of an entry point (`server.ts`, `main.ts`, `npm start`): on a bad value it prints
 * every problem and exits with status 2, before anything starts.
 */
export function settingsOrExit(env: Record<string, string | undefined> = process.env): Settings {
  try {
    return readSettings(env);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
}
