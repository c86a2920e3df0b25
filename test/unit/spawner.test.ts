import { afterEach, describe, expect, it } from 'vitest';
import { Spawner } from '../../src/workspace/spawner.js';
import { runProcess, setProcessRunner, spawnProcess } from '../../src/workspace/run-process.js';

const env = { PATH: process.env.PATH ?? '/usr/bin:/bin' };

/**
 * The long-lived servers' programs (moat mcp's, the warm CLI server's) start from a helper process
 * (dist/workspace/spawner-main.js: npm run build first), as runProcess would start them here.
 */
describe('the process starter of moat mcp and the warm server', () => {
  let spawner: Spawner | undefined;
  afterEach(() => {
    setProcessRunner(undefined);
    spawner?.stop();
    spawner = undefined;
  });

  it('starts programs from the helper, not from this process', async () => {
    spawner = new Spawner();
    spawner.start();
    setProcessRunner(spawner.run);
    const parent = await runProcess('sh', ['-c', 'echo $PPID'], { cwd: '/', env });
    expect(parent.exitCode).toBe(0);
    expect(Number(parent.stdout.trim())).not.toBe(process.pid);
    const here = await spawnProcess('sh', ['-c', 'echo $PPID'], { cwd: '/', env });
    expect(Number(here.stdout.trim())).toBe(process.pid);
  });

  it('gives what runProcess gives here: output, exit status, input, environment, cwd, the output cap, a program that cannot start', async () => {
    spawner = new Spawner();
    spawner.start();
    const cases: [string, string[], Parameters<typeof runProcess>[2]][] = [
      ['sh', ['-c', 'printf "out\\nü"; printf err >&2; exit 3'], { cwd: '/', env }],
      ['sh', ['-c', 'cat; echo "$X"; pwd'], { cwd: '/tmp', env: { ...env, X: 'from the env' }, input: 'from stdin\n' }],
      ['sh', ['-c', 'head -c 100000 /dev/zero; sleep 5'], { cwd: '/', env, maxBytes: 1000 }],
    ];
    for (const [file, args, options] of cases) expect(await spawner.run(file, args, options)).toEqual(await spawnProcess(file, args, options));
    const missing = await spawner.run('/nonexistent/moat-test', [], { cwd: '/', env });
    expect(missing.exitCode).toBeUndefined();
    expect((missing.error as NodeJS.ErrnoException).code).toBe('ENOENT');
  });

  it('runs programs at once, each answer to its own call', async () => {
    spawner = new Spawner();
    spawner.start();
    const results = await Promise.all(Array.from({ length: 8 }, (_, i) => spawner!.run('sh', ['-c', `sleep 0.0${8 - i}; echo ${i}`], { cwd: '/', env })));
    expect(results.map((r) => r.stdout)).toEqual(Array.from({ length: 8 }, (_, i) => `${i}\n`));
  });

  it('starts programs here once the helper has left', async () => {
    spawner = new Spawner();
    spawner.start();
    spawner.stop();
    const result = await spawner.run('sh', ['-c', 'echo $PPID'], { cwd: '/', env });
    expect(Number(result.stdout.trim())).toBe(process.pid);
  });
});
