import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadTemplate } from '../../src/image/template.js';
import { BUILTIN_TEMPLATES_DIR } from '../../src/image/template-image.js';

/**
 * The Codex CLI on the host, at the version the codex template pins (one pin for the sandbox and
 * for this), installed from npm into `${MOAT_TEST_CACHE:-/var/cache/moat-test}/codex-<version>`:
 * the first run downloads it (CI starts from nothing), later runs find it there. Installed into a
 * scratch folder and renamed into place, so an interrupted install is never taken for a good one.
 */
export async function hostCodex(): Promise<{ bin: string; version: string }> {
  const pkg = (await loadTemplate(BUILTIN_TEMPLATES_DIR, 'codex')).args?.AGENT_PACKAGE ?? '';
  const version = /^@openai\/codex@(\d+\.\d+\.\d+)$/.exec(pkg)?.[1];
  if (!version) throw new Error(`templates/codex/template.yaml pins no exact @openai/codex version: ${pkg}`);
  const cache = process.env.MOAT_TEST_CACHE || '/var/cache/moat-test';
  const dir = join(cache, `codex-${version}`);
  const bin = join(dir, 'node_modules', '.bin', 'codex');
  if (!existsSync(bin)) {
    mkdirSync(cache, { recursive: true });
    const partial = `${dir}.partial-${process.pid}`;
    rmSync(partial, { recursive: true, force: true });
    execFileSync('npm', ['install', '--prefix', partial, '--no-audit', '--no-fund', '--loglevel=error', pkg], { stdio: 'inherit', timeout: 300_000 });
    try {
      renameSync(partial, dir);
    } catch (error) {
      // Another run put it there first: theirs is as good.
      rmSync(partial, { recursive: true, force: true });
      if (!existsSync(bin)) throw error;
    }
  }
  const said = execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim();
  if (!said.endsWith(version)) throw new Error(`${bin} says ${said}, expected ${version}`);
  return { bin, version };
}
