// Batches (POST /batches): many jobs of one kind, settled up front, stored as specs in Redis, and
// queued in waves by a feeder that every API process runs — as many at a time as the key's job
// limits admit, so that a batch of thousands never meets a 429 midway. Their counts live in the
// batch's ledger (@diffid/shared/batch-ledger), which the workers keep as jobs start and end;
// their outputs stream out as one zip with a manifest (results).
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Redis } from 'ioredis';
import yazl from 'yazl';
import { batchLedger, type BatchLedger } from '@diffid/shared/batch-ledger';
import { csvRow } from '@diffid/shared/csv';
import {
  DiffIdError,
  batchJobId,
  batchKeys,
  feedingBatchesKey,
  ownerBatchesKey,
  webhookQueueName,
  type DeliveryQueue,
  type GenerateParams,
  type MorphParams,
  type Priority,
  type BatchView,
} from '@diffid/shared/contract';
import { Queue } from 'bullmq';
import type { JobService, Owner } from './job-service.ts';
import type { JobView } from './job-view.ts';

export type BatchKind = BatchView['kind'];

/** What the manifest says of a job besides its parameters and results: whose faces, which prompt. */
export interface ManifestFacts {
  identity_a?: string;
  name_a?: string | null;
  identity_b?: string;
  name_b?: string | null;
  prompt?: string;
}

/** One job of a batch: its settled parameters and its manifest facts. */
export interface BatchSpec {
  params: GenerateParams | MorphParams;
  facts: ManifestFacts;
}

export interface BatchServiceOptions {
  redis: Redis;
  prefix: string;
  queueName: string;
  jobs: JobService;
  /** How long a batch's record is kept: as long as its jobs can be (uploads' plus results' TTL). */
  ttlSeconds: number;
  /** Jobs a key's open batches may hold in all (DIFFID_MAX_BATCHED_JOBS_PER_KEY). */
  maxJobsPerKey: number;
  /** How often the feeder looks for room for the next wave. */
  feedIntervalMs?: number;
  log?: (event: string, fields: Record<string, unknown>) => void;
}

export interface BatchService {
  /** Refuses a batch of more jobs than a key's open batches may hold at all, before any work on it. */
  checkSize(jobs: number): void;
  /** Stores the batch within the key's limit and queues its first wave. */
  create(input: { owner: Owner; kind: BatchKind; priority: Priority; webhook?: string; specs: BatchSpec[] }): Promise<BatchView>;
  /** The batch if `owner` may see it; null otherwise (another key's batch is no batch). */
  view(id: string, owner: Owner): Promise<BatchView | null>;
  /** Drops what is not queued, cancels what is queued; running jobs finish. */
  cancel(id: string, owner: Owner): Promise<BatchView>;
  /** The batch's outputs so far as a zip stream with manifest.csv; null when `owner` has no such batch. */
  results(id: string, owner: Owner): Promise<Readable | null>;
  /** One pass of the feeder over every batch with jobs still to queue. */
  feed(): Promise<void>;
  close(): Promise<void>;
}

/** The answer to a batch id that is not the key's (or has expired). */
export const notFound = (id: string) => new DiffIdError('BATCH_NOT_FOUND', `no batch ${id} for this key; it may have expired`);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** How long a feeder holds a batch; a wave takes milliseconds per job. */
const FEED_LOCK_MS = 30_000;
/** How often an API process with no batch to feed looks for one made elsewhere. */
const IDLE_MS = 15_000;
/** Jobs one feeder pass queues of one batch before it lets the next batch have a turn. */
const WAVE_MAX = 500;
/** The limits that mean "no room now, later": the wave stops there and the next pass goes on. */
const NO_ROOM = new Set(['TOO_MANY_JOBS', 'QUEUE_FULL', 'STORAGE_FULL']);
/** Specs are written and read this many at a time. */
const CHUNK = 100;

