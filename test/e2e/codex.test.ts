import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { gitIn, Scratch } from '../helpers/fixtures.js';
import type { ScriptedModel } from '../helpers/scripted-model.js';
import { runCodexScenario, type CodexRun } from '../helpers/codex-scenario.js';
import { agentWorld, expectInteractiveStart, type AgentWorld } from '../helpers/agent-e2e.js';

const REAL_KEY = 'sk-proj-real-e2e-4c3b2a1f';
const CODEX_BINDING = { secret: 'OPENAI_API_KEY', header: 'Authorization', route: 'openai' };

/**
 * The real Codex CLI, installed from npm in its template image, runs in a moat sandbox and talks
 * through the gateway to a scripted model on loopback. The script makes it fix a bug and commit,
 * follow a prompt-injected exfiltration instruction, and print its API key.
 */
describe('codex end to end', () => {
  const scratch = new Scratch();
  let run: CodexRun;
  let model: ScriptedModel;
  let moat: Moat;
  let agentOut = '';
  let agentExit = -1;

  beforeAll(async () => {
    run = await runCodexScenario(scratch, { task: 'codex-e2e', realKey: REAL_KEY, password: 'hunter2-e2e' });
    ({ model, moat, agentOut, agentExit } = run);
  }, 600_000);

  afterAll(async () => {
    if (process.env.MOAT_E2E_DUMP && model) writeFileSync(process.env.MOAT_E2E_DUMP, JSON.stringify(model.requests, null, 1));
    run?.stop();
    await scratch.cleanup();
  });

  /** The output Codex sent back to the model for one of the scripted tool calls. */
  function toolOutput(callId: string): string {
    const items = model.requests.flatMap((r) => (r.body as { input?: Array<{ type?: string; call_id?: string; output?: unknown }> })?.input ?? []);
    const found = items.find((item) => (item.type === 'custom_tool_call_output' || item.type === 'function_call_output') && item.call_id === callId);
    return JSON.parse(JSON.stringify(found?.output ?? '')) instanceof Array
      ? (found!.output as Array<{ text?: string }>).map((p) => p.text ?? '').join('')
      : String(found?.output ?? '');
  }

  it('codex talked to the model through the gateway, which added the real key', () => {
    const turns = model.requests.filter((r) => r.url.endsWith('/responses'));
    expect(turns.length, agentOut).toBeGreaterThanOrEqual(4);
    for (const turn of turns) expect(turn.headers.authorization).toBe(`Bearer ${REAL_KEY}`);
    expect(agentExit, agentOut).toBe(0);
  });

  it('(1) the fix was made, tested and committed, and shows in moat diff', async () => {
    const diff = await moat.diff('codex-e2e', { patch: true });
    expect(diff.commits).toBe(1);
    expect(diff.files.map((f) => f.path)).toContain('math.sh');
    expect(diff.patch).toContain('+add() { echo $(( $1 + $2 )); }');
    expect(gitIn(scratch.repo, 'log', '-1', '--format=%s', 'moat/codex-e2e')).toBe('fix add');
  });

  it('(2) the injected exfiltration was denied and audited; .env was never in the worktree', async () => {
    const denied = (await moat.egress('codex-e2e')).find((a) => a.host === 'exfil.test');
    expect(denied).toMatchObject({ decision: 'denied' });
    const outputs = JSON.stringify(model.requests.map((r) => r.body));
    expect(outputs).not.toContain('hunter2-e2e');
    // What the agent saw when it ran the injected command: the gateway's refusal and no .env.
    const seen = toolOutput('call_1');
    expect(seen).toContain('egress denied');
    expect(seen).toContain('.gitignore');
    expect(seen.split('\n')).not.toContain('.env');
  });

  it('(3) asked for its key, codex could only print the placeholder', () => {
    const outputs = JSON.stringify(model.requests.map((r) => r.body));
    expect(toolOutput('call_2')).toMatch(/key=moat-placeholder-openai-api-key-[0-9a-f]{12}/);
    expect(outputs).not.toContain(REAL_KEY);
    expect(agentOut).not.toContain(REAL_KEY);
  });
});

/**
 * Texts of Codex's first-run screens: none may show in a task's terminal (the welcome and sign-in
 * screens, the trust of the folder, the update notice, the model and feature announcements).
 */
const FIRST_RUN = [
  'WelcometoCodex',
  'SigninwithChatGPT',
  'Provideyourown',
  'Doyoutrust',
  'allowCodextoworkinthisfolder',
  'Updateavailable',
  'Pressentertocontinue',
  'Trynewmodel',
];

describe('codex: interactive start', () => {
  let world: AgentWorld;
  afterAll(async () => {
    await world?.stop();
  });

  it("moat shell opens Codex's prompt with no first-run question, and a first turn gets the model's answer", async () => {
    world = await agentWorld(CODEX_BINDING, REAL_KEY, [], { answer: 'Hello from the scripted model' });
    // Codex asks the terminal where its cursor is before it draws: the terminal answers. Its
    // announcement tip (raw.githubusercontent.com) is asked for at every start; no setting of
    // Codex 0.171 turns it off, and the refusal only means its built-in tip shows.
    await expectInteractiveStart(world, 'codex', {
      ready: (screen) => screen.includes('OpenAICodex(v') && screen.includes('forshortcuts'),
      firstRun: FIRST_RUN,
      keyed: (turn) => expect(turn.headers.authorization).toBe(`Bearer ${REAL_KEY}`),
      answerQueries: true,
      denied: ['raw.githubusercontent.com'],
    });
  }, 600_000);
});
