import { basename } from 'node:path';
import { egressNetworkOf } from '../config/effective.js';
import { decideAddress, formatCidr, parseAddressRange, type EgressPolicy } from '../domain/egress-policy.js';
import { classifyAddress, formatIp, parseCidr, type IpAddress } from '../domain/ip-address.js';
import { systemResolver } from '../gateway/gateway-core.js';
import type { MoatContext } from './context.js';
import type { DoctorCheck } from './doctor.js';
import { hostCaDir, hostCaFiles, upstreamOf } from './egress.js';

/** Names tasks commonly need; where the host's DNS answers them with non-public addresses, the network is intercepting. */
export const PROBE_NAMES = ['registry.npmjs.org', 'pypi.org', 'files.pythonhosted.org', 'github.com'];

/**
 * What a task with a network meets on this host's network, each with the user-config key that
 * fixes it: CAs the host added (a TLS-inspecting proxy signs with one; sandboxes do not trust it
 * unless asked), registry names that resolve into ranges the gateway refuses (the inspecting
 * proxy's), and an upstream proxy. Never changes anything; suggests user-config keys only.
 */
export async function egressChecks(ctx: MoatContext): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const user = await ctx.userConfig().catch(() => ({}));
  const network = egressNetworkOf(user);

  const dir = hostCaDir(ctx.env);
  const cas = await hostCaFiles(dir);
  if (cas.length > 0) {
    const names =
      cas
        .map((file) => basename(file))
        .slice(0, 3)
        .join(', ') + (cas.length > 3 ? ', …' : '');
    checks.push(
      network.trustHostCa
        ? {
            name: 'egress trust',
            status: 'ok',
            detail: `sandboxes with a network trust this host's ${cas.length} added CA(s) (${names}), as egress.trustHostCa asks`,
          }
        : {
            name: 'egress trust',
            status: 'warn',
            detail: `this host trusts ${cas.length} CA(s) of its own (${dir}: ${names}) that sandboxes do not: if your network inspects TLS with one, HTTPS fails inside every task`,
            fix: 'add to ~/.config/moat/config.yaml:  egress: { trustHostCa: true }',
          },
    );
  }

  let upstream;
  try {
    upstream = upstreamOf(network, ctx.env);
  } catch (error) {
    checks.push({
      name: 'egress proxy',
      status: 'fail',
      detail: (error as Error).message,
      fix: 'set egress.upstreamProxy to an http:// proxy URL, or fix HTTPS_PROXY',
    });
    return checks;
  }
  if (upstream) {
    const proxy = (upstream.https ?? upstream.http)!.replace(/\/\/[^@/]*@/, '//***@');
    checks.push({
      name: 'egress proxy',
      status: 'ok',
      detail: `allowed connections go through ${proxy}, which resolves their names (the gateway still decides on each name first)`,
    });
    return checks;
  }

  // The gateway's own resolver, as it will answer when a task asks.
  const resolve = systemResolver(ctx.env.MOAT_GATEWAY_DNS ? ctx.env.MOAT_GATEWAY_DNS.split(',') : undefined);
  const answers = await Promise.all(PROBE_NAMES.map(async (name) => ({ name, addresses: await resolve(name).catch(() => [] as IpAddress[]) })));
  const policy: EgressPolicy = {
    mode: 'allowlist',
    allow: [],
    deny: [],
    allowAddresses: network.allowAddresses.flatMap((text) => {
      const cidr = parseAddressRange(text);
      return typeof cidr === 'string' ? [] : [cidr];
    }),
  };
  const refused = answers.flatMap(({ name, addresses }) => addresses.filter((ip) => !decideAddress(policy, ip, 443).allowed).map((ip) => ({ name, ip })));
  // Loopback and metadata are never admitted by a range: suggesting one would be a lie.
  const admissible = refused.filter(({ ip }) => !['loopback', 'metadata', 'unspecified'].includes(classifyAddress(ip)));
  if (admissible.length > 0) {
    const ranges = [...new Set(admissible.map(({ ip }) => formatCidr(parseCidr(`${formatIp(ip)}/${ip.family === 4 ? 24 : 64}`)!)))];
    const seen = admissible
      .slice(0, 3)
      .map(({ name, ip }) => `${name} → ${formatIp(ip)} (${classifyAddress(ip)})`)
      .join(', ');
    checks.push({
      name: 'egress addresses',
      status: 'warn',
      detail: `this host's DNS answers registry names with addresses the gateway refuses (${seen}): likely your network's TLS-inspecting proxy; allowed hosts fail until you admit its range`,
      fix: `add to ~/.config/moat/config.yaml:  egress: { allowAddresses: [${ranges.join(', ')}] }  (only if that range is your network's proxy)`,
    });
  } else if (refused.length > 0) {
    checks.push({
      name: 'egress addresses',
      status: 'warn',
      detail: `registry names resolve to addresses no task may reach (${refused
        .slice(0, 3)
        .map(({ name, ip }) => `${name} → ${formatIp(ip)}`)
        .join(', ')})`,
      fix: "check the host's DNS",
    });
  } else if (answers.every((a) => a.addresses.length === 0)) {
    checks.push({
      name: 'egress addresses',
      status: 'warn',
      detail: `none of ${PROBE_NAMES.join(', ')} resolves from this host: tasks with a network will reach nothing by name`,
      fix: "check the host's DNS (or set HTTPS_PROXY if your network requires a proxy)",
    });
  } else {
    checks.push({
      name: 'egress addresses',
      status: 'ok',
      detail:
        network.allowAddresses.length > 0
          ? `registry names resolve to addresses the gateway admits (egress.allowAddresses: ${network.allowAddresses.join(', ')})`
          : 'registry names resolve to public addresses',
    });
  }
  return checks;
}
