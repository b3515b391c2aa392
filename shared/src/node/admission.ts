// Admission: whether the queue and a key can take one more job, decided and recorded in one Lua
// script, so that concurrent submissions — on one API process or on many — never pass a limit.
// A job is reserved here before BullMQ has it; the reservation counts toward the queue's depth
// until BullMQ holds the job (or it lapses, when the submission died between the two). The bytes
// of each job's uploads are counted while the uploads are kept, per key and in all; the worker
// releases them when it deletes the uploads.
import type { Redis } from 'ioredis';
import { DiffIdError, admissionKeys, ownerOpenJobsKey, queueKeys } from '../contract/index.ts';
import type { Settings } from './settings.ts';

/** What a key, and the deployment, may have waiting at once. */
export interface AdmissionLimits {
  maxJobsPerKey: number;
  maxQueuedStepsPerKey: number;
  maxQueueDepth: number;
  /** Uploaded bytes one key's open jobs may hold in Redis. */
  maxInputBytesPerKey: number;
  /** Uploaded bytes all open jobs may hold in Redis. */
  maxInputBytes: number;
}

/** The admission limits the settings set (DIFFID_MAX_JOBS_PER_KEY and its neighbours). */
export function admissionLimits(s: Pick<Settings, 'maxJobsPerKey' | 'maxQueuedStepsPerKey' | 'maxQueueDepth' | 'maxInputMbPerKey' | 'maxInputMb'>): AdmissionLimits {
  return {
    maxJobsPerKey: s.maxJobsPerKey,
    maxQueuedStepsPerKey: s.maxQueuedStepsPerKey,
    maxQueueDepth: s.maxQueueDepth,
    maxInputBytesPerKey: s.maxInputMbPerKey * MB,
    maxInputBytes: s.maxInputMb * MB,
  };
}

/** One job's claim: its id, owner (null without API keys), planned U-Net steps and upload bytes. */
export interface Claim {
  id: string;
  owner: string | null;
  steps: number;
  bytes: number;
}

/** How long a reservation waits for BullMQ to hold its job; a submission takes milliseconds. */
const RESERVATION_MS = 60_000;

// Frees a job's counted upload bytes (local to both scripts).
const RELEASE_BYTES = `
local function releaseBytes(bytesKey, totalKey, expiryKey, id)
  local b = redis.call('HGET', bytesKey, id)
  if b then
    redis.call('DECRBY', totalKey, b)
    redis.call('HDEL', bytesKey, id)
  end
  redis.call('ZREM', expiryKey, id)
end
`;

// KEYS: 1 wait, 2 paused, 3 active, 4 delayed, 5 prioritized, 6 waiting-children (BullMQ's),
//       7 pending, 8 input bytes, 9 input bytes total, 10 input expiry, 11 the owner's jobs
// ARGV: 1 id, 2 steps, 3 bytes, 4 now, 5 reservation lapses at, 6 uploads expire at,
//       7 max depth, 8 max jobs per key, 9 max steps per key, 10 max bytes per key,
//       11 max bytes, 12 BullMQ job-hash prefix, 13 '1' when the job has an owner
// Returns {verdict, figure}: OK, QUEUE_FULL (depth), STORAGE_FULL (bytes held in all),
// KEY_JOBS (jobs), KEY_STEPS (steps) or KEY_BYTES (bytes) for the key.
const RESERVE = `${RELEASE_BYTES}
local id, jobPrefix = ARGV[1], ARGV[12]
local steps, bytes, now = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now)
for _, p in ipairs(redis.call('ZRANGE', KEYS[7], 0, -1)) do
  if redis.call('EXISTS', jobPrefix .. p) == 1 then redis.call('ZREM', KEYS[7], p) end
end
local depth = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2]) + redis.call('LLEN', KEYS[3])
  + redis.call('ZCARD', KEYS[4]) + redis.call('ZCARD', KEYS[5]) + redis.call('ZCARD', KEYS[6])
  + redis.call('ZCARD', KEYS[7])
if depth >= tonumber(ARGV[7]) then return {'QUEUE_FULL', depth} end
for _, e in ipairs(redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', now, 'LIMIT', 0, 1000)) do
  releaseBytes(KEYS[8], KEYS[9], KEYS[10], e)
end
local held = tonumber(redis.call('GET', KEYS[9]) or '0')
if held + bytes > tonumber(ARGV[11]) then return {'STORAGE_FULL', held} end
if ARGV[13] == '1' then
  local jobs, keySteps, keyBytes = 0, 0, 0
  local entries = redis.call('HGETALL', KEYS[11])
  for i = 1, #entries, 2 do
    local j = entries[i]
    local open = redis.call('ZSCORE', KEYS[7], j)
      or (redis.call('EXISTS', jobPrefix .. j) == 1 and redis.call('HEXISTS', jobPrefix .. j, 'finishedOn') == 0)
    if open then
      local s, b = string.match(entries[i + 1], '^(%d+) (%d+)$')
      jobs = jobs + 1
      keySteps = keySteps + tonumber(s)
      keyBytes = keyBytes + tonumber(b)
    else
      redis.call('HDEL', KEYS[11], j)
    end
  end
  if jobs >= tonumber(ARGV[8]) then return {'KEY_JOBS', jobs} end
  if keySteps + steps > tonumber(ARGV[9]) then return {'KEY_STEPS', keySteps} end
  if keyBytes + bytes > tonumber(ARGV[10]) then return {'KEY_BYTES', keyBytes} end
  redis.call('HSET', KEYS[11], id, ARGV[2] .. ' ' .. ARGV[3])
end
redis.call('ZADD', KEYS[7], ARGV[5], id)
redis.call('HSET', KEYS[8], id, ARGV[3])
redis.call('INCRBY', KEYS[9], ARGV[3])
redis.call('ZADD', KEYS[10], ARGV[6], id)
return {'OK', 0}
`;

