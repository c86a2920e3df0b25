import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { capabilitiesOf } from '../../src/engine/engine.js';
import { connectionOptions, endpointName, findEngine } from '../../src/engine/find-engine.js';

describe('engine endpoint', () => {
  const dir = mkdtempSync(join(tmpdir(), 'moat-test-endpoint-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('takes a tcp:// engine as remote, reached over the API only', async () => {
    const endpoint = await findEngine({ DOCKER_HOST: 'tcp://127.0.0.1:23750' });
    expect(endpoint).toMatchObject({ transport: 'tcp', host: '127.0.0.1', port: 23750, source: 'DOCKER_HOST' });
    expect(endpointName(endpoint)).toBe('tcp://127.0.0.1:23750');
    expect(connectionOptions(endpoint)).toEqual({ protocol: 'http', host: '127.0.0.1', port: 23750 });
    expect(capabilitiesOf(endpoint.transport)).toEqual({ hostMounts: false, hostCgroups: false, workspaceOutlivesSandbox: true });
  });

  it('takes ssh:// with its user and the default port', async () => {
    const endpoint = await findEngine({ DOCKER_HOST: 'ssh://builder@engine.example' });
    expect(endpoint).toMatchObject({ transport: 'ssh', host: 'engine.example', port: 22, username: 'builder' });
    expect(connectionOptions(endpoint)).toMatchObject({ protocol: 'ssh', host: 'engine.example', port: 22, username: 'builder' });
  });

  it('uses TLS when DOCKER_TLS_VERIFY asks, and says which certificate is missing', async () => {
    await expect(findEngine({ DOCKER_HOST: 'tcp://10.0.0.1:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: dir })).rejects.toMatchObject({
      code: 'E_ENGINE_UNREACHABLE',
      message: expect.stringContaining('ca.pem'),
    });
    for (const file of ['ca.pem', 'cert.pem', 'key.pem']) writeFileSync(join(dir, file), file);
    const endpoint = await findEngine({ DOCKER_HOST: 'tcp://10.0.0.1:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: dir });
    expect(connectionOptions(endpoint)).toMatchObject({ protocol: 'https', host: '10.0.0.1', port: 2376 });
  });

  it('refuses an address it cannot use, with a hint', async () => {
    for (const value of ['http://127.0.0.1:2375', 'tcp://', 'not an address']) {
      await expect(findEngine({ DOCKER_HOST: value })).rejects.toMatchObject({
        code: 'E_ENGINE_UNREACHABLE',
        hint: expect.stringContaining('tcp://host:port'),
      });
    }
  });

  it('keeps a local unix socket local: every shortcut offered', async () => {
    expect(capabilitiesOf('unix')).toEqual({ hostMounts: true, hostCgroups: true, workspaceOutlivesSandbox: true });
    await expect(findEngine({ DOCKER_HOST: `unix://${join(dir, 'missing.sock')}` })).rejects.toMatchObject({ code: 'E_ENGINE_UNREACHABLE' });
  });
});
