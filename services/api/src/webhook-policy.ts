// Which webhook targets the service will call. A webhook makes the server send requests where a
// client says, so by default it refuses every address that is not on the public internet —
// loopback, private, link-local (cloud metadata at 169.254.169.254), carrier-grade NAT,
// multicast, reserved — unless DIFFID_WEBHOOK_ALLOW lists the host or a CIDR holding the address,
// with the port (an entry without one admits every port, Redis's included).
// The check runs at submission (400) and again on every delivery, on the addresses the request
// then connects to, so a name that later resolves elsewhere (DNS rebinding) is refused as well.
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { DiffIdError, WEBHOOK_EVENTS, type WebhookEvent, type WebhookTarget } from '@diffid/shared/contract';

/**
 * Where webhooks may not go unless allowed (IANA special-purpose registries). IPv6 forms that
 * carry an IPv4 address (mapped, compatible, translated, NAT64's well-known prefix, 6to4) are
 * judged as that IPv4 address instead (embeddedIpv4).
 */
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
  ['64:ff9b:1::', 48, 'ipv6'],
  ['100::', 64, 'ipv6'],
  ['2001::', 23, 'ipv6'],
  ['2001:db8::', 32, 'ipv6'],
  ['fc00::', 7, 'ipv6'],
  ['fe80::', 10, 'ipv6'],
  ['ff00::', 8, 'ipv6'],
];

/** The ports an entry of DIFFID_WEBHOOK_ALLOW admits; null: every port. */
type Ports = Set<number> | null;

export interface WebhookPolicy {
  /** Host names (lower case) allowed whatever they resolve to, with their ports. */
  hosts: Map<string, Ports>;
  /** Address ranges allowed although not public, each with its ports. */
  ranges: Array<{ list: BlockList; ports: Ports }>;
  /** Entries that name no port, and so admit every port of their hosts (a warning at start). */
  everyPort: string[];
}

const admits = (ports: Ports, port: number) => ports === null || ports.has(port);
/** Adds `port` (undefined: every port) to what an entry admits. */
const widen = (ports: Ports | undefined, port: number | undefined): Ports =>
  port === undefined || ports === null ? null : new Set([...(ports ?? []), port]);

/**
 * Parses DIFFID_WEBHOOK_ALLOW: comma-separated host names, addresses and CIDRs, each with an
 * optional `:port` (IPv6 in brackets then: `[fd00::1]:8443`, `[fd00::]/8:8443`).
 */
export function webhookPolicy(allow: string | undefined): WebhookPolicy | { error: string } {
  const policy: WebhookPolicy = { hosts: new Map(), ranges: [], everyPort: [] };
  for (const raw of (allow ?? '').split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const m = /^\[([0-9a-f:.]+)\](\/[^:]*)?(?::([^:]*))?$/i.exec(item) ?? /^([^:/\[\]]+)(\/[^:]*)?(?::([^:]*))?$/.exec(item) ?? /^([0-9a-f:.]+)(\/.*)?$/i.exec(item);
    if (!m) return { error: `"${item}" is neither a host name nor a CIDR, with or without :port` };
    const [, address = '', slash, portText] = m;
    const port = portText === undefined ? undefined : /^[0-9]{1,5}$/.test(portText) && Number(portText) >= 1 && Number(portText) <= 65_535 ? Number(portText) : NaN;
    if (Number.isNaN(port)) return { error: `"${item}": the port must be a number from 1 to 65535` };
    if (port === undefined) policy.everyPort.push(item);
    const family = isIP(address);
    if (family !== 0) {
      const max = family === 4 ? 32 : 128;
      const bits = slash === undefined ? max : /^\/[0-9]{1,3}$/.test(slash) ? Number(slash.slice(1)) : NaN;
      if (!(bits >= 0 && bits <= max)) return { error: `"${item}" is not a CIDR (address/0…${max})` };
      const list = new BlockList();
      list.addSubnet(address, bits, family === 4 ? 'ipv4' : 'ipv6');
      policy.ranges.push({ list, ports: port === undefined ? null : new Set([port]) });
    } else if (slash === undefined && address.length <= 253 && /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(address)) {
      const host = address.toLowerCase();
      policy.hosts.set(host, widen(policy.hosts.get(host), port));
    } else {
      return { error: `"${item}" is neither a host name nor a CIDR, with or without :port` };
    }
  }
  return policy;
}

