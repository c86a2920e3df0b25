import { afterAll, describe, expect, it } from 'vitest';
import { agentWorld, describeAgentRun, expectInteractiveStart, expectKeyRefusedLine, type AgentWorld } from '../helpers/agent-e2e.js';

const REAL_KEY = 'AIzaSy-real-e2e-9a8b7c6d5e';
const BINDING = { secret: 'GEMINI_API_KEY', header: 'x-goog-api-key', route: 'gemini' };

/**
 * The real Gemini CLI, installed from npm in its template image, runs in a moat sandbox through
 * `moat agent` and talks the Gemini API (streamGenerateContent, server-sent events) through the
 * gateway's route to a scripted model on loopback. The script makes it fix a bug and commit,
 * follow a prompt-injected exfiltration instruction, and print its API key.
 */
describeAgentRun({
  template: 'gemini',
  agent: 'the Gemini CLI',
  binding: BINDING,
  key: REAL_KEY,
  keyedIn: 'in x-goog-api-key',
  keyed: (turn) => expect(turn.headers['x-goog-api-key']).toBe(REAL_KEY),
  // What the Gemini CLI sent back to the model as the result of scripted step N.
  toolOutput: (model, step) => {
    type Part = { functionResponse?: { response?: unknown } };
    const last = model.turns().at(-1)?.body as { contents?: Array<{ parts?: Part[] }> } | undefined;
    const responses = (last?.contents ?? []).flatMap((c) => c.parts ?? []).filter((p) => p.functionResponse);
    return JSON.stringify(responses[step]?.functionResponse?.response ?? '').replace(/\\n/g, '\n');
  },
});

describe('gemini: a model error', () => {
  let world: AgentWorld;
  afterAll(async () => {
    await world?.stop();
  });

  it('a 401 from the API ends the agent with a failure that names it; moat agent exits with that status', async () => {
    world = await agentWorld(BINDING, 'AIzaSy-revoked-e2e', [], { fail: 401 });
    const run = await world.cli(['agent', '-t', 'gemini', '--task', 'gemini-401', 'Say hello.']);
    expect(world.model.turns().length).toBeGreaterThan(0);
    expect(run.code, run.out + run.err).not.toBe(0);
    // The Gemini CLI prints the API's error with a stack trace (not one line): the line that names it is there.
    expect(run.out + run.err).toMatch(/^agent \| .*"code":401.*UNAUTHENTICATED/m);
    expectKeyRefusedLine(run, BINDING);
  }, 600_000);
});

/** Texts of the Gemini CLI's first-run screens: none may show in a task's terminal. */
const FIRST_RUN = ['Howwouldyouliketoauthenticate', 'Doyoutrustthisfolder', 'Selecttheme', 'Getstarted'];

describe('gemini: interactive start', () => {
  let world: AgentWorld;
  afterAll(async () => {
    await world?.stop();
  });

  it("moat shell opens the Gemini CLI's prompt with no first-run question, and a first turn gets the model's answer", async () => {
    world = await agentWorld(BINDING, REAL_KEY, [], { answer: 'Hello from the scripted model' });
    await expectInteractiveStart(world, 'gemini', {
      ready: (screen) => screen.includes('GeminiCLIv') && screen.includes('Typeyourmessage'),
      firstRun: FIRST_RUN,
      keyed: (turn) => expect(turn.headers['x-goog-api-key']).toBe(REAL_KEY),
    });
  }, 600_000);
});
