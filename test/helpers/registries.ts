import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { classifyAddress, parseIp } from '../../src/domain/ip-address.js';

/**
 * Package registries of the four stacks, made by a test on this host, each speaking its real
 * protocol over HTTPS (a certificate of the test's own CA) and serving one small package the test
 * built: nothing is downloaded from anywhere. Every request is logged, so a test can prove what
 * reached the registry and that nothing did.
 */

type Route = { type: string; body: Buffer } | ((accept: string) => { type: string; body: Buffer });

export class LocalRegistry {
  /** "METHOD /path" of every request, in order. */
  readonly requests: string[] = [];
  private readonly routes = new Map<string, Route>();
  private server?: Server;
  port = 0;

  constructor(
    readonly host: string,
    private readonly address: string,
    private readonly tls: { key: Buffer; cert: Buffer },
  ) {}

  /** The registry's base URL, under its DNS name (which only the gateway's DNS stub knows). */
  get url(): string {
    return `https://${this.host}:${this.port}`;
  }

  serve(path: string, route: Route): void {
    this.routes.set(path, route);
  }

  async start(): Promise<void> {
    this.server = createServer(this.tls, (req, res) => {
      this.requests.push(`${req.method} ${req.url}`);
      const route = this.routes.get((req.url ?? '/').split('?')[0]!);
      if (!route) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      const { type, body } = typeof route === 'function' ? route(String(req.headers.accept ?? '')) : route;
      res.writeHead(200, { 'content-type': type, 'content-length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
    const server = this.server;
    this.port = await new Promise<number>((resolve) => server.listen(0, this.address, () => resolve((server.address() as AddressInfo).port)));
  }

  stop(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/**
 * A non-loopback IPv4 address of this host that is not public (private, documentation…): where a
 * company's registry would live. The gateway refuses such addresses unless the user admits the
 * range (egress.allowAddresses), and refuses loopback always, so the registries listen here.
 */
export function hostInternalAddress(): { address: string; kind: string } {
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) {
      if (entry.family !== 'IPv4' || entry.internal) continue;
      const kind = classifyAddress(parseIp(entry.address)!);
      if (kind !== 'public' && kind !== 'loopback') return { address: entry.address, kind };
    }
  }
  throw new Error('this host has no non-public IPv4 address for a test server to listen on');
}

const sha256 = (data: Buffer | string) => createHash('sha256').update(data).digest();

/** A zip archive with the files stored (no compression): enough for a wheel and a Go module zip. */
export function zip(files: Record<string, string>): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text);
    const nameBytes = Buffer.from(name);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0x0800, 6); // names are UTF-8
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10); // time
    local.writeUInt16LE(0x21, 12); // date: 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    local.writeUInt16LE(0, 28);
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE(0x0314, 4); // made by: Unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(0, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(data.length, 20);
    central.writeUInt32LE(data.length, 24);
    central.writeUInt16LE(nameBytes.length, 28);
    central.writeUInt32LE((0o100644 << 16) >>> 0, 38); // a regular file, rw-r--r--
    central.writeUInt32LE(offset, 42);
    locals.push(local, nameBytes, data);
    centrals.push(central, nameBytes);
    offset += local.length + nameBytes.length + data.length;
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(Object.keys(files).length, 8);
  end.writeUInt16LE(Object.keys(files).length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

/** A .tar.gz of `files` (paths inside the archive), made with the host's tar. */
export function tarGz(files: Record<string, string>): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'moat-pkg-'));
  try {
    for (const [path, text] of Object.entries(files)) {
      mkdirSync(dirname(join(dir, 'in', path)), { recursive: true });
      writeFileSync(join(dir, 'in', path), text);
    }
    const out = join(dir, 'out.tgz');
    execFileSync('tar', ['-czf', out, '--owner=0', '--group=0', '--numeric-owner', '-C', join(dir, 'in'), ...Object.keys(files)]);
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A package in the npm registry's format: its packument and tarball, and the lockfile entry that pins it. */
export function serveNpm(registry: LocalRegistry, name: string, version: string, files: Record<string, string>): { lockEntry: object } {
  const packageJson = JSON.stringify({ name, version, main: 'index.js' });
  const tarball = tarGz(Object.fromEntries([['package/package.json', packageJson], ...Object.entries(files).map(([p, t]) => [`package/${p}`, t])]));
  const integrity = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
  const shasum = createHash('sha1').update(tarball).digest('hex');
  const tarballPath = `/${name}/-/${name}-${version}.tgz`;
  const dist = { tarball: `${registry.url}${tarballPath}`, integrity, shasum };
  const packument = { name, 'dist-tags': { latest: version }, versions: { [version]: { name, version, main: 'index.js', dist } } };
  registry.serve(`/${name}`, { type: 'application/json', body: Buffer.from(JSON.stringify(packument)) });
  registry.serve(tarballPath, { type: 'application/octet-stream', body: tarball });
  return { lockEntry: { version, resolved: dist.tarball, integrity } };
}

/**
 * A pure-Python wheel (a zip with METADATA, WHEEL and RECORD) on a PEP 503 simple index, which
 * answers PEP 691's JSON to a client that asks for it.
 */
export function servePython(registry: LocalRegistry, name: string, version: string, files: Record<string, string>): void {
  const info = `${name}-${version}.dist-info`;
  const contents: Record<string, string> = {
    ...files,
    [`${info}/METADATA`]: `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n`,
    [`${info}/WHEEL`]: 'Wheel-Version: 1.0\nGenerator: moat-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n',
  };
  const record = Object.entries(contents).map(([path, text]) => `${path},sha256=${sha256(text).toString('base64url')},${Buffer.byteLength(text)}\n`);
  contents[`${info}/RECORD`] = `${record.join('')}${info}/RECORD,,\n`;
  const wheel = zip(contents);
  const file = `${name}-${version}-py3-none-any.whl`;
  const digest = sha256(wheel).toString('hex');
  registry.serve(`/files/${file}`, { type: 'application/octet-stream', body: wheel });
  registry.serve(`/simple/${name}/`, (accept) =>
    accept.includes('application/vnd.pypi.simple.v1+json')
      ? {
          type: 'application/vnd.pypi.simple.v1+json',
          body: Buffer.from(
            JSON.stringify({ meta: { 'api-version': '1.0' }, name, files: [{ filename: file, url: `../../files/${file}`, hashes: { sha256: digest } }] }),
          ),
        }
      : { type: 'text/html', body: Buffer.from(`<!DOCTYPE html><html><body><a href="../../files/${file}#sha256=${digest}">${file}</a></body></html>\n`) },
  );
}

/** Go's dirhash "h1:" of files by their names (golang.org/x/mod/sumdb/dirhash.Hash1). */
function goHash1(files: Record<string, string>): string {
  const summary = Object.keys(files)
    .sort()
    .map((name) => `${sha256(files[name]!).toString('hex')}  ${name}\n`)
    .join('');
  return `h1:${sha256(summary).toString('base64')}`;
}

/** A module on a GOPROXY (list, .info, .mod, .zip), and the go.sum lines that pin it. */
export function serveGo(registry: LocalRegistry, module: string, version: string, files: Record<string, string>): { goSum: string } {
  const goMod = files['go.mod']!;
  const inZip = Object.fromEntries(Object.entries(files).map(([p, t]) => [`${module}@${version}/${p}`, t]));
  const base = `/${module}/@v`;
  registry.serve(`${base}/list`, { type: 'text/plain', body: Buffer.from(`${version}\n`) });
  registry.serve(`${base}/${version}.info`, {
    type: 'application/json',
    body: Buffer.from(JSON.stringify({ Version: version, Time: '2026-01-01T00:00:00Z' })),
  });
  registry.serve(`${base}/${version}.mod`, { type: 'text/plain', body: Buffer.from(goMod) });
  registry.serve(`${base}/${version}.zip`, { type: 'application/zip', body: zip(inZip) });
  return { goSum: `${module} ${version} ${goHash1(inZip)}\n${module} ${version}/go.mod ${goHash1({ 'go.mod': goMod })}\n` };
}

/** Where a crate's entry lives in a cargo index (1/, 2/, 3/a/, ab/cd/). */
function cargoIndexPath(name: string): string {
  const n = name.toLowerCase();
  if (n.length <= 2) return `${n.length}/${n}`;
  if (n.length === 3) return `3/${n[0]}/${n}`;
  return `${n.slice(0, 2)}/${n.slice(2, 4)}/${n}`;
}

/** A crate on a cargo sparse registry: config.json, the crate's index file and its .crate download. */
export function serveCargo(registry: LocalRegistry, name: string, version: string, files: Record<string, string>): void {
  const cargoToml = `[package]\nname = "${name}"\nversion = "${version}"\nedition = "2021"\n`;
  const crate = tarGz(
    Object.fromEntries([[`${name}-${version}/Cargo.toml`, cargoToml], ...Object.entries(files).map(([p, t]) => [`${name}-${version}/${p}`, t])]),
  );
  const entry = { name, vers: version, deps: [], cksum: sha256(crate).toString('hex'), features: {}, yanked: false };
  registry.serve('/index/config.json', { type: 'application/json', body: Buffer.from(JSON.stringify({ dl: `${registry.url}/api/v1/crates` })) });
  registry.serve(`/index/${cargoIndexPath(name)}`, { type: 'text/plain', body: Buffer.from(`${JSON.stringify(entry)}\n`) });
  registry.serve(`/api/v1/crates/${name}/${version}/download`, { type: 'application/x-tar', body: crate });
}
