import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Scratch } from '../helpers/fixtures.js';

/** `moat new -t` takes every reference `up -t` takes: a template, maybe with toolchains added. */
describe('moat new with toolchains added', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());
  const written = () => readFileSync(join(scratch.repo, 'moat.yaml'), 'utf8');

  it('records a union of toolchains (node+python), in the order up layers them', async () => {
    expect(await scratch.moat().newTemplate('node+python')).toMatchObject({ template: 'node+python' });
    expect(written()).toContain('template: node+python');
    expect(await scratch.moat().newTemplate('codex+go+python+python')).toMatchObject({ template: 'codex+python+go' });
    expect(written()).toContain('template: codex+python+go');
  });

  it('refuses what up refuses, and leaves moat.yaml as it was', async () => {
    writeFileSync(join(scratch.repo, 'moat.yaml'), '# ours\ntemplate: shell\n');
    await expect(scratch.moat().newTemplate('node+cobol')).rejects.toMatchObject({ code: 'E_TEMPLATE_UNKNOWN', hint: expect.stringContaining('+python') });
    await expect(scratch.moat().newTemplate('nope+python')).rejects.toMatchObject({ code: 'E_TEMPLATE_UNKNOWN' });
    // A template whose image is its own Dockerfile takes no toolchains.
    const dir = join(scratch.root, 'my-templates');
    mkdirSync(join(dir, 'own'), { recursive: true });
    writeFileSync(join(dir, 'own', 'Dockerfile'), 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n');
    scratch.writeConfig(`templates:\n  - ${dir}\n`);
    expect(await scratch.moat().newTemplate('own')).toMatchObject({ template: 'own' });
    writeFileSync(join(scratch.repo, 'moat.yaml'), '# ours\ntemplate: shell\n');
    await expect(scratch.moat().newTemplate('own+python')).rejects.toMatchObject({
      code: 'E_TEMPLATE_UNKNOWN',
      message: expect.stringContaining('takes no toolchains'),
    });
    expect(written()).toBe('# ours\ntemplate: shell\n');
  });
});
