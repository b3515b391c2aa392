// Stored identities (POST /identities) as the API keeps them: a record (JSON) and the photos as
// uploaded, under identityKeys, all expiring together DIFFID_IDENTITY_TTL_SECONDS after creation;
// and, per tenant, a sorted set of its identities by expiry (listing, the per-key limits) with a
// hash of their bytes. Every change that must hold against a concurrent one is one Lua script:
// the limits are checked and taken together, and delete removes every key the identity has,
// the cached latents a worker may be adding included.

import type { Redis } from 'ioredis';
import { DiffIdError, identityKeys, ownerIdentitiesKey, type InputFaces, type ResultWarning } from '@diffid/shared/contract';
import type { StoredIdentity } from '@diffid/shared/job-params';
import type { Owner } from './job-service.ts';
import { cursorAt, parseCursor, sortedPage } from './sorted-pages.ts';

export interface IdentityLimits {
  /** Identities one key may have at once. */
  maxPerKey: number;
  /** Bytes of photos one key's identities may hold together. */
  maxBytesPerKey: number;
}

export interface IdentityServiceOptions {
  redis: Redis;
  prefix: string;
  ttlSeconds: number;
  limits: IdentityLimits;
}

/** An identity as stored: what GET /identities/{id} shows, and who owns it. */
export interface IdentityRecord {
  id: string;
  /** The tenant whose key made it; absent without API keys. */
  owner?: string;
  name: string | null;
  status: 'pending' | 'ready';
  photos: number;
  face_index?: number[];
  faces: InputFaces[];
  warnings: ResultWarning[];
  created_at: string;
  expires_at: string;
  /** The job that checks the photos, until it is done. */
  check?: string;
}

/** The public view of an identity (openapi.yaml's Identity). */
export type IdentityView = Omit<IdentityRecord, 'owner' | 'face_index' | 'check'>;

