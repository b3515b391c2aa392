// API keys and tenants. Keys come from configuration as `tenant:key` entries (optionally
// `tenant:key:requests-per-minute`), are kept only as sha256 digests, and a presented key is
// compared against every digest in constant time. A job belongs to the tenant whose key made it.
import { createHash, timingSafeEqual } from 'node:crypto';

export interface Tenant {
  name: string;
  /** Requests per minute for this key; undefined: the deployment's default. */
  ratePerMinute?: number;
}

/** The configured keys; `identify` answers who presented a header, or null. */
export interface KeyRing {
  readonly size: number;
  identify(authorization: string | undefined): Tenant | null;
}

const TENANT = /^[A-Za-z0-9_.-]{1,64}$/;
const KEY = /^[A-Za-z0-9_.~+/=-]{16,256}$/;
const digest = (key: string) => createHash('sha256').update(key, 'utf8').digest();

/** Parses `tenant:key[:rpm]` entries separated by commas or new lines; `#` starts a comment line. */
export function parseApiKeys(text: string): { tenants: Array<{ tenant: Tenant; digest: Buffer }>; problems: string[] } {
  const tenants: Array<{ tenant: Tenant; digest: Buffer }> = [];
  const problems: string[] = [];
  const entries = text
    .split(/[,\n]/)
    .map((e) => e.trim())
    .filter((e) => e !== '' && !e.startsWith('#'));
  entries.forEach((entry, i) => {
    const [name = '', key = '', rpm, ...rest] = entry.split(':');
    const where = `entry ${i + 1} ("${name}:…")`;
    if (rest.length > 0 || !TENANT.test(name) || !KEY.test(key)) {
      problems.push(`${where}: write tenant:key or tenant:key:requests-per-minute; a tenant is 1–64 letters, digits, _ . -; a key 16–256 characters of A–Z a–z 0–9 _ . ~ + / = -`);
      return;
    }
    let ratePerMinute: number | undefined;
    if (rpm !== undefined) {
      ratePerMinute = /^[0-9]{1,7}$/.test(rpm) ? Number(rpm) : NaN;
      if (!(ratePerMinute >= 1)) problems.push(`${where}: requests per minute must be a whole number ≥ 1`);
    }
    if (tenants.some((t) => t.digest.equals(digest(key)))) problems.push(`${where}: the same key is given twice`);
    tenants.push({ tenant: { name, ...(ratePerMinute ? { ratePerMinute } : {}) }, digest: digest(key) });
  });
  return { tenants, problems };
}

/** A key ring over parsed entries. */
export function keyRing(tenants: Array<{ tenant: Tenant; digest: Buffer }>): KeyRing {
  return {
    size: tenants.length,
    identify(authorization) {
      const m = /^Bearer ([^\s]{1,512})$/.exec(authorization ?? '');
      if (!m) return null;
      const presented = digest(m[1] as string);
      // Every digest is compared, whatever matched, so the time says nothing about which did.
      let found: Tenant | null = null;
      for (const t of tenants) if (timingSafeEqual(t.digest, presented)) found = t.tenant;
      return found;
    },
  };
}
