// Which webhook targets the service will call. A webhook makes the server send requests where a
// client says, so by default it refuses every address that is not on the public internet —
// loopback, private, link-local (cloud metadata at 169.254.169.254), carrier-grade NAT,
// multicast, reserved — unless DIFFID_WEBHOOK_ALLOW lists the host or a CIDR holding the address.
// The check runs at submission (400) and again on every delivery, on the addresses the request
// then connects to, so a name that later resolves elsewhere (DNS rebinding) is refused as well.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { DiffIdError, WEBHOOK_EVENTS, type WebhookEvent, type WebhookTarget } from '@diffid/shared/contract';

/** Where webhooks may not go unless allowed (IANA special-purpose registries). */
const NOT_PUBLIC: Array<[string, number, 'ipv4' | 'ipv6']> = [
  ['0.0.0.0', 8, 'ipv4'],
  ['10.0.0.0', 8, 'ipv4'],
  ['100.64.0.0', 10, 'ipv4'],
  ['127.0.0.0', 8, 'ipv4'],
  ['169.254.0.0', 16, 'ipv4'],
  ['172.16.0.0', 12, 'ipv4'],
  ['192.0.0.0', 24, 'ipv4'],
  ['192.0.2.0', 24, 'ipv4'],
  ['192.168.0.0', 16, 'ipv4'],
  ['198.18.0.0', 15, 'ipv4'],
  ['198.51.100.0', 24, 'ipv4'],
  ['203.0.113.0', 24, 'ipv4'],
  ['224.0.0.0', 3, 'ipv4'],
  ['::', 127, 'ipv6'],
  ['64:ff9b::', 96, 'ipv6'],
  ['100::', 64, 'ipv6'],
  ['2001:db8::', 32, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

export interface WebhookPolicy {
  /** Host names (lower case) allowed whatever they resolve to. */
  hosts: Set<string>;
  /** Addresses allowed although not public. */
  allowed: BlockList;
}

/** Parses DIFFID_WEBHOOK_ALLOW: host names and CIDRs (or single addresses), comma-separated. */
export function webhookPolicy(allow: string | undefined): WebhookPolicy | { error: string } {
  const policy: WebhookPolicy = { hosts: new Set(), allowed: new BlockList() };
  for (const raw of (allow ?? '').split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const [address, bits, extra] = item.split('/');
    const family = isIP(address ?? '');
    if (family !== 0) {
      const type = family === 4 ? 'ipv4' : 'ipv6';
      const max = family === 4 ? 32 : 128;
      const prefix = bits === undefined ? max : /^[0-9]{1,3}$/.test(bits) ? Number(bits) : NaN;
      if (extra !== undefined || !(prefix >= 0 && prefix <= max)) return { error: `"${item}" is not a CIDR (address/0…${max})` };
      policy.allowed.addSubnet(address as string, prefix, type);
    } else if (bits === undefined && item.length <= 253 && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(item)) {
      policy.hosts.add(item.toLowerCase());
    } else {
      return { error: `"${item}" is neither a host name nor a CIDR` };
    }
  }
  return policy;
}

const notPublic = new BlockList();
for (const [address, prefix, type] of NOT_PUBLIC) notPublic.addSubnet(address, prefix, type);

/**
 * IPv4 written inside IPv6 (::ffff:a.b.c.d) is judged as the IPv4 address it is. (Not by a
 * ::ffff:0:0/96 rule: BlockList matches every IPv4 address against that one.)
 */
function unmapped(address: string): { address: string; type: 'ipv4' | 'ipv6' } {
  const dotted = /^::ffff:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/i.exec(address);
  if (dotted) return { address: dotted[1] as string, type: 'ipv4' };
  // URLs normalise ::ffff:127.0.0.1 to ::ffff:7f00:1.
  const hex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/i.exec(address);
  if (hex) {
    const hi = parseInt(hex[1] as string, 16);
    const lo = parseInt(hex[2] as string, 16);
    return { address: `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, type: 'ipv4' };
  }
  return { address, type: isIP(address) === 4 ? 'ipv4' : 'ipv6' };
}

/** Why an address may not be called (null: it may). */
export function refusedAddress(policy: WebhookPolicy, host: string, raw: string): string | null {
  if (policy.hosts.has(host.toLowerCase())) return null;
  const { address, type } = unmapped(raw);
  if (policy.allowed.check(address, type)) return null;
  if (notPublic.check(address, type)) return `${host} is at ${address}, which is not a public address (loopback, private, link-local or reserved); list it in DIFFID_WEBHOOK_ALLOW to allow it`;
  return null;
}

/** Resolves a host the way the delivery will, bounded in time. */
function resolve(host: string, timeoutMs: number): Promise<LookupAddress[]> {
  return new Promise((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs);
    dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => {
      clearTimeout(timer);
      if (err) fail(err);
      else done(addresses);
    });
  });
}

/** Host names in URLs come bracketed when they are IPv6 literals. */
const bare = (hostname: string) => hostname.replace(/^\[(.*)\]$/, '$1');

/**
 * The webhook a request asks for, checked: an http(s) URL without credentials whose host
 * resolves only to addresses the policy allows, and known event names (all of them by default).
 */
export async function checkWebhook(policy: WebhookPolicy, url: string, events: string | undefined): Promise<WebhookTarget> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DiffIdError('WEBHOOK_REFUSED', `"webhook" is not a URL: ${JSON.stringify(url.slice(0, 80))}`);
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') throw new DiffIdError('WEBHOOK_REFUSED', `"webhook" must be an http or https URL, not ${parsed.protocol}`);
  if (parsed.username || parsed.password) throw new DiffIdError('WEBHOOK_REFUSED', '"webhook" must not carry a user name or password; authenticate the request by its signature');
  const host = bare(parsed.hostname);
  const addresses = isIP(host) ? [{ address: host, family: isIP(host) }] : await resolve(host, 3000).catch((err: Error) => {
    throw new DiffIdError('WEBHOOK_REFUSED', `"webhook": ${host} does not resolve (${err.message})`);
  });
  for (const a of addresses) {
    const why = refusedAddress(policy, host, a.address);
    if (why) throw new DiffIdError('WEBHOOK_REFUSED', `"webhook": ${why}`);
  }
  return { url: parsed.toString(), events: webhookEvents(events) };
}

/** Parses webhook_events: comma-separated names from WEBHOOK_EVENTS, each once; all when not given. */
export function webhookEvents(value: string | undefined): WebhookEvent[] {
  if (value === undefined || value.trim() === '') return [...WEBHOOK_EVENTS];
  const out: WebhookEvent[] = [];
  for (const raw of value.split(',')) {
    const name = raw.trim();
    if (!(WEBHOOK_EVENTS as readonly string[]).includes(name)) {
      throw new DiffIdError('VALIDATION', `"webhook_events" lists events from ${WEBHOOK_EVENTS.join(', ')} separated by commas; "${name.slice(0, 20)}" is not one`);
    }
    if (!out.includes(name as WebhookEvent)) out.push(name as WebhookEvent);
  }
  return out;
}

/**
 * A dns.lookup for http.request that connects only to allowed addresses: the same rule at
 * delivery time as at submission, applied to what the name resolves to now.
 */
export function guardedLookup(policy: WebhookPolicy) {
  return (hostname: string, options: { all?: boolean }, callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void): void => {
    const host = bare(hostname);
    dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const refused = addresses.map((a) => refusedAddress(policy, host, a.address)).find((why) => why !== null);
      if (refused) return callback(Object.assign(new Error(refused), { code: 'DIFFID_WEBHOOK_REFUSED' }), '', 0);
      if (options.all) return callback(null, addresses);
      const first = addresses[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}
