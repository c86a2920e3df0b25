import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { Scratch, stopServers } from './fixtures.js';

/**
 * The one-node cluster of scripts/cluster.sh (npm run cluster; .ci/run's kubernetes phase starts
 * it): its kubeconfigs, the node's own Docker engine (moat builds template images there: the
 * cluster's `kubernetes.imageEngine`), and a namespace of its own for each test file.
 */
const STATE = '/var/lib/moat-k8s';
export const ADMIN_KUBECONFIG = process.env.MOAT_K8S_KUBECONFIG ?? `${STATE}/admin.kubeconfig`;
export const NOBODY_KUBECONFIG = `${STATE}/nobody.kubeconfig`;
export const NODE_IMAGE_ENGINE = 'unix:///run/moat-k8s/docker.sock';
/** kubectl as the cluster script built it. */
export const KUBECTL = existsSync('/run/moat-k8s/bin') ? `${readFileSync('/run/moat-k8s/bin', 'utf8').trim()}/kubectl` : 'kubectl';
/** Every namespace a test makes carries this label: the suite's teardown finds what was left. */
export const TEST_NAMESPACE_LABEL = 'moat.test';

export function adminApi(): CoreV1Api {
  const kc = new KubeConfig();
  kc.loadFromFile(ADMIN_KUBECONFIG);
  return kc.makeApiClient(CoreV1Api);
}

/** A namespace for one test file, with its default service account ready (pods need it to exist). */
export async function testNamespace(): Promise<{ name: string; core: CoreV1Api; remove: () => Promise<void> }> {
  const core = adminApi();
  const name = `moat-test-${randomBytes(4).toString('hex')}`;
  await core.createNamespace({ body: { metadata: { name, labels: { [TEST_NAMESPACE_LABEL]: 'kubernetes' } } } });
  for (let i = 0; i < 150; i += 1) {
    if (
      await core.readNamespacedServiceAccount({ name: 'default', namespace: name }).then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const remove = async () => {
    await core.deleteNamespace({ name, gracePeriodSeconds: 0 }).catch(() => undefined);
    for (let i = 0; i < 300; i += 1) {
      if (
        !(await core.readNamespace({ name }).then(
          () => true,
          () => false,
        ))
      )
        return;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  return { name, core, remove };
}

/** A scratch home and repository whose moat runs its tasks on the cluster, in `namespace`. */
export class ClusterScratch extends Scratch {
  constructor(
    readonly namespace: string,
    options: ConstructorParameters<typeof Scratch>[0] = {},
  ) {
    super(options);
  }

  override env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return super.env({
      MOAT_ENGINE: 'kubernetes',
      KUBECONFIG: ADMIN_KUBECONFIG,
      MOAT_K8S_NAMESPACE: this.namespace,
      MOAT_K8S_IMAGE_ENGINE: NODE_IMAGE_ENGINE,
      ...extra,
    });
  }

  /** Removes the home's pods and config maps (by its label), its gateway, then the files. */
  override async cleanup(): Promise<void> {
    await stopServers(join(this.root, 'run'));
    const core = adminApi();
    const homeKey = this.moat().context.store.homeKey;
    const labelSelector = `moat.home=${homeKey}`;
    const pods = await core.listNamespacedPod({ namespace: this.namespace, labelSelector }).catch(() => ({ items: [] }));
    for (const pod of pods.items)
      await core.deleteNamespacedPod({ name: pod.metadata!.name!, namespace: this.namespace, gracePeriodSeconds: 0 }).catch(() => undefined);
    const maps = await core.listNamespacedConfigMap({ namespace: this.namespace, labelSelector }).catch(() => ({ items: [] }));
    for (const map of maps.items) await core.deleteNamespacedConfigMap({ name: map.metadata!.name!, namespace: this.namespace }).catch(() => undefined);
    try {
      process.kill(Number(readFileSync(join(this.home, 'gateway', 'pid'), 'utf8')), 'SIGTERM');
    } catch {
      // none running
    }
    rmSync(this.root, { recursive: true, force: true });
  }
}
