import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadTemplate } from '../../src/image/template.js';
import { BUILTIN_TEMPLATES_DIR } from '../../src/image/template-image.js';

const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

/** README's "Version proven" column, by the agent's npm package name. */
function provenVersions(): Map<string, string> {
  const proven = new Map<string, string>();
  for (const line of README.split('\n')) {
    const pin = /^\| [^|]+ \| `((?:@[^@`]+\/)?[^@`]+)@([^`]+)` \|/.exec(line);
    if (pin) proven.set(pin[1]!, pin[2]!);
  }
  return proven;
}

/**
 * The pinned agent CLIs and README's table of proven versions are one fact: a bump of a template's
 * AGENT_PACKAGE (the E2E suite is its check) must change the table too, and the table may not
 * name a version no template builds.
 */
describe("README's proven agent versions", () => {
  const agents = ['codex', 'claude', 'gemini', 'opencode'];

  it.each(agents)('%s: the version README says is proven is the one its template pins', async (agent) => {
    const spec = await loadTemplate(BUILTIN_TEMPLATES_DIR, agent);
    const pinned = /^((?:@[^@/]+\/)?[^@]+)@(\d+\.\d+\.\d+)$/.exec(spec.args?.AGENT_PACKAGE ?? '');
    expect(pinned, `templates/${agent}/template.yaml pins an exact version`).not.toBeNull();
    expect(provenVersions().get(pinned![1]!)).toBe(pinned![2]);
  });

  it('every agent in the table is a template pin, and every agent has an end-to-end file', async () => {
    const pins = await Promise.all(agents.map(async (agent) => (await loadTemplate(BUILTIN_TEMPLATES_DIR, agent)).args?.AGENT_PACKAGE));
    expect([...provenVersions()].map(([name, version]) => `${name}@${version}`).sort()).toEqual(pins.sort());
    for (const agent of agents) expect(() => readFileSync(join(import.meta.dirname, '..', 'e2e', `${agent}.test.ts`))).not.toThrow();
  });
});