// KEYS: 1 record, 2 specs, 3 the owner's open batches, 4 feeding batches
// ARGV: 1 id, 2 jobs, 3 max jobs per key, 4 ttl s, 5 record key prefix, then field, value pairs
// Returns -1 when admitted, else the jobs the key's open batches hold.
const CREATE = `
local jobs, max = tonumber(ARGV[2]), tonumber(ARGV[3])
local held = 0
for _, b in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  local r = ARGV[5] .. b
  local f = redis.call('HMGET', r, 'jobs', 'dropped', 'ended_at')
  if not f[1] or f[3] then
    redis.call('SREM', KEYS[3], b)
  else
    held = held + tonumber(f[1]) - tonumber(f[2] or '0') - redis.call('SCARD', r .. ':ended')
  end
end
if held + jobs > max then return held end
local fields = {}
for i = 6, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
return -1
`;

// KEYS: 1 record, 2 feeding batches, 3 specs; ARGV: 1 id, 2 ttl s
// The next job to queue: {index, 0}; {index, 1} for a job chosen before the batch was canceled
// (by a feeder that died before it could tell); {-1, 0} when none is left. A batch still being
// fed keeps its keys for another ttl: a long backlog does not outlive its record.
const CLAIM = `
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
end
local c = redis.call('HGET', KEYS[1], 'claiming')
local canceled = redis.call('HEXISTS', KEYS[1], 'canceled_at') == 1
if c then
  if canceled then redis.call('HDEL', KEYS[1], 'claiming') return {tonumber(c), 1} end
  return {tonumber(c), 0}
end
if canceled or redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[1]) return {-1, 0} end
local s = tonumber(redis.call('HGET', KEYS[1], 'submitted') or '0')
if s >= tonumber(redis.call('HGET', KEYS[1], 'jobs')) then redis.call('SREM', KEYS[2], ARGV[1]) return {-1, 0} end
redis.call('HSET', KEYS[1], 'submitted', s + 1, 'claiming', s)
return {s, 0}
`;

// KEYS: 1 record; the claimed job was not queued. Returns 1 when the batch was canceled
// meanwhile (the job then counts as canceled), else gives the job back.
const UNCLAIM = `
redis.call('HDEL', KEYS[1], 'claiming')
if redis.call('HEXISTS', KEYS[1], 'canceled_at') == 1 then return 1 end
redis.call('HINCRBY', KEYS[1], 'submitted', -1)
return 0
`;

// KEYS: 1 lock; ARGV: 1 token. Releases the lock if it is still this holder's.
const UNLOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

const MANIFEST_COLUMNS = ['job', 'index', 'status', 'identity_a', 'name_a', 'identity_b', 'name_b', 'prompt', 'alpha', 'strategy', 'seed', 'similarity_a', 'similarity_b', 'similarity', 'file'] as const;
type ManifestRow = Partial<Record<(typeof MANIFEST_COLUMNS)[number], string | number | null>>;

const csvLine = (row: ManifestRow) => csvRow(MANIFEST_COLUMNS.map((c) => row[c]));

interface BatchRecord {
  owner: string;
  kind: BatchKind;
  jobs: number;
  priority: Priority;
  webhook?: string;
  created_at: string;
  submitted: number;
  running: number;
  succeeded: number;
  failed: number;
  canceled: number;
  dropped: number;
  canceled_at?: string;
  ended_at?: string;
}

function parseRecord(raw: Record<string, string>): BatchRecord | null {
  if (!raw.kind || !raw.jobs) return null;
  const n = (name: string) => Number(raw[name] ?? 0);
  return {
    owner: raw.owner ?? '',
    kind: raw.kind as BatchKind,
    jobs: n('jobs'),
    priority: (raw.priority ?? 'low') as Priority,
    ...(raw.webhook ? { webhook: raw.webhook } : {}),
    created_at: raw.created_at ?? '',
    submitted: n('submitted'),
    running: n('running'),
    succeeded: n('succeeded'),
    failed: n('failed'),
    canceled: n('canceled'),
    dropped: n('dropped'),
    ...(raw.canceled_at ? { canceled_at: raw.canceled_at } : {}),
    ...(raw.ended_at ? { ended_at: raw.ended_at } : {}),
  };
}

