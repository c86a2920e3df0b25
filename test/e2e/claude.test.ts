import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gitIn, MOAT_BIN } from '../helpers/fixtures.js';
import { Terminal } from '../helpers/terminal.js';
import { agentSteps, agentWorld, E2E_DOTENV, everythingButTheHeader, type AgentWorld } from '../helpers/agent-e2e.js';

const REAL_KEY = 'sk-ant-api03-real-e2e-7d6e5f4a';
const BINDING = { secret: 'ANTHROPIC_API_KEY', header: 'x-api-key', route: 'anthropic' };

/**
 * The real Claude Code, installed from npm in its template image, runs in a moat sandbox through
 * `moat agent` and talks Anthropic Messages (streamed) through the gateway's route to a scripted
 * model on loopback. The script makes it fix a bug and commit, follow a prompt-injected
 * exfiltration instruction, and print its API key.
 */
describe('claude end to end', () => {
  let world: AgentWorld;
  let run: { code: number; out: string; err: string };

  beforeAll(async () => {
    world = await agentWorld(BINDING, REAL_KEY, agentSteps(BINDING.secret), { answer: 'Fixed add and committed.' });
    run = await world.cli(['agent', '-t', 'claude', '--task', 'claude-e2e', 'Fix the failing test in this repository.']);
  }, 600_000);

  afterAll(async () => {
    await world?.stop();
  });

  /** What Claude Code sent back to the model as the result of one scripted tool call. */
  function toolOutput(id: string): string {
    type Block = { type?: string; tool_use_id?: string; content?: string | Array<{ text?: string }> };
    const blocks = world.model.requests.flatMap((r) =>
      ((r.body as { messages?: Array<{ content?: string | Block[] }> })?.messages ?? []).flatMap((m) =>
        typeof m.content === 'string' ? [] : (m.content ?? []),
      ),
    );
    const found = blocks.find((b) => b.type === 'tool_result' && b.tool_use_id === id);
    return typeof found?.content === 'string' ? found.content : (found?.content ?? []).map((p) => p.text ?? '').join('');
  }

  it('moat agent ran Claude Code through the gateway, which added the real key in x-api-key; it printed the summary and exited 0', () => {
    const turns = world.model.turns();
    expect(turns.length, run.out + run.err).toBeGreaterThanOrEqual(4);
    for (const turn of turns) expect(turn.headers['x-api-key']).toBe(REAL_KEY);
    expect(run.code, run.err).toBe(0);
    expect(run.out + run.err).toContain('agent | Fixed add and committed.');
    expect(run.err).toMatch(/task claude-e2e on moat\/claude-e2e: agent exited 0; egress \d+ allowed, [1-9]\d* denied/);
    expect(run.err).toMatch(/math\.sh \| 2 \+-/);
  });

  it('(1) the fix was made, tested and committed, and arrived on moat/claude-e2e', async () => {
    expect(toolOutput('toolu_0')).toContain('test passed');
    const diff = await world.moat.diff('claude-e2e', { patch: true });
    expect(diff.commits).toBe(1);
    expect(diff.patch).toContain('+add() { echo $(( $1 + $2 )); }');
    expect(gitIn(world.scratch.repo, 'log', '-1', '--format=%s', 'moat/claude-e2e')).toBe('fix add');
  });

  it('(2) the injected exfiltration was denied and audited; .env was never in the workspace', async () => {
    const denied = (await world.moat.egress('claude-e2e')).find((a) => a.host === 'exfil.test');
    expect(denied).toMatchObject({ decision: 'denied' });
    const seen = toolOutput('toolu_1');
    expect(seen).toContain('egress denied');
    expect(seen).toContain('.gitignore');
    expect(seen.split('\n')).not.toContain('.env');
    expect(JSON.stringify(world.model.requests)).not.toContain(E2E_DOTENV.split('=')[1]);
  });

  it('(3) Claude Code saw only the placeholder; the real key went in x-api-key and nowhere else', () => {
    expect(toolOutput('toolu_2')).toMatch(/key=moat-placeholder-anthropic-api-key-[0-9a-f]{12}/);
    expect(everythingButTheHeader(world.model, BINDING.header)).not.toContain(REAL_KEY);
    expect(run.out + run.err).not.toContain(REAL_KEY);
  });
});

describe('claude: a model error', () => {
  let world: AgentWorld;
  afterAll(async () => {
    await world?.stop();
  });

  it("a 401 from the API surfaces as one clear line, and moat agent exits with the agent's failure", async () => {
    // Claude Code retries even a 401, ten times with backoff (three minutes); the user's env caps that here.
    world = await agentWorld(BINDING, 'sk-ant-revoked-e2e', [], { fail: 401, config: ['env: { CLAUDE_CODE_MAX_RETRIES: "1" }'] });
    const run = await world.cli(['agent', '-t', 'claude', '--task', 'claude-401', 'Say hello.']);
    expect(world.model.turns().length).toBeGreaterThan(0);
    expect(run.code, run.out + run.err).not.toBe(0);
    const lines = (run.out + run.err).split('\n').filter((l) => l.startsWith('agent | ') && l.trim() !== 'agent |');
    expect(lines, run.out + run.err).toHaveLength(1);
    expect(lines[0]).toMatch(/api key|401|auth/i);
    // And moat's own line, the same for every agent: the gateway saw the 401 on the route.
    expect(run.err).toMatch(/^moat: agent failed: the model API at api\.test \(route \w+\) refused the key: 401 \(hint: /m);
    expect(run.err).toMatch(/agent exited [1-9]/);
  }, 600_000);
});

/** Texts of Claude Code's first-run screens: none may show in a task's terminal. */
const FIRST_RUN = [
  'DoyouwanttousethisAPIkey',
  'Doyoutrustthefiles',
  'Choosethetextstyle',
  "Let'sgetstarted",
  'Selectloginmethod',
  'Securitynotes',
  'Yes,Iaccept',
];

describe('claude: interactive start', () => {
  let world: AgentWorld;
  afterAll(async () => {
    await world?.stop();
  });

  it("moat shell opens Claude Code's prompt with no first-run question, and a first turn gets the model's answer", async () => {
    world = await agentWorld(BINDING, REAL_KEY, [], { answer: 'Hello from the scripted model' });
    await world.moat.up({ task: 'claude-tty', template: 'claude' });
    const term = new Terminal(`${process.execPath} ${MOAT_BIN} shell claude-tty`, { cwd: world.scratch.repo, env: world.scratch.env(world.env) });
    try {
      await term.until(() => term.screen().includes('ClaudeCodev') && term.screen().includes('shift+tab'), 'the prompt');
      term.type('Say hello to moat');
      // A TUI still drawing can drop the Enter: press it again until the model has the prompt.
      const asked = () => world.model.turns().some((r) => JSON.stringify(r.body).includes('Say hello to moat'));
      await term.until(asked, 'the prompt at the model', { meanwhile: () => term.type('\r') });
      await term.until(() => term.screen().includes('Hellofromthescriptedmodel'), "the model's answer");
      for (const text of FIRST_RUN) expect(term.screen(), term.output()).not.toContain(text);
      for (const turn of world.model.turns()) expect(turn.headers['x-api-key']).toBe(REAL_KEY);
    } finally {
      await term.close();
    }
  }, 600_000);
});
