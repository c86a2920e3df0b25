import { describe, expect, it } from 'vitest';
import { containerLogCap, engineConfigurations } from '../../src/service/doctor-engines.js';
import type { MoatContext } from '../../src/service/context.js';

describe("doctor's engine configurations", () => {
  it('lists all four, each absent with a fix, where neither Docker nor Podman is found', async () => {
    const ctx = { env: { PATH: '/nonexistent', DOCKER_HOST: 'unix:///nonexistent/docker.sock' }, hostUser: { uid: 1000, gid: 1000 } } as unknown as MoatContext;
    const rows = await engineConfigurations(ctx, 'moat-base:bookworm');
    expect(rows.map((r) => [r.name, r.status])).toEqual([
      ['docker+runc', 'absent'],
      ['docker+gvisor', 'absent'],
      ['podman rootful', 'absent'],
      ['podman rootless', 'absent'],
    ]);
    expect(rows.every((r) => r.fix && Object.keys(r.enforces).length === 0)).toBe(true);
  });

  it("says Podman's log cap (one file, truncated) apart from Docker's (rotated files)", () => {
    expect(containerLogCap('podman')).toMatch(/^one file of 10MiB per container .*truncates.*at most 10MiB per task$/);
    expect(containerLogCap('docker')).toMatch(/^3 files of 10MiB per container .*at most 30MiB per task$/);
  });
});
