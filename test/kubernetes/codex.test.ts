import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { gitIn, Scratch } from '../helpers/fixtures.js';
import { ClusterScratch, NODE_IMAGE_ENGINE, testNamespace } from '../helpers/kubernetes.js';
import type { ScriptedModel } from '../helpers/scripted-model.js';
import { runCodexScenario, type CodexRun } from '../helpers/codex-scenario.js';

const REAL_KEY = 'sk-proj-real-k8s-e2e-7d6c5b4a';

/**
 * The Codex end to end of test/e2e/codex.test.ts, with the task a pod on the cluster: the real
 * Codex CLI fixes a bug and commits, follows an injected exfiltration step (refused, audited) and
 * can only print its placeholder, while the scripted model receives the real key from the gateway
 * on moat's side, over the exec bridge. The template image is built by the local engine (its build
 * reaches the npm registry) and moved to the node's engine with docker save | docker load.
 */
describe('codex end to end on Kubernetes', () => {
  let ns: Awaited<ReturnType<typeof testNamespace>>;
  let scratch: ClusterScratch;
  let run: CodexRun;
  let model: ScriptedModel;
  let moat: Moat;
  let agentOut = '';
  let agentExit = -1;

  beforeAll(async () => {
    const local = new Scratch();
    try {
      const record = await local.moat().up({ task: 'image', template: 'codex' });
      await local.moat().rm('image', { force: true });
      execFileSync('sh', ['-c', 'docker save "$0" | docker -H "$1" load -q', record.image, NODE_IMAGE_ENGINE], { stdio: 'ignore' });
    } finally {
      await local.cleanup();
    }
    ns = await testNamespace();
    scratch = new ClusterScratch(ns.name);
    run = await runCodexScenario(scratch, { task: 'codex-k8s', realKey: REAL_KEY, password: 'hunter2-k8s', config: ['acceptUnenforcedLimits: [pids]'] });
    ({ model, moat, agentOut, agentExit } = run);
  }, 900_000);

  afterAll(async () => {
    run?.stop();
    await scratch?.cleanup();
    await ns?.remove();
  });

  it('codex talked to the model through the gateway, which added the real key; the fix came home', async () => {
    const turns = model.requests.filter((r) => r.url.endsWith('/responses'));
    expect(turns.length, agentOut).toBeGreaterThanOrEqual(4);
    for (const turn of turns) expect(turn.headers.authorization).toBe(`Bearer ${REAL_KEY}`);
    expect(agentExit, agentOut).toBe(0);
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/codex-k8s')).toBe('fix add');
    expect(gitIn(scratch.repo, 'show', 'moat/codex-k8s:math.sh')).toBe('add() { echo $(( $1 + $2 )); }');
  });

  it('the injected exfiltration was denied and audited; neither .env nor the real key reached the model', async () => {
    expect((await moat.egress('codex-k8s')).find((a) => a.host === 'exfil.test')).toMatchObject({ decision: 'denied' });
    const outputs = JSON.stringify(model.requests.map((r) => r.body));
    expect(outputs).not.toContain('hunter2-k8s');
    expect(outputs).toMatch(/key=moat-placeholder-openai-api-key-[0-9a-f]{12}/);
    expect(outputs).not.toContain(REAL_KEY);
    expect(agentOut).not.toContain(REAL_KEY);
  });
});