// KEYS: 1 pending, 2 input bytes, 3 input bytes total, 4 input expiry, 5 the owner's jobs
// ARGV: 1 id, 2 '1' to withdraw the whole reservation (the job never reached BullMQ),
//       3 '1' when the job has an owner
const RELEASE = `${RELEASE_BYTES}
releaseBytes(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
if ARGV[2] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  if ARGV[3] == '1' then redis.call('HDEL', KEYS[5], ARGV[1]) end
end
return 1
`;

/** The unit of the upload-byte settings (DIFFID_MAX_INPUT_MB…), in bytes. */
export const MB = 1024 * 1024;
const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

/** Admission for one queue: reserve before enqueueing, confirm after, release when done. */
export interface Admission {
  /** Reserves room for `claim` or throws the limit's catalogue error; nothing is held on a throw. */
  reserve(claim: Claim): Promise<void>;
  /** BullMQ holds the job now: its reservation stops counting apart from it. */
  confirm(id: string): Promise<void>;
  /** The job never reached BullMQ: everything `reserve` held is given back. */
  withdraw(claim: Pick<Claim, 'id' | 'owner'>): Promise<void>;
  /** The job's uploads were deleted (it finished or was canceled): their bytes stop counting. */
  releaseInputs(id: string): Promise<void>;
}

/**
 * Admission on `redis` for the queue `queueName` under `prefix`. `limits` left out: nothing is
 * refused, only upload bytes are released (the worker's use).
 */
export function admission(redis: Redis, prefix: string, queueName: string, limits?: AdmissionLimits, inputTtlSeconds = 0): Admission {
  const a = admissionKeys(prefix);
  const q = queueKeys(prefix, queueName);
  // Without an owner the script is told so and leaves this key alone; it only fills the slot.
  const ownerKey = (owner: string | null) => (owner === null ? a.pending : ownerOpenJobsKey(prefix, owner));
  const release = (id: string, owner: string | null, withdraw: boolean) =>
    redis.eval(RELEASE, 5, a.pending, a.inputBytes, a.inputBytesTotal, a.inputExpiry, ownerKey(owner), id, withdraw ? '1' : '0', owner === null ? '0' : '1');
  return {
    async reserve(claim) {
      if (!limits) return;
      const now = Date.now();
      const [verdict, figure] = (await redis.eval(
        RESERVE,
        11,
        q.wait,
        q.paused,
        q.active,
        q.delayed,
        q.prioritized,
        q.waitingChildren,
        a.pending,
        a.inputBytes,
        a.inputBytesTotal,
        a.inputExpiry,
        ownerKey(claim.owner),
        claim.id,
        claim.steps,
        claim.bytes,
        now,
        now + RESERVATION_MS,
        now + inputTtlSeconds * 1000,
        limits.maxQueueDepth,
        limits.maxJobsPerKey,
        limits.maxQueuedStepsPerKey,
        limits.maxInputBytesPerKey,
        limits.maxInputBytes,
        q.jobPrefix,
        claim.owner === null ? '0' : '1',
      )) as [string, number];
      switch (verdict) {
        case 'OK':
          return;
        case 'QUEUE_FULL':
          throw new DiffIdError('QUEUE_FULL', `the queue holds ${figure} jobs, its limit`, { retryAfterSeconds: 30 });
        case 'STORAGE_FULL':
          throw new DiffIdError('STORAGE_FULL', `queued jobs hold ${mb(figure)} of uploads; with this job's ${mb(claim.bytes)} that passes the limit of ${mb(limits.maxInputBytes)}`, { retryAfterSeconds: 30 });
        case 'KEY_JOBS':
          throw new DiffIdError('TOO_MANY_JOBS', `this key has ${figure} jobs queued or running, its limit; wait for some to finish`, { retryAfterSeconds: 10 });
        case 'KEY_STEPS':
          throw new DiffIdError('TOO_MANY_JOBS', `this key has ${figure} steps of work queued and this job adds ${claim.steps}; its limit is ${limits.maxQueuedStepsPerKey}; wait for some jobs to finish`, { retryAfterSeconds: 10 });
        case 'KEY_BYTES':
          throw new DiffIdError('TOO_MANY_JOBS', `this key's queued jobs hold ${mb(figure)} of uploads and this job adds ${mb(claim.bytes)}; its limit is ${mb(limits.maxInputBytesPerKey)}; wait for some jobs to finish, or send smaller images`, { retryAfterSeconds: 10 });
        default:
          throw new Error(`admission: unexpected verdict ${verdict}`);
      }
    },
    async confirm(id) {
      if (limits) await redis.zrem(a.pending, id);
    },
    async withdraw(claim) {
      await release(claim.id, claim.owner, true);
    },
    async releaseInputs(id) {
      await release(id, null, false);
    },
  };
}
