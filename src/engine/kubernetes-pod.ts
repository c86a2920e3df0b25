import { createHash } from 'node:crypto';
import { WORKSPACE_DIR, type SandboxSpec } from '../domain/sandbox-spec.js';

/**
 * A task's sandbox as a Kubernetes Pod: the same hardening as the container engines give it, in
 * the Pod API's own terms (core/v1, as a 1.20 API server accepts it). Pure: the adapter
 * (kubernetes-engine.ts) sends what this returns.
 */

/** The sandbox's container in the pod (exec and logs name it). */
export const SANDBOX_CONTAINER = 'sandbox';
/** The init container that takes the pod's network away before the sandbox starts. */
export const NETGUARD_CONTAINER = 'netguard';
/** The annotation holding the labels exactly as moat set them (label values have a narrower alphabet). */
export const LABELS_ANNOTATION = 'moat.labels';
/** The workspace volume's size, kept on the pod so that `moat ls` can say what caps it. */
const NOFILE_ANNOTATION = 'moat.nofile';

export interface PodOptions {
  /**
   * The image the init container runs: the user's base image, never the task's (a repository
   * chooses that one, and the init container has NET_ADMIN and CHOWN).
   */
  helperImage: string;
  /** The workspace volume's cap (emptyDir sizeLimit: the kubelet evicts a pod that writes past it). */
  workspaceBytes?: number;
  /** The cluster's RuntimeClass for gVisor (isolation: gvisor). */
  gvisorRuntimeClass?: string;
}

/** Label values: at most 63 of [A-Za-z0-9-_.], alphanumeric at both ends; anything else is stood for by its hash. */
export function labelValue(value: string): string {
  if (value === '' || /^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$/.test(value)) return value;
  return `h-${createHash('sha256').update(value).digest('hex').slice(0, 40)}`;
}

/** moat's labels as Kubernetes labels (the exact values ride in {@link LABELS_ANNOTATION}). */
export function podLabels(labels: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(labels).map(([key, value]) => [key, labelValue(value)]));
}

/** A label selector for moat's labels: `key=value`, or `key` alone for "has the label". */
export function labelSelector(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => (value === '' ? key : `${key}=${labelValue(value)}`))
    .join(',');
}

/** The labels of a pod or config map as moat set them. */
export function labelsOf(metadata: { labels?: Record<string, string>; annotations?: Record<string, string> } | undefined): Record<string, string> {
  const exact = metadata?.annotations?.[LABELS_ANNOTATION];
  if (exact) {
    try {
      const parsed = JSON.parse(exact) as unknown;
      if (parsed && typeof parsed === 'object') return parsed as Record<string, string>;
    } catch {
      // A hand-edited annotation: the labels themselves are what is left.
    }
  }
  return metadata?.labels ?? {};
}

/**
 * Runs as root with NET_ADMIN and CHOWN alone, before the sandbox starts, in the pod's network
 * namespace (shared by every container of the pod): every interface but loopback goes down, so the
 * routes through them go too, and the check after it fails the pod if one is still up. The sandbox
 * then has no way out but the one moat carries over exec streams, on a cluster whose network plugin
 * enforces no NetworkPolicy as well as on one that does; it has no NET_ADMIN to bring one up
 * again. Then the empty workspace folder is given to the sandbox user (uid and gid are its
 * arguments; git refuses a repository its user does not own). Perl (perl-base, in every Debian
 * image) does it all: no iproute2 is needed.
 */
export const NETGUARD_SCRIPT = `
use strict;
use Socket;
my ($uid, $gid, $workspace) = @ARGV;
socket(my $s, AF_INET, SOCK_DGRAM, 0) or die "socket: $!\\n";
opendir(my $d, '/sys/class/net') or die "/sys/class/net: $!\\n";
my @ifs = grep { !/^\\./ && $_ ne 'lo' } readdir($d);
for my $if (@ifs) {
  my $req = pack('a16 s', $if, 0);
  ioctl($s, 0x8913, $req) or die "SIOCGIFFLAGS $if: $!\\n";
  my $flags = unpack('x16 s', $req);
  next unless $flags & 1;
  ioctl($s, 0x8914, pack('a16 s', $if, $flags & ~1)) or die "SIOCSIFFLAGS $if: $!\\n";
}
for my $if (@ifs) {
  open(my $f, '<', "/sys/class/net/$if/flags") or die "$if: $!\\n";
  my $flags = hex(<$f>);
  die "interface $if is still up\\n" if $flags & 1;
}
print "moat: no interface but lo is up (" . scalar(@ifs) . " taken down or already down)\\n";
if (defined $workspace) {
  lstat($workspace) && -d _ or die "$workspace is not a folder\\n";
  chown($uid, $gid, $workspace) == 1 or die "chown $workspace: $!\\n";
}
`;

