/**
 * IP address parsing and classification, pure. Parses the forms that sandboxes have been fooled
 * with (`127.1`, `0x7f.0.0.1`, `2130706433`, `::ffff:127.0.0.1`, `64:ff9b::7f00:1`) to one value,
 * so that a decision is taken on the address a connection would reach, not on its spelling.
 */
export interface IpAddress {
  family: 4 | 6;
  /** The address as an integer (32 or 128 bits). */
  value: bigint;
}

/** inet_aton semantics: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last fills the rest. */
export function parseIPv4(text: string): IpAddress | undefined {
  const parts = text.split('.');
  if (parts.length < 1 || parts.length > 4 || parts.some((p) => p === '')) return undefined;
  const numbers: bigint[] = [];
  for (const part of parts) {
    let n: bigint;
    if (/^0x[0-9a-f]*$/i.test(part)) n = part.length === 2 ? 0n : BigInt(part);
    else if (/^0[0-7]*$/.test(part)) n = BigInt(`0o${part.slice(1) || '0'}`);
    else if (/^[1-9][0-9]*$/.test(part)) n = BigInt(part);
    else return undefined;
    numbers.push(n);
  }
  let value = 0n;
  for (let i = 0; i < numbers.length - 1; i += 1) {
    if (numbers[i]! > 255n) return undefined;
    value |= numbers[i]! << BigInt(8 * (3 - i));
  }
  const last = numbers[numbers.length - 1]!;
  const lastBits = BigInt(8 * (5 - numbers.length));
  if (last >= 1n << lastBits) return undefined;
  return { family: 4, value: value | last };
}

/** Strict IPv6 (with an optional embedded IPv4 tail); zone ids (`%eth0`) are refused. */
export function parseIPv6(text: string): IpAddress | undefined {
  if (text.includes('%') || !/^[0-9a-f:.]+$/i.test(text)) return undefined;
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const toGroups = (s: string): number[] | undefined => {
    if (s === '') return [];
    const groups: number[] = [];
    const items = s.split(':');
    for (let i = 0; i < items.length; i += 1) {
      const item = items[i]!;
      if (i === items.length - 1 && item.includes('.')) {
        if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(item)) return undefined;
        const v4 = parseIPv4(item);
        if (!v4) return undefined;
        groups.push(Number(v4.value >> 16n), Number(v4.value & 0xffffn));
      } else {
        if (!/^[0-9a-f]{1,4}$/i.test(item)) return undefined;
        groups.push(Number.parseInt(item, 16));
      }
    }
    return groups;
  };
  const head = toGroups(halves[0]!);
  const tail = halves.length === 2 ? toGroups(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if ((halves.length === 2 && missing < 1) || (halves.length === 1 && missing !== 0)) return undefined;
  const groups = [...head, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...tail];
  return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n) };
}

export function parseIp(text: string): IpAddress | undefined {
  const bare = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  return bare.includes(':') ? parseIPv6(bare) : parseIPv4(bare);
}

export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 0xffn)).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i -= 1) groups.push(((ip.value >> BigInt(16 * i)) & 0xffffn).toString(16));
  return groups
    .join(':')
    .replace(/(^|:)0(:0)+(:|$)/, '::')
    .replace(/^:::/, '::');
}

export interface Cidr {
  family: 4 | 6;
  network: bigint;
  prefix: number;
}

export function parseCidr(text: string): Cidr | undefined {
  const [addr, len] = text.split('/');
  if (!addr || len === undefined || !/^\d{1,3}$/.test(len)) return undefined;
  const ip = addr.includes(':') ? parseIPv6(addr) : /^\d{1,3}(\.\d{1,3}){3}$/.test(addr) ? parseIPv4(addr) : undefined;
  if (!ip) return undefined;
  const prefix = Number(len);
  const bits = ip.family === 4 ? 32 : 128;
  if (prefix > bits) return undefined;
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix);
  return { family: ip.family, network: ip.value & mask, prefix };
}

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false;
  const bits = ip.family === 4 ? 32 : 128;
  const mask = cidr.prefix === 0 ? 0n : ((1n << BigInt(cidr.prefix)) - 1n) << BigInt(bits - cidr.prefix);
  return (ip.value & mask) === cidr.network;
}

/** Address classes a sandbox must not reach unless a CIDR rule names them. */
export type AddressClass =
  | 'public'
  | 'loopback'
  | 'private'
  | 'link-local'
  | 'metadata'
  | 'cgnat'
  | 'multicast'
  | 'unspecified'
  | 'reserved'
  | 'ipv4-mapped'
  | 'nat64'
  | 'unique-local'
  | 'documentation';

const V4_CLASSES: Array<[string, AddressClass]> = [
  ['169.254.169.254/32', 'metadata'],
  ['0.0.0.0/8', 'unspecified'],
  ['127.0.0.0/8', 'loopback'],
  ['10.0.0.0/8', 'private'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['100.64.0.0/10', 'cgnat'],
  ['169.254.0.0/16', 'link-local'],
  ['192.0.0.0/24', 'reserved'],
  ['192.0.2.0/24', 'documentation'],
  ['198.18.0.0/15', 'reserved'],
  ['198.51.100.0/24', 'documentation'],
  ['203.0.113.0/24', 'documentation'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
];
const V6_CLASSES: Array<[string, AddressClass]> = [
  ['fd00:ec2::254/128', 'metadata'],
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['::ffff:0:0/96', 'ipv4-mapped'],
  ['::/96', 'reserved'],
  ['64:ff9b::/96', 'nat64'],
  ['64:ff9b:1::/48', 'nat64'],
  ['100::/64', 'reserved'],
  ['2001:db8::/32', 'documentation'],
  ['2002::/16', 'reserved'],
  ['fc00::/7', 'unique-local'],
  ['fe80::/10', 'link-local'],
  ['fec0::/10', 'link-local'],
  ['ff00::/8', 'multicast'],
];
const TABLE = [...V4_CLASSES, ...V6_CLASSES].map(([cidr, cls]) => [parseCidr(cidr)!, cls] as const);

export function classifyAddress(ip: IpAddress): AddressClass {
  for (const [cidr, cls] of TABLE) if (cidrContains(cidr, ip)) return cls;
  return 'public';
}