/** The public view of a batch from its record and how many of its jobs have ended. */
export function batchView(id: string, r: BatchRecord, ended: number, now = Date.now()): BatchView {
  const running = Math.max(0, r.running);
  const counts = {
    pending: Math.max(0, r.jobs - r.submitted - r.dropped),
    queued: Math.max(0, r.submitted - ended - running),
    running,
    succeeded: r.succeeded,
    failed: r.failed,
    canceled: r.canceled,
  };
  const done = ended + r.dropped;
  const status = r.ended_at ? (r.canceled_at ? 'canceled' : 'completed') : r.canceled_at ? 'canceling' : 'running';
  const view: BatchView = {
    id,
    kind: r.kind,
    status,
    jobs: r.jobs,
    counts,
    progress: r.jobs > 0 ? Math.min(1, done / r.jobs) : 1,
    admission: 'waves',
    priority: r.priority,
    created_at: r.created_at,
    ended_at: r.ended_at ?? null,
    links: { self: `/batches/${id}`, jobs: `/jobs?batch=${id}`, results: `/batches/${id}/results.zip` },
  };
  // The pace the batch has kept: its time so far over the jobs that have ended.
  const elapsed = now - Date.parse(r.created_at);
  if (!r.ended_at && ended > 0 && elapsed > 0) view.eta_s = Math.round(((r.jobs - done) * elapsed) / ended / 1000);
  return view;
}

