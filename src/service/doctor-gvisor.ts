import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LABEL } from '../domain/labels.js';
import { gvisorHostPids } from '../domain/isolation.js';
import { DEFAULT_LIMITS } from '../domain/limits.js';
import { sandboxSpec } from '../domain/sandbox-spec.js';
import type { ContainerEngine } from '../engine/engine.js';
import { isMoatError } from '../errors.js';
import type { MoatContext } from './context.js';
import type { DoctorCheck } from './doctor.js';
import { gvisorRuntimeOf } from './task-container.js';

const FIX = 'as root: npm run setup (scripts/setup-gvisor.sh installs runsc and registers it with Docker)';

/**
 * Whether `isolation: gvisor` works here, by doing it: a tiny sandbox (moat's hardened spec, no
 * network, the base image) under gVisor's runtime, whose kernel log must be gVisor's own. A
 * registered runtime that fails (no ptrace, an old kernel) fails here too. Leaves nothing behind.
 */
export async function gvisorCheck(
  ctx: MoatContext,
  engine: ContainerEngine,
  image: string,
): Promise<{ check: DoctorCheck; enforcement?: Record<string, string> }> {
  const runtime = gvisorRuntimeOf(ctx);
  if (!engine.capabilities.hostMounts) {
    return { check: { name: 'gvisor', status: 'warn', detail: 'not checked on a remote engine', fix: 'run `moat doctor` where the engine runs' } };
  }
  const dir = await mkdtemp(join(tmpdir(), 'moat-gvisor-probe-'));
  const spec = {
    ...sandboxSpec({
      containerName: `moat-gvisor-probe-${process.pid}-${Date.now().toString(36)}`,
      taskName: 'gvisor-probe',
      image,
      workspace: { kind: 'host', path: dir },
      uid: 65534,
      gid: 65534,
      limits: { ...DEFAULT_LIMITS, pids: 64 },
      env: {},
      labels: { [LABEL.home]: ctx.store.homeKey, [LABEL.role]: 'probe' },
      gvisorRuntime: runtime,
    }),
    command: ['sleep', '60'],
  };
  let id: string | undefined;
  try {
    id = await engine.createContainer(spec);
    await engine.startContainer(id);
    const dmesg = await engine.execCapture(id, { cmd: ['/bin/dmesg'], user: '65534:65534' }, 64 * 1024);
    const text = dmesg.stdout.toString('utf8');
    if (dmesg.exitCode !== 0 || !/gVisor/.test(text)) {
      return {
        check: {
          name: 'gvisor',
          status: 'fail',
          detail: `runtime ${runtime} started, but its kernel is not gVisor's (dmesg: ${text.split('\n')[0]?.slice(0, 80) ?? ''})`,
          fix: FIX,
        },
      };
    }
    return {
      check: {
        name: 'gvisor',
        status: 'ok',
        detail: `isolation: gvisor works (runtime ${runtime}; ${text
          .split('\n')[0]
          ?.replace(/^\[[^\]]*\]\s*/, '')
          .trim()})`,
      },
      enforcement: {
        gvisor: `isolation: gvisor runs each task on gVisor's user-space kernel (runtime ${runtime}); its way out is moat's exec bridge`,
        'gvisor.pids': `under gVisor, limits.pids is held by gVisor's kernel (RLIMIT_NPROC per sandbox); the host's pids cgroup gets pids x 16 + 4096 (${gvisorHostPids(DEFAULT_LIMITS.pids)} for the default) for runsc's own threads`,
      },
    };
  } catch (error) {
    const detail = isMoatError(error) ? error.message : String(error);
    return { check: { name: 'gvisor', status: 'warn', detail: `isolation: gvisor is not available: ${detail.slice(0, 300)}`, fix: FIX } };
  } finally {
    if (id) await engine.removeContainer(id).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
