import { adminApi, TEST_NAMESPACE_LABEL } from '../helpers/kubernetes.js';

/**
 * The Kubernetes phase needs the cluster of scripts/cluster.sh: unreachable, the run fails (never
 * skips). Afterwards, a test namespace or a pod labelled by moat left anywhere fails the run too.
 */
export async function setup(): Promise<void> {
  await adminApi().listNode();
}

export async function teardown(): Promise<void> {
  const core = adminApi();
  const namespaces = await core.listNamespace({ labelSelector: TEST_NAMESPACE_LABEL });
  const pods = await core.listPodForAllNamespaces({ labelSelector: 'moat.task' });
  const maps = await core.listConfigMapForAllNamespaces({ labelSelector: 'moat.task' });
  const leftovers = [
    ...namespaces.items.filter((n) => n.status?.phase !== 'Terminating').map((n) => `namespace ${n.metadata?.name}`),
    ...pods.items.map((p) => `pod ${p.metadata?.namespace}/${p.metadata?.name}`),
    ...maps.items.map((m) => `configmap ${m.metadata?.namespace}/${m.metadata?.name}`),
  ];
  for (const n of namespaces.items) await core.deleteNamespace({ name: n.metadata!.name! }).catch(() => undefined);
  if (leftovers.length > 0) throw new Error(`tests left resources on the cluster: ${leftovers.join(', ')}`);
}
