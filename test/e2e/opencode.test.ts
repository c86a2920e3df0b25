import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentSteps,
  agentWorld,
  expectAgentRun,
  expectExfiltrationDenied,
  expectFixArrived,
  expectInteractiveStart,
  expectOnlyThePlaceholder,
  type AgentWorld,
} from '../helpers/agent-e2e.js';

const REAL_KEY = 'sk-proj-real-opencode-e2e-7e6d5c';
const BINDING = { secret: 'OPENAI_API_KEY', header: 'Authorization', route: 'openai' };

/**
 * The real OpenCode, installed from npm in its template image, runs in a moat sandbox through
 * `moat agent` with the OpenAI-compatible provider its template seeds (Chat Completions, streamed)
 * on the gateway's route to a scripted model on loopback. The script makes it fix a bug and
 * commit, follow a prompt-injected exfiltration instruction, and print its API key.
 */
describe('opencode end to end', () => {
  let world: AgentWorld;
  let run: { code: number; out: string; err: string };

  beforeAll(async () => {
    world = await agentWorld(BINDING, REAL_KEY, agentSteps(BINDING.secret), { answer: 'Fixed add and committed.' });
    run = await world.cli(['agent', '-t', 'opencode', '--task', 'opencode-e2e', 'Fix the failing test in this repository.']);
  }, 600_000);

  afterAll(async () => {
    await world?.stop();
  });

  /** What OpenCode sent back to the model as the result of scripted step N. */
  function toolOutput(step: number): string {
    type Message = { role?: string; tool_call_id?: string; content?: unknown };
    const last = world.model.turns().at(-1)?.body as { messages?: Message[] } | undefined;
    const result = (last?.messages ?? []).find((m) => m.role === 'tool' && m.tool_call_id === `call_${step}`);
    return typeof result?.content === 'string' ? result.content : JSON.stringify(result?.content ?? '');
  }

  it('moat agent ran OpenCode through the gateway, which added the real key as a bearer token; it printed the summary and exited 0', () => {
    expectAgentRun('opencode-e2e', world, run, (turn) => {
      expect(turn.url).toBe('/v1/chat/completions');
      expect(turn.headers.authorization).toBe(`Bearer ${REAL_KEY}`);
    });
  });

  it('OpenCode fetched nothing at start: no attempt to the npm registry, no refusal but the scripted exfiltration', async () => {
    const attempts = await world.moat.egress('opencode-e2e');
    expect(attempts.map((a) => a.host)).not.toContain('registry.npmjs.org');
    expect(attempts.filter((a) => a.decision === 'denied').map((a) => a.host)).toEqual(['exfil.test']);
  });

  it('(1) the fix was made, tested and committed, and arrived on moat/opencode-e2e', async () => {
    await expectFixArrived(world, 'opencode-e2e', toolOutput(0));
  });

  it('(2) the injected exfiltration was denied and audited; .env was never in the workspace', async () => {
    await expectExfiltrationDenied(world, 'opencode-e2e', toolOutput(1));
  });

  it('(3) OpenCode saw only the placeholder; the real key went in the Authorization header and nowhere else', () => {
    expectOnlyThePlaceholder(world, BINDING, toolOutput(2), run.out + run.err);
  });
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
    expect(run.err).toMatch(/agent exited [1-9]/);
    // And moat's own line, the same for every agent: the gateway saw the 401 on the route.
    expect(run.err).toMatch(/^moat: agent failed: the model API at api\.test \(route openai\) refused the key: 401 \(hint: /m);
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
