import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { connectionOptions, findEngine } from '../../src/engine/find-engine.js';
import { NETGUARD_SCRIPT } from '../../src/engine/kubernetes-pod.js';

/**
 * The init container of every pod moat makes (src/engine/kubernetes-pod.ts) takes the pod's network
 * away before the sandbox starts. The test cluster's pods have no interface but lo to begin with,
 * so the guard is proven here, in a container that has a real one: Docker's bridge network.
 */
describe("a pod's network guard", () => {
  it('brings every interface but lo down, so no route is left, and gives the workspace to the sandbox user', async () => {
    const docker = new Docker(connectionOptions(await findEngine()) as Docker.DockerOptions);
    const check = [
      'cat /proc/net/route | wc -l',
      'mkdir -p /tmp/ws && perl -e "$0" 1000 1000 /tmp/ws || exit 9',
      'stat -c "ws %u:%g" /tmp/ws',
      'for f in /sys/class/net/*/flags; do echo "$f $(cat $f)"; done',
      'cat /proc/net/route | wc -l',
      // With the interface down nothing leaves: not even to the bridge's own address.
      'perl -MIO::Socket::INET -e \'exit(IO::Socket::INET->new(PeerAddr => "172.17.0.1:9", Timeout => 2) ? 0 : 1)\' 2>/dev/null; echo "connect $?"',
    ].join('; ');
    const container = await docker.createContainer({
      Image: 'moat-base:bookworm',
      User: '0:0',
      Cmd: ['sh', '-c', check, NETGUARD_SCRIPT],
      Labels: { 'moat.task': 'netguard-test', 'moat.role': 'helper' },
      HostConfig: {
        NetworkMode: 'bridge',
        CapDrop: ['ALL'],
        CapAdd: ['NET_ADMIN', 'CHOWN'],
        SecurityOpt: ['no-new-privileges:true'],
        ReadonlyRootfs: true,
        Tmpfs: { '/tmp': 'rw' },
      },
    });
    try {
      await container.start();
      const { StatusCode } = (await container.wait()) as { StatusCode: number };
      const logs = ((await container.logs({ stdout: true, stderr: true })) as unknown as Buffer).toString('latin1');
      expect(StatusCode, logs).toBe(0);
      // Before: a header and the routes through eth0; after: the header alone.
      const counts = [...logs.matchAll(/^\W{0,8}(\d+)\s*$/gm)].map((m) => Number(m[1]));
      expect(counts[0]).toBeGreaterThan(1);
      expect(counts[1]).toBe(1);
      expect(logs).toMatch(/no interface but lo is up \(1 taken down/);
      expect(logs).toMatch(/eth0\/flags 0x1002/);
      expect(logs).toMatch(/connect 1/);
      expect(logs).toMatch(/ws 1000:1000/);
    } finally {
      await container.remove({ force: true });
    }
  });
});
