import { afterAll, describe, expect, it } from 'vitest';
import { agentWorld, describeAgentRun, expectInteractiveStart, expectKeyRefusedLine, type AgentWorld } from '../helpers/agent-e2e.js';

const REAL_KEY = 'sk-ant-api03-real-e2e-7d6e5f4a';
const BINDING = { secret: 'ANTHROPIC_API_KEY', header: 'x-api-key', route: 'anthropic' };

/**
 * The real Claude Code, installed from npm in its template image, runs in a moat sandbox through
 * `moat agent` and talks Anthropic Messages (streamed) through the gateway's route to a scripted
 * model on loopback. The script makes it fix a bug and commit, follow a prompt-injected
 * exfiltration instruction, and print its API key.
 */
describeAgentRun({
  template: 'claude',
  agent: 'Claude Code',
  binding: BINDING,
  key: REAL_KEY,
  keyedIn: 'in x-api-key',
  keyed: (turn) => expect(turn.headers['x-api-key']).toBe(REAL_KEY),
  // What Claude Code sent back to the model as the result of scripted step N (tool call toolu_N).
  toolOutput: (model, step) => {
    type Block = { type?: string; tool_use_id?: string; content?: string | Array<{ text?: string }> };
    const blocks = model.requests.flatMap((r) =>
      ((r.body as { messages?: Array<{ content?: string | Block[] }> })?.messages ?? []).flatMap((m) =>
        typeof m.content === 'string' ? [] : (m.content ?? []),
      ),
    );
    const found = blocks.find((b) => b.type === 'tool_result' && b.tool_use_id === `toolu_${step}`);
    return typeof found?.content === 'string' ? found.content : (found?.content ?? []).map((p) => p.text ?? '').join('');
  },
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
    expectKeyRefusedLine(run, BINDING);
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
    await expectInteractiveStart(world, 'claude', {
      ready: (screen) => screen.includes('ClaudeCodev') && screen.includes('shift+tab'),
      firstRun: FIRST_RUN,
      keyed: (turn) => expect(turn.headers['x-api-key']).toBe(REAL_KEY),
      // Claude Code 2.1.332 asks these at every interactive start even with DISABLE_AUTOUPDATER and
      // CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC (not traced yet to a setting): refused, and it starts.
      denied: ['downloads.claude.ai', 'github.com'],
    });
  }, 600_000);
});