export function createBatchService(options: BatchServiceOptions): BatchService {
  const { redis, prefix, jobs } = options;
  const log = options.log ?? (() => {});
  // The deliveries queue and the ledger, made when a batch first needs them: a BullMQ Queue talks to
  // Redis as it starts, and most API processes may never see a batch.
  let webhooks: Queue | null = null;
  let ledgerOf: BatchLedger | null = null;
  const ledger = (): BatchLedger => {
    webhooks ??= new Queue(webhookQueueName(options.queueName), { connection: redis, prefix });
    return (ledgerOf ??= batchLedger(redis, prefix, webhooks as unknown as DeliveryQueue));
  };

  const readRecord = async (id: string, owner: Owner): Promise<BatchRecord | null> => {
    if (!UUID.test(id)) return null;
    const r = parseRecord(await redis.hgetall(batchKeys(prefix, id).record));
    return r && (r.owner || null) === owner ? r : null;
  };
  const view = async (id: string, owner: Owner): Promise<BatchView | null> => {
    const r = await readRecord(id, owner);
    return r ? batchView(id, r, await redis.scard(batchKeys(prefix, id).ended)) : null;
  };

  /** Holds a batch's feeding lock while `fn` runs; false (fn not run) when another holds it. */
  const withLock = async (id: string, fn: () => Promise<void>, waitMs = 0): Promise<boolean> => {
    const lock = batchKeys(prefix, id).feeding;
    const token = randomBytes(12).toString('hex');
    const until = Date.now() + waitMs;
    while ((await redis.set(lock, token, 'PX', FEED_LOCK_MS, 'NX')) !== 'OK') {
      if (Date.now() >= until) return false;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    try {
      await fn();
    } finally {
      await redis.eval(UNLOCK, 1, lock, token).catch(() => 0);
    }
    return true;
  };

  /** Queues the batch's next jobs until the key's limits leave no room, or WAVE_MAX of them. */
  const wave = async (id: string): Promise<void> => {
    const k = batchKeys(prefix, id);
    const [owner, kind] = await redis.hmget(k.record, 'owner', 'kind');
    if (!kind) {
      await redis.srem(feedingBatchesKey(prefix), id);
      return;
    }
    for (let n = 0; n < WAVE_MAX; n++) {
      const [index, stale] = (await redis.eval(CLAIM, 3, k.record, feedingBatchesKey(prefix), k.specs, id, options.ttlSeconds)) as [number, number];
      if (index < 0) return;
      const jobId = batchJobId(id, index);
      if (stale === 1) {
        // Chosen by a feeder that died; the batch has been canceled since.
        if (await jobs.view(jobId, owner || null)) await jobs.cancel(jobId, owner || null).catch(() => undefined);
        else await ledger().record({ batch: { id, index } }, jobId, 'canceled');
        continue;
      }
      const spec = JSON.parse((await redis.lindex(k.specs, index)) ?? 'null') as BatchSpec | null;
      try {
        if (!spec) throw new Error(`batch ${id} has no spec ${index}`);
        await jobs.submit(kind as BatchKind, spec.params as never, {}, owner || null, undefined, { id, index });
        await redis.hdel(k.record, 'claiming');
      } catch (err) {
        // A failure after BullMQ took the job (its listing, say) leaves it queued: keep it so.
        if (await jobs.view(jobId, owner || null).catch(() => null)) {
          await redis.multi().zadd(k.jobs, Date.now(), jobId).expire(k.jobs, options.ttlSeconds).hdel(k.record, 'claiming').exec();
          log('batch_job_listed_late', { batch: id, index, err: (err as Error).message });
          return;
        }
        if ((await redis.eval(UNCLAIM, 1, k.record)) === 1) await ledger().record({ batch: { id, index } }, jobId, 'canceled');
        if (!(err instanceof DiffIdError && NO_ROOM.has(err.key))) log('batch_wave_stopped', { batch: id, index, err: (err as Error).message });
        return;
      }
    }
  };

  // The feeder looks every feedIntervalMs while there are batches to feed, else every IDLE_MS: a
  // batch made here starts it at once, one made on another API process is seen within IDLE_MS
  // (its own process feeds it meanwhile), and an idle service hardly talks to Redis.
  let feeding: Promise<void> | null = null;
  let busy = false;
  const feed = async (): Promise<void> => {
    // One pass at a time on this process; other processes' passes meet the per-batch lock.
    if (feeding) return feeding;
    feeding = (async () => {
      const ids = await redis.smembers(feedingBatchesKey(prefix));
      busy = ids.length > 0;
      for (const id of ids) {
        await withLock(id, () => wave(id)).catch((err: Error) => log('batch_feed_failed', { batch: id, err: err.message }));
      }
    })().finally(() => {
      feeding = null;
    });
    return feeding;
  };
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  const schedule = (ms: number) => {
    if (closed) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      feed()
        .catch((err: Error) => log('batch_feed_failed', { err: err.message }))
        .finally(() => schedule(busy ? (options.feedIntervalMs ?? 1000) : IDLE_MS));
    }, ms);
    timer.unref();
  };
  schedule(IDLE_MS);

  const tooMany = (jobs: number, held: number) =>
    new DiffIdError(
      'TOO_MANY_JOBS',
      `this batch's ${jobs} jobs and the ${held} that this key's open batches hold would pass its limit of ${options.maxJobsPerKey} (DIFFID_MAX_BATCHED_JOBS_PER_KEY); wait for a batch to end, or send a smaller one`,
      { retryAfterSeconds: 60 },
    );

  return {
    checkSize(jobs) {
      if (jobs > options.maxJobsPerKey) throw tooMany(jobs, 0);
    },

    async create({ owner, kind, priority, webhook, specs }) {
      const id = randomUUID();
      const k = batchKeys(prefix, id);
      // With a TTL from the first chunk: a request that dies halfway leaves nothing for ever.
      for (let i = 0; i < specs.length; i += CHUNK) {
        await redis.multi().rpush(k.specs, ...specs.slice(i, i + CHUNK).map((s) => JSON.stringify(s))).expire(k.specs, options.ttlSeconds).exec();
      }
      const fields = { owner: owner ?? '', kind, jobs: specs.length, priority, created_at: new Date().toISOString(), submitted: 0, ...(webhook ? { webhook } : {}) };
      const held = (await redis.eval(
        CREATE,
        4,
        k.record,
        k.specs,
        ownerBatchesKey(prefix, owner),
        feedingBatchesKey(prefix),
        id,
        specs.length,
        options.maxJobsPerKey,
        options.ttlSeconds,
        `${prefix}:batch:`,
        ...Object.entries(fields).flat(),
      )) as number;
      if (held >= 0) {
        await redis.del(k.specs);
        throw tooMany(specs.length, held);
      }
      // The first wave now, so that the answer already counts it; the next ones at the feeder's pace.
      await withLock(id, () => wave(id), 2000);
      busy = true;
      schedule(options.feedIntervalMs ?? 1000);
      return (await view(id, owner)) as BatchView;
    },

    view,

    async cancel(id, owner) {
      const before = await view(id, owner);
      if (!before) throw notFound(id);
      if (before.ended_at) return before;
      await ledger().cancel(id);
      // With the feeding lock, no wave is halfway through queueing a job: every queued job is listed.
      const sweep = async () => {
        const listed = await redis.zrange(batchKeys(prefix, id).jobs, 0, -1);
        for (const jobId of listed) {
          const v = await jobs.view(jobId, owner);
          if (v?.status === 'queued') await jobs.cancel(jobId, owner).catch(() => undefined);
        }
      };
      // A feeder that held the lock past its expiry would keep it from us: sweep anyway.
      if (!(await withLock(id, sweep, FEED_LOCK_MS))) await sweep();
      return (await view(id, owner)) as BatchView;
    },

    async results(id, owner) {
      const r = await readRecord(id, owner);
      if (!r) return null;
      const zip = new yazl.ZipFile();
      const out = zip.outputStream as Readable;
      // An image that cannot be read (Redis gone) ends the download with an error, not the process.
      zip.on('error', (err: Error) => {
        log('batch_results_failed', { batch: id, err: err.message });
        out.destroy(err);
      });
      let gone = false;
      const closed = new Promise<void>((resolve) => {
        out.once('close', () => {
          gone = true;
          resolve();
        });
      });
      const write = async () => {
        const k = batchKeys(prefix, id);
        const manifest: string[] = [csvLine(Object.fromEntries(MANIFEST_COLUMNS.map((c) => [c, c])) as ManifestRow)];
        const submitted = Number((await redis.hget(k.record, 'submitted')) ?? 0);
        for (let start = 0; start < r.jobs && !gone; start += CHUNK) {
          const specs = (await redis.lrange(k.specs, start, start + CHUNK - 1)).map((s) => JSON.parse(s) as BatchSpec);
          // The zip reads each image when its turn comes; the next chunk waits for this one's last.
          let last: Promise<void> = Promise.resolve();
          for (const [offset, spec] of specs.entries()) {
            const index = start + offset;
            const jobId = batchJobId(id, index);
            const base = { job: jobId, index, ...spec.facts, strategy: 'strategy' in spec.params ? spec.params.strategy : null, seed: spec.params.seed } satisfies ManifestRow;
            const v: JobView | null = index < submitted ? await jobs.view(jobId, owner) : null;
            if (!v) {
              manifest.push(csvLine({ ...base, status: index < submitted ? 'expired' : r.canceled_at ? 'canceled' : 'pending' }));
              continue;
            }
            const images = v.status === 'succeeded' ? (v.result?.images ?? []) : [];
            if (images.length === 0) manifest.push(csvLine({ ...base, status: v.status }));
            for (const [n, image] of images.entries()) {
              const file = `images/${String(index).padStart(5, '0')}-${n}.png`;
              manifest.push(
                csvLine({
                  ...base,
                  status: v.status,
                  alpha: image.alpha ?? null,
                  seed: image.seed,
                  similarity_a: image.arcface_similarity_a ?? null,
                  similarity_b: image.arcface_similarity_b ?? null,
                  similarity: image.arcface_similarity ?? null,
                  file,
                }),
              );
              last = new Promise<void>((taken) => {
                zip.addReadStreamLazy(file, { compress: false, mtime: new Date(v.finished_at ?? r.created_at) }, (cb) => {
                  taken();
                  jobs.image(jobId, n, owner).then(
                    (png) => cb(null, Readable.from(png ? [png] : [])),
                    (err: Error) => cb(err, undefined as never),
                  );
                });
              });
            }
          }
          await Promise.race([last, closed]);
        }
        zip.addBuffer(Buffer.from(manifest.join('')), 'manifest.csv', { mtime: new Date(r.created_at) });
        zip.end();
      };
      write().catch((err: Error) => {
        log('batch_results_failed', { batch: id, err: err.message });
        out.destroy(err);
      });
      return out;
    },

    feed,

    async close() {
      closed = true;
      if (timer) clearTimeout(timer);
      await feeding;
      await webhooks?.close();
    },
  };
}
