import { afterAll, describe, expect, it } from 'vitest';
import { agentWorld, describeAgentRun, expectInteractiveStart, expectKeyRefusedLine, type AgentWorld } from '../helpers/agent-e2e.js';

const REAL_KEY = 'sk-proj-real-opencode-e2e-7e6d5c';
const BINDING = { secret: 'OPENAI_API_KEY', header: 'Authorization', route: 'openai' };

/**
 * The real OpenCode, installed from npm in its template image, runs in a moat sandbox through
 * `moat agent` with the OpenAI-compatible provider its template seeds (Chat Completions, streamed)
 * on the gateway's route to a scripted model on loopback. The script makes it fix a bug and
 * commit, follow a prompt-injected exfiltration instruction, and print its API key.
 */
describeAgentRun({
  template: 'opencode',
  agent: 'OpenCode',
  binding: BINDING,
  key: REAL_KEY,
  keyedIn: 'in the Authorization header',
  keyed: (turn) => {
    expect(turn.url).toBe('/v1/chat/completions');
    expect(turn.headers.authorization).toBe(`Bearer ${REAL_KEY}`);
  },
  // What OpenCode sent back to the model as the result of scripted step N (tool call call_N).
  toolOutput: (model, step) => {
    type Message = { role?: string; tool_call_id?: string; content?: unknown };
    const last = model.turns().at(-1)?.body as { messages?: Message[] } | undefined;
    const result = (last?.messages ?? []).find((m) => m.role === 'tool' && m.tool_call_id === `call_${step}`);
    return typeof result?.content === 'string' ? result.content : JSON.stringify(result?.content ?? '');
  },
  more: (current) => {
    it('OpenCode fetched nothing at start: no attempt to the npm registry, no refusal but the scripted exfiltration', async () => {
      const attempts = await current().world.moat.egress('opencode-e2e');
      expect(attempts.map((a) => a.host)).not.toContain('registry.npmjs.org');
      expect(attempts.filter((a) => a.decision === 'denied').map((a) => a.host)).toEqual(['exfil.test']);
    });
  },
});

describe('opencode: a model error', () => {
  let world: AgentWorld;
  afterAll(async () => {
    await world?.stop();
  });

  it("a 401 from the API surfaces as one clear line, and moat agent exits with the agent's failure", async () => {
    world = await agentWorld(BINDING, 'sk-proj-revoked-e2e', [], { fail: 401 });
    const run = await world.cli(['agent', '-t', 'opencode', '--task', 'opencode-401', 'Say hello.']);
    expect(world.model.turns().length).toBeGreaterThan(0);
    expect(run.code, run.out + run.err).not.toBe(0);
    // OpenCode's own lines around it: its header ("> build · gpt-5.1") and colour resets (escaped by moat).
    const said = (run.out + run.err)
      .split('\n')
      .filter((l) => l.startsWith('agent | '))
      .map((l) =>
        l
          .slice('agent | '.length)
          .replace(/\\x1b\[[0-9;]*m/g, '')
          .trim(),
      )
      .filter((l) => l !== '' && !/^> \w+ · /.test(l));
    expect(said, run.out + run.err).toEqual(['Error: invalid x-api-key']);
    expectKeyRefusedLine(run, BINDING);
  }, 600_000);
});

/** Texts of OpenCode's first-run screens: none may show in a task's terminal. */
const FIRST_RUN = ['Connectaprovider', 'Selectprovider', 'Selectmodel', 'Login', 'APIkey'];

describe('opencode: interactive start', () => {
  let world: AgentWorld;
  afterAll(async () => {
    await world?.stop();
  });

  it("moat shell opens OpenCode's prompt with no first-run question, and a first turn gets the model's answer", async () => {
    world = await agentWorld(BINDING, REAL_KEY, [], { answer: 'Hello from the scripted model' });
    // OpenCode's TUI waits for the terminal's answers to its queries before it draws.
    await expectInteractiveStart(world, 'opencode', {
      ready: (screen) => screen.includes('GPT-5.1'),
      firstRun: FIRST_RUN,
      keyed: (turn) => expect(turn.headers.authorization).toBe(`Bearer ${REAL_KEY}`),
      answerQueries: true,
    });
  }, 600_000);
});