/** The pod of a task's sandbox. */
export function podManifest(spec: SandboxSpec, options: PodOptions): Record<string, unknown> {
  const [uid, gid] = spec.user.split(':').map(Number) as [number, number];
  if (spec.workspace.kind !== 'volume') throw new Error('a pod needs its workspace in a volume');
  const tmpfs = Object.entries(spec.tmpfs).map(([path, options], index) => ({ name: `tmp-${index}`, path, bytes: tmpfsSize(options) }));
  const { limits } = spec;
  const nofile = `--nofile=${limits.nofile}:${limits.nofile}`;
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: spec.name,
      labels: podLabels(spec.labels),
      annotations: { [LABELS_ANNOTATION]: JSON.stringify(spec.labels), [NOFILE_ANNOTATION]: String(limits.nofile) },
    },
    spec: {
      restartPolicy: 'Never',
      // No API token in the sandbox, no service variables pointing at the API server.
      automountServiceAccountToken: false,
      enableServiceLinks: false,
      // The pod's pause process is the init that reaps what the agent leaves behind (Docker's --init).
      shareProcessNamespace: true,
      hostname: spec.hostname.replace(/[^a-z0-9-]/g, '-').slice(0, 63),
      hostNetwork: false,
      hostPID: false,
      hostIPC: false,
      // No resolver of its own: names are the gateway's to resolve.
      dnsPolicy: 'None',
      dnsConfig: { nameservers: ['127.0.0.1'], searches: [], options: [{ name: 'ndots', value: '1' }] },
      terminationGracePeriodSeconds: 2,
      ...(spec.isolation.kind === 'gvisor' && options.gvisorRuntimeClass ? { runtimeClassName: options.gvisorRuntimeClass } : {}),
      securityContext: {
        runAsUser: uid,
        runAsGroup: gid,
        runAsNonRoot: true,
        fsGroup: gid,
        seccompProfile: { type: 'RuntimeDefault' },
      },
      initContainers: [
        {
          name: NETGUARD_CONTAINER,
          image: options.helperImage,
          imagePullPolicy: 'Never',
          command: ['/usr/bin/perl', '-e', NETGUARD_SCRIPT, String(uid), String(gid), WORKSPACE_DIR],
          securityContext: {
            runAsUser: 0,
            runAsGroup: 0,
            runAsNonRoot: false,
            readOnlyRootFilesystem: true,
            allowPrivilegeEscalation: false,
            privileged: false,
            capabilities: { drop: ['ALL'], add: ['NET_ADMIN', 'CHOWN'] },
          },
          resources: { limits: { cpu: '100m', memory: '32Mi' }, requests: { cpu: '10m', memory: '16Mi' } },
          volumeMounts: [{ name: 'workspace', mountPath: WORKSPACE_DIR }],
        },
      ],
      containers: [
        {
          name: SANDBOX_CONTAINER,
          image: spec.image,
          imagePullPolicy: 'Never',
          // Kubernetes sets no rlimit: the open-files limit is lowered for the main process here and
          // for each command moat runs (kubernetes-engine.ts); lowering it needs no capability.
          command: ['/usr/bin/prlimit', nofile, '--', ...spec.command],
          workingDir: spec.workdir,
          env: Object.entries(spec.env).map(([name, value]) => ({ name, value })),
          securityContext: {
            runAsUser: uid,
            runAsGroup: gid,
            runAsNonRoot: true,
            readOnlyRootFilesystem: spec.readOnlyRoot,
            allowPrivilegeEscalation: !spec.noNewPrivileges,
            privileged: false,
            capabilities: { drop: spec.capDrop },
          },
          resources: {
            limits: { cpu: `${Math.max(1, Math.round(limits.cpus * 1000))}m`, memory: String(limits.memoryBytes) },
            // Small requests: many tasks share a node the way they share a host; the limits hold each.
            requests: { cpu: '10m', memory: '32Mi' },
          },
          volumeMounts: [{ name: 'workspace', mountPath: WORKSPACE_DIR }, ...tmpfs.map((t) => ({ name: t.name, mountPath: t.path }))],
        },
      ],
      volumes: [
        { name: 'workspace', emptyDir: options.workspaceBytes ? { sizeLimit: String(options.workspaceBytes) } : {} },
        ...tmpfs.map((t) => ({ name: t.name, emptyDir: { medium: 'Memory', ...(t.bytes ? { sizeLimit: String(t.bytes) } : {}) } })),
      ],
    },
  };
}

/** The size of a tmpfs from its Docker options (`size=67108864` or `size=64m`). */
function tmpfsSize(options: string): number | undefined {
  const match = /(?:^|,)size=([0-9]+)([kmg]?)(?:,|$)/i.exec(options);
  if (!match) return undefined;
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  return Number(match[1]) * unit;
}

/** The nofile limit of a pod moat made (for the commands it runs there). */
export function nofileOf(annotations: Record<string, string> | undefined): number | undefined {
  const value = Number(annotations?.[NOFILE_ANNOTATION]);
  return Number.isInteger(value) && value > 0 ? value : undefined;
}