const notPublic = new BlockList();
for (const [address, prefix, type] of NOT_PUBLIC) notPublic.addSubnet(address, prefix, type);

/** An IPv6 address's eight 16-bit groups (`address` is a valid IPv6 literal, zone allowed). */
function hextets(address: string): number[] {
  let text = (address.split('%')[0] as string).toLowerCase();
  const dotted = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === undefined || tail === '' ? [] : tail.split(':');
  const fill = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...fill, ...right].map((h) => parseInt(h, 16));
}

/** The IPv4 address an IPv6 address carries, by the forms that route to it; null for none. */
export function embeddedIpv4(address: string): string | null {
  const h = hextets(address);
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
  const zero = (from: number, to: number) => h.slice(from, to).every((x) => x === 0);
  const [g0 = 0, g1 = 0, g2 = 0, , g4 = 0, g5 = 0, g6 = 0, g7 = 0] = h;
  if (zero(0, 5) && g5 === 0xffff) return v4(g6, g7); // ::ffff:a.b.c.d, mapped
  if (zero(0, 6) && (g6 !== 0 || g7 > 1)) return v4(g6, g7); // ::a.b.c.d, compatible (not :: or ::1)
  if (zero(0, 4) && g4 === 0xffff && g5 === 0) return v4(g6, g7); // ::ffff:0:a.b.c.d, translated
  if (g0 === 0x64 && g1 === 0xff9b && zero(2, 6)) return v4(g6, g7); // 64:ff9b::/96, NAT64
  if (g0 === 0x2002) return v4(g1, g2); // 2002::/16, 6to4
  return null;
}

/** An address as it is judged: IPv4, or IPv6 that carries IPv4, as that IPv4 address. */
function judged(raw: string): { address: string; type: 'ipv4' | 'ipv6' } {
  if (isIP(raw) === 4) return { address: raw, type: 'ipv4' };
  const v4 = embeddedIpv4(raw);
  return v4 ? { address: v4, type: 'ipv4' } : { address: raw.split('%')[0] as string, type: 'ipv6' };
}

/** Why `host` at address `raw` may not be called on `port` (null: it may). */
export function refusedAddress(policy: WebhookPolicy, host: string, raw: string, port: number): string | null {
  const hostPorts = policy.hosts.get(host.toLowerCase());
  if (hostPorts !== undefined && admits(hostPorts, port)) return null;
  const { address, type } = judged(raw);
  if (policy.ranges.some((r) => admits(r.ports, port) && r.list.check(address, type))) return null;
  if (notPublic.check(address, type)) {
    const shown = address === raw ? address : `${raw} (${address})`;
    return `${host} is at ${shown}, which is not a public address (loopback, private, link-local or reserved); list it with its port (${port}) in DIFFID_WEBHOOK_ALLOW to allow it`;
  }
  return null;
}

/** The port a URL connects to. */
export const urlPort = (url: URL) => (url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port));

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
    const why = refusedAddress(policy, host, a.address, urlPort(parsed));
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
export function guardedLookup(policy: WebhookPolicy, port: number) {
  return (hostname: string, options: { all?: boolean }, callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void): void => {
    const host = bare(hostname);
    dnsLookup(host, { all: true, verbatim: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      const refused = addresses.map((a) => refusedAddress(policy, host, a.address, port)).find((why) => why !== null);
      if (refused) return callback(Object.assign(new Error(refused), { code: 'DIFFID_WEBHOOK_REFUSED' }), '', 0);
      if (options.all) return callback(null, addresses);
      const first = addresses[0] as LookupAddress;
      callback(null, first.address, first.family);
    });
  };
}
