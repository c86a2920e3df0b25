import { MoatError } from '../errors.js';

/**
 * Task names become a git branch (`moat/<name>`), a container name and a directory name, and
 * they are shown to reviewers, so only a small, unambiguous alphabet is accepted: no control or
 * bidi characters, nothing git or a shell could read as an option or a path.
 */
const TASK_NAME = /^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$/;

export function validateTaskName(name: string): string {
  if (!TASK_NAME.test(name) || name.includes('--')) {
    throw new MoatError('E_TASK_NAME', `invalid task name ${JSON.stringify(name)}`, {
      hint: 'use 1-40 lowercase letters, digits and single hyphens, starting and ending with a letter or digit (e.g. fix-login)',
    });
  }
  return name;
}

const ADJECTIVES = [
  'amber',
  'brisk',
  'calm',
  'deft',
  'eager',
  'fond',
  'glad',
  'hardy',
  'keen',
  'lucid',
  'mellow',
  'nimble',
  'plucky',
  'quiet',
  'rapid',
  'steady',
  'tidy',
  'vivid',
  'wry',
  'zesty',
];
const NOUNS = [
  'otter',
  'heron',
  'badger',
  'lynx',
  'marten',
  'osprey',
  'plover',
  'raven',
  'stoat',
  'swift',
  'tern',
  'vole',
  'wren',
  'ibex',
  'gecko',
  'finch',
  'egret',
  'dingo',
  'civet',
  'bison',
];

/** A readable, probably-unique name; `random` is a parameter so tests can pin it. */
export function generateTaskName(random: () => number = Math.random): string {
  const pick = (list: readonly string[]): string => list[Math.floor(random() * list.length)] ?? list[0]!;
  const suffix = Math.floor(random() * 0x10000)
    .toString(16)
    .padStart(4, '0');
  return `${pick(ADJECTIVES)}-${pick(NOUNS)}-${suffix}`;
}

export function taskBranch(name: string): string {
  return `moat/${name}`;
}