export interface IdentityService {
  /** Stores the photos and a pending record, within the key's limits. */
  create(input: { id: string; owner: Owner; name?: string; face_index?: number[]; photos: Buffer[] }): Promise<IdentityRecord>;
  /** The identity if `owner` may see it; null otherwise (another key's identity is no identity). */
  get(id: string, owner: Owner): Promise<IdentityRecord | null>;
  /** Notes the job that checks the identity. */
  setCheck(id: string, job: string): Promise<void>;
  /** A page of the owner's identities, soonest to expire first. */
  list(owner: Owner, cursor: string | undefined, limit: number): Promise<{ identities: IdentityRecord[]; next_cursor: string | null }>;
  /** Deletes every key of the identity; false when `owner` has no such identity. */
  remove(id: string, owner: Owner): Promise<boolean>;
  /** The identity as a job's input, ready, for settleJob; throws IDENTITY_NOT_FOUND or IDENTITY_NOT_READY. */
  forJob(id: string, owner: Owner): Promise<StoredIdentity>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The public view of a record. */
export function identityView(r: IdentityRecord): IdentityView {
  return { id: r.id, name: r.name, status: r.status, photos: r.photos, faces: r.faces, warnings: r.warnings, created_at: r.created_at, expires_at: r.expires_at };
}

export const notFound = (id: string) => new DiffIdError('IDENTITY_NOT_FOUND', `no identity ${id.slice(0, 64)} for this key; it may have expired or been deleted (GET /identities lists them)`);

// KEYS: owner's sorted set, owner's bytes hash. ARGV: now ms, expiry ms, id, bytes, max count,
// max bytes. Drops the owner's expired identities, then admits the new one if both limits hold.
const RESERVE = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(expired) do redis.call('HDEL', KEYS[2], id) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[5]) then return 'count' end
local total = 0
for _, b in ipairs(redis.call('HVALS', KEYS[2])) do total = total + tonumber(b) end
if total + tonumber(ARGV[4]) > tonumber(ARGV[6]) then return 'bytes' end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
redis.call('PEXPIREAT', KEYS[1], ARGV[2])
redis.call('PEXPIREAT', KEYS[2], ARGV[2])
return 'ok'`;

// KEYS: the record, the owner's sorted set, the owner's bytes hash. ARGV: owner ('' for none), id.
// Deletes the record, its photos, its cached latents and their set, if the owner is its owner.
const REMOVE = `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local r = cjson.decode(raw)
local owner = r.owner
if type(owner) ~= 'string' then owner = '' end
if owner ~= ARGV[1] then return 0 end
local set = KEYS[1] .. ':inverted'
for _, c in ipairs(redis.call('SMEMBERS', set)) do redis.call('DEL', set .. ':' .. c) end
redis.call('DEL', set)
for i = 0, r.photos - 1 do redis.call('DEL', KEYS[1] .. ':photo:' .. i) end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[2])
return 1`;

// KEYS: the record. ARGV: the check's job id. Keeps the expiry.
const SET_CHECK = `
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local r = cjson.decode(raw)
r.check = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(r), 'KEEPTTL')
return 1`;

export function createIdentityService(options: IdentityServiceOptions): IdentityService {
  const { redis, prefix } = options;
  const bytesKey = (owner: Owner) => `${ownerIdentitiesKey(prefix, owner)}:bytes`;
  const parse = (raw: string | null): IdentityRecord | null => {
    if (!raw) return null;
    const r = JSON.parse(raw) as IdentityRecord;
    // cjson writes an empty list as {}: a record the worker marked ready may carry one.
    return { ...r, faces: Array.isArray(r.faces) ? r.faces : [], warnings: Array.isArray(r.warnings) ? r.warnings : [] };
  };
  const get = async (id: string, owner: Owner) => {
    if (!UUID.test(id)) return null;
    const r = parse(await redis.get(identityKeys(prefix, id).record));
    return r && (r.owner ?? null) === owner ? r : null;
  };

  return {
    async create({ id, owner, name, face_index, photos }) {
      const now = Date.now();
      const expires = now + options.ttlSeconds * 1000;
      const bytes = photos.reduce((n, p) => n + p.length, 0);
      const verdict = await redis.eval(RESERVE, 2, ownerIdentitiesKey(prefix, owner), bytesKey(owner), now, expires, id, bytes, options.limits.maxPerKey, options.limits.maxBytesPerKey);
      if (verdict === 'count') throw new DiffIdError('TOO_MANY_IDENTITIES', `this key has ${options.limits.maxPerKey} stored identities, as many as it may; delete one (DELETE /identities/{id}) or wait for one to expire`);
      if (verdict === 'bytes') throw new DiffIdError('TOO_MANY_IDENTITIES', `this key's identities would hold more than ${Math.round(options.limits.maxBytesPerKey / 2 ** 20)} MB of photos; delete one, or store smaller photos`);
      const record: IdentityRecord = {
        id,
        ...(owner === null ? {} : { owner }),
        name: name ?? null,
        status: 'pending',
        photos: photos.length,
        ...(face_index ? { face_index } : {}),
        faces: [],
        warnings: [],
        created_at: new Date(now).toISOString(),
        expires_at: new Date(expires).toISOString(),
      };
      const keys = identityKeys(prefix, id);
      const tx = redis.multi();
      photos.forEach((p, i) => tx.set(keys.photo(i), p, 'PXAT', expires));
      tx.set(keys.record, JSON.stringify(record), 'PXAT', expires);
      const replies = (await tx.exec()) ?? [];
      const failed = replies.find(([err]) => err);
      if (failed) {
        await redis.eval(REMOVE, 3, keys.record, ownerIdentitiesKey(prefix, owner), bytesKey(owner), owner ?? '', id).catch(() => undefined);
        throw failed[0];
      }
      return record;
    },

    get,

    async setCheck(id, job) {
      await redis.eval(SET_CHECK, 1, identityKeys(prefix, id).record, job);
    },

    async list(owner, cursor, limit) {
      // Expired ones are left out (the floor); one more than a page says whether another follows.
      const entries = await sortedPage(redis, ownerIdentitiesKey(prefix, owner), { cursor: parseCursor(cursor), count: limit + 1, descending: false, floor: Date.now() });
      const page = entries.slice(0, limit);
      const records = page.length ? await redis.mget(...page.map((e) => identityKeys(prefix, e.id).record)) : [];
      const identities = records.map(parse).filter((r): r is IdentityRecord => r !== null && (r.owner ?? null) === owner);
      const last = page.at(-1);
      return { identities, next_cursor: entries.length > limit && last ? cursorAt(last) : null };
    },

    async remove(id, owner) {
      if (!UUID.test(id)) return false;
      return (await redis.eval(REMOVE, 3, identityKeys(prefix, id).record, ownerIdentitiesKey(prefix, owner), bytesKey(owner), owner ?? '', id)) === 1;
    },

    async forJob(id, owner) {
      const r = await get(id, owner);
      if (!r) throw notFound(id);
      if (r.status !== 'ready') throw new DiffIdError('IDENTITY_NOT_READY', `identity ${id} is still being checked; GET /identities/${id} says when it is ready`, { retryAfterSeconds: 2 });
      return { id, photos: r.photos, ...(r.face_index ? { face_index: r.face_index } : {}) };
    },
  };
}
