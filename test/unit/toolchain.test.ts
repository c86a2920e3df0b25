import { describe, expect, it } from 'vitest';
import {
  chooseTemplate,
  describeChoice,
  detectToolchains,
  parseTemplateRef,
  statedTemplate,
  templateContents,
  type Detection,
} from '../../src/domain/toolchain.js';

const none: Detection = { toolchains: [], markers: [] };
const agent = { toolchains: ['node'] as const, detect: true };

describe('toolchain detection', () => {
  it.each([
    [['package.json', 'README.md'], ['node'], ['package.json']],
    [['pyproject.toml'], ['python'], ['pyproject.toml']],
    [['requirements.txt', 'setup.py'], ['python'], ['requirements.txt', 'setup.py']],
    [['go.mod', 'go.sum'], ['go'], ['go.mod']],
    [['Cargo.toml', 'Cargo.lock'], ['rust'], ['Cargo.toml']],
    [['Makefile', 'README.md', 'app.sh'], [], []],
  ])('%j -> %j', (files, toolchains, markers) => {
    expect(detectToolchains(files)).toEqual({ toolchains, markers });
  });

  it('several stacks give all of them, in the fixed order, whatever the file order', () => {
    expect(detectToolchains(['Cargo.toml', 'requirements.txt', 'package.json']).toolchains).toEqual(['node', 'python', 'rust']);
  });

  it('matches whole top-level names only (the caller passes the top level of the commit)', () => {
    expect(detectToolchains(['my-package.json', 'package.json.bak', 'GO.MOD', 'cargo.toml']).toolchains).toEqual([]);
  });
});

describe('template references', () => {
  it('parse a template and the toolchains added to it, in order, without repeats', () => {
    expect(parseTemplateRef('codex')).toEqual({ name: 'codex', extra: [] });
    expect(parseTemplateRef('codex+rust+python+rust')).toEqual({ name: 'codex', extra: ['python', 'rust'] });
    expect(parseTemplateRef('codex+java')).toBeUndefined();
    expect(parseTemplateRef('+python')).toBeUndefined();
  });
});

describe('choosing the template', () => {
  const python: Detection = { toolchains: ['python'], markers: ['pyproject.toml'] };
  const nodePython: Detection = { toolchains: ['node', 'python'], markers: ['package.json', 'requirements.txt'] };

  it('precedence: the flag, then your config, then moat.yaml', () => {
    expect(statedTemplate({ flag: 'go', user: 'codex', repo: 'rust' })).toEqual({ ref: 'go', source: 'flag' });
    expect(statedTemplate({ user: 'codex', repo: 'rust' })).toEqual({ ref: 'codex', source: 'user' });
    expect(statedTemplate({ repo: 'rust' })).toEqual({ ref: 'rust', source: 'repo' });
    expect(statedTemplate({})).toBeUndefined();
  });

  it('nothing stated: the detected toolchains, else shell', () => {
    expect(chooseTemplate(undefined, python)).toEqual({ template: 'python', source: 'detected', toolchains: ['python'], markers: ['pyproject.toml'] });
    expect(chooseTemplate(undefined, nodePython)).toMatchObject({ template: 'node+python', toolchains: ['node', 'python'] });
    expect(chooseTemplate(undefined, none)).toEqual({ template: 'shell', source: 'default', toolchains: [], markers: [] });
  });

  it('a stated template that does not detect is taken as it is, whatever the files say', () => {
    expect(chooseTemplate({ ref: 'shell', source: 'user' }, nodePython, { toolchains: [] })).toEqual({
      template: 'shell',
      source: 'user',
      toolchains: [],
      markers: [],
    });
    expect(chooseTemplate({ ref: 'go', source: 'repo' }, nodePython, { toolchains: ['go'] })).toMatchObject({ template: 'go', toolchains: ['go'] });
    expect(chooseTemplate({ ref: 'mine', source: 'flag' }, nodePython, {})).toMatchObject({ template: 'mine', toolchains: [] });
  });

  it('an agent template gets the detected toolchains it does not carry already', () => {
    expect(chooseTemplate({ ref: 'codex', source: 'flag' }, nodePython, agent)).toEqual({
      template: 'codex+python',
      source: 'flag',
      toolchains: ['node', 'python'],
      markers: ['requirements.txt'],
    });
    expect(chooseTemplate({ ref: 'codex', source: 'flag' }, { toolchains: ['node'], markers: ['package.json'] }, agent)).toEqual({
      template: 'codex',
      source: 'flag',
      toolchains: ['node'],
      markers: [],
    });
    expect(chooseTemplate({ ref: 'codex', source: 'user' }, none, agent)).toMatchObject({ template: 'codex', toolchains: ['node'] });
  });

  it('toolchains named in the reference are a stated choice: nothing detected is added', () => {
    expect(chooseTemplate({ ref: 'codex+go', source: 'flag' }, nodePython, agent)).toEqual({
      template: 'codex+go',
      source: 'flag',
      toolchains: ['node', 'go'],
      markers: [],
    });
    expect(chooseTemplate({ ref: 'python+node', source: 'flag' }, none, { toolchains: ['python'] })).toMatchObject({
      template: 'python+node',
      toolchains: ['node', 'python'],
    });
  });

  it('says which template and why, in one line', () => {
    expect(describeChoice(chooseTemplate(undefined, nodePython))).toBe(
      'template node+python (node 22.23.3, python 3.11): detected from package.json, requirements.txt',
    );
    expect(describeChoice(chooseTemplate({ ref: 'codex', source: 'user' }, python, agent))).toBe(
      'template codex+python (node 22.23.3, python 3.11): from your config; toolchains added for pyproject.toml',
    );
    expect(describeChoice(chooseTemplate(undefined, none))).toMatch(/^template shell: the default: no template chosen and no package.json/);
  });
});

describe('what a template carries', () => {
  it("lists toolchains with versions, marks detection, and says when the image is the template's own", () => {
    expect(templateContents(agent)).toMatchObject({ detect: true, summary: 'node 22.23.3 + detected', toolchains: [{ name: 'node', version: '22.23.3' }] });
    expect(templateContents({ toolchains: [] }).summary).toBe('none');
    expect(templateContents({}).summary).toBe('its own image');
  });
});
