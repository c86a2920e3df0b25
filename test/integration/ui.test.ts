import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Moat } from '../../src/index.js';
import { startDashboard, type Dashboard } from '../../src/ui/server.js';
import { DnsStub } from '../helpers/dns-stub.js';
import { captureIO, eventually, gitIn, MOAT_BIN, Scratch } from '../helpers/fixtures.js';

/**
 * moat ui in a real browser (Debian's chromium, driven by playwright-core; no browser download),
 * against real sandboxes and the real gateway: tasks appear, egress arrives live, a held request
 * is answered with a click and the sandbox's waiting curl goes through or is refused with the
 * reason, a flagged diff is reviewed and merged. Hostile names, messages and hosts from the
 * sandbox must stay text (a marker their script would set stays unset), and requests without the
 * token, from a foreign origin or through a rebinding Host are refused without effect.
 */
const CHROMIUM = '/usr/bin/chromium';
const TOKEN = 'test-token-0123456789abcdef';
const DOCS = join(import.meta.dirname, '..', '..', 'docs');

describe('moat ui', () => {
  const scratch = new Scratch();
  const dns = new DnsStub({
    'allowed.test': '127.0.0.1',
    'ask.test': '127.0.0.1',
    'refused.test': '127.0.0.1',
    'always.test': '127.0.0.1',
    'late.test': '127.0.0.1',
    'fortask.test': '127.0.0.1',
  });
  let upstream: Server;
  let port = 0;
  let moat: Moat;
  let dashboard: Dashboard;
  let browser: BrowserContext;
  let page: Page;
  let profile: string;

  beforeAll(async () => {
    await dns.start();
    upstream = createServer((req, res) => res.end(`upstream saw ${req.url}\n`));
    port = await new Promise<number>((resolve) => upstream.listen(0, '127.0.0.1', () => resolve((upstream.address() as { port: number }).port)));
    scratch.writeConfig('network: allowlist\negress:\n  ask: true\n  askSeconds: 45\n  allow: [allowed.test, 127.0.0.1/32]\n');
    const env = { MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}` };
    moat = scratch.moat({ env });
    await moat.up({ task: 'net', network: 'allowlist' });
    dashboard = await startDashboard(moat.context, { token: TOKEN, env: scratch.env(env) });
    profile = mkdtempSync(join(tmpdir(), 'moat-ui-chromium-'));
    browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
      viewport: { width: 1400, height: 800 },
    });
    page = browser.pages()[0] ?? (await browser.newPage());
    // Accept the page's confirmations (down, rm, merge, allow always): the human said yes.
    page.on('dialog', (dialog) => void dialog.accept());
    await page.goto(dashboard.loginUrl);
  });

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    if (profile) rmSync(profile, { recursive: true, force: true });
    await dashboard?.close();
    upstream?.close();
    dns.stop();
    await scratch.cleanup();
  });

  /** Runs a command in the sandbox without waiting for it. */
  function inSandbox(task: string, script: string): { done: Promise<string> } {
    const cap = captureIO();
    return { done: moat.exec(task, ['sh', '-c', script], cap.io, { sync: false }).then(() => cap.out()) };
  }
  const marker = () => page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned);

  it('keeps the token out of the address bar, and shows tasks as they are created', async () => {
    expect(page.url()).toBe(dashboard.url);
    await page.getByTestId('nav-tasks').click();
    await expect.poll(() => page.locator('[data-testid=task-row][data-task=net]').count(), { timeout: 10_000 }).toBe(1);
    await moat.up({ task: 'second', network: 'none' });
    await expect.poll(() => page.locator('[data-testid=task-row][data-task=second]').count(), { timeout: 10_000 }).toBe(1);
    mkdirSync(DOCS, { recursive: true });
    await page.screenshot({ path: join(DOCS, 'ui-tasks.png') });
  });

  it('shows an egress attempt live, and filters by decision', async () => {
    await page.getByTestId('nav-egress').click();
    const out = await inSandbox('net', `curl -sS -m 10 http://allowed.test:${port}/live`).done;
    expect(out).toContain('upstream saw /live');
    const row = page.locator('[data-testid=egress-row]', { hasText: 'allowed.test' });
    await expect.poll(() => row.count(), { timeout: 10_000 }).toBeGreaterThan(0);
    await page.getByTestId('filter-decision').selectOption('denied');
    expect(await row.count()).toBe(0);
    await page.getByTestId('filter-decision').selectOption('');
    await page.screenshot({ path: join(DOCS, 'ui-egress.png') });
  });

  it("follows a task's logs as the container writes them (one stream, no re-fetch), and says when the container stopped", async () => {
    await moat.up({ task: 'logs', network: 'none' });
    const asked: string[] = [];
    const onRequest = (r: { url(): string }) => void (r.url().includes('/api/logs') && asked.push(new URL(r.url()).pathname));
    page.on('request', onRequest);
    try {
      await page.getByTestId('nav-tasks').click();
      await expect.poll(() => page.locator('[data-testid=task-row][data-task=logs]').count(), { timeout: 10_000 }).toBe(1);
      await page.locator('[data-testid=task-row][data-task=logs]').getByRole('button', { name: 'Logs' }).click();
      await expect.poll(() => page.getByTestId('logs').innerText(), { timeout: 10_000 }).not.toBe('loading…');
      // The container's own output (its main process's): written after the page opened the view, hostile text included.
      await inSandbox('logs', 'for i in 1 2 3; do echo "streamed-line-$i <img src=x onerror=window.__pwned=6>" > /proc/1/fd/1; sleep 0.5; done').done;
      await expect.poll(() => page.getByTestId('logs').innerText(), { timeout: 10_000 }).toContain('streamed-line-3');
      const text = await page.getByTestId('logs').innerText();
      expect(text.indexOf('streamed-line-1')).toBeLessThan(text.indexOf('streamed-line-3'));
      expect(text.split('streamed-line-2').length).toBe(2);
      expect(await marker()).toBeUndefined();
      await moat.down('logs');
      await expect.poll(() => page.getByTestId('logs-state').innerText(), { timeout: 15_000 }).toContain('the container stopped');
      // One followed stream, never a re-fetch of the tail.
      expect(asked).toEqual(['/api/logs/stream']);
    } finally {
      page.off('request', onRequest);
      await page.getByTestId('nav-tasks').click();
      await moat.rm('logs', { force: true });
    }
  });

  it('holds a request for a host neither allowed nor denied; "allow once" lets the waiting curl through', async () => {
    const held = inSandbox('net', `curl -sS -m 50 http://ask.test:${port}/approved 2>&1; echo "exit=$?"`);
    await page.getByTestId('nav-pending').click();
    const card = page.locator('[data-testid=pending][data-host="ask.test"]');
    await expect.poll(() => card.count(), { timeout: 15_000 }).toBe(1);
    // The CLI's view of the same queue.
    expect((await moat.pending()).map((r) => `${r.task} ${r.host}:${r.port}`)).toEqual([`net ask.test:${port}`]);
    await page.screenshot({ path: join(DOCS, 'ui-pending.png') });
    await card.getByTestId('allow-once').click();
    const out = await held.done;
    expect(out).toContain('upstream saw /approved');
    const audit = await eventually(
      () => moat.egress('net'),
      (a) => a.some((r) => r.host === 'ask.test'),
      5000,
    );
    expect(audit.find((r) => r.host === 'ask.test')).toMatchObject({ decision: 'allowed', rule: expect.stringContaining('allowed once by a human (ui)') });
    // Once means once: the task's policy did not change.
    expect((await moat.context.store.get((await moat.context.repo()).key, 'net'))?.egress?.allow ?? []).not.toContain('ask.test');
    await expect.poll(() => card.count(), { timeout: 5_000 }).toBe(0);
  });

  it('"allow for this task" lets the waiting curl through and the task\'s next requests pass unasked; your config is unchanged', async () => {
    const config = readFileSync(scratch.config, 'utf8');
    const held = inSandbox('net', `curl -sS -m 50 http://fortask.test:${port}/first 2>&1; echo "exit=$?"`);
    await page.getByTestId('nav-pending').click();
    const card = page.locator('[data-testid=pending][data-host="fortask.test"]');
    await expect.poll(() => card.count(), { timeout: 15_000 }).toBe(1);
    await card.getByTestId('allow-task').click();
    expect(await held.done).toContain('upstream saw /first');
    const stored = (await moat.context.store.get((await moat.context.repo()).key, 'net'))?.egress?.allow ?? [];
    expect(stored.some((rule) => rule.startsWith('fortask.test'))).toBe(true);
    // The next request of the task goes through at once: nothing is held, nothing asked.
    expect(await inSandbox('net', `curl -sS -m 10 http://fortask.test:${port}/second 2>&1`).done).toContain('upstream saw /second');
    expect((await moat.pending()).filter((r) => r.host === 'fortask.test')).toEqual([]);
    // For this task only: the user's config (what every other task starts from) did not change.
    expect(readFileSync(scratch.config, 'utf8')).toBe(config);
    const audit = await eventually(
      () => moat.egress('net'),
      (a) => a.filter((r) => r.host === 'fortask.test').length >= 2,
      5000,
    );
    expect(audit.filter((r) => r.host === 'fortask.test').map((r) => r.decision)).toEqual(['allowed', 'allowed']);
  });

  it('"deny" refuses the waiting curl with the reason, audited', async () => {
    const held = inSandbox('net', `curl -sS -m 50 http://refused.test:${port}/no 2>&1; echo "exit=$?"`);
    const card = page.locator('[data-testid=pending][data-host="refused.test"]');
    await expect.poll(() => card.count(), { timeout: 15_000 }).toBe(1);
    await card.getByTestId('deny').click();
    const out = await held.done;
    expect(out).not.toContain('upstream saw');
    expect(out).toContain('denied by a human (ui)');
    const audit = await eventually(
      () => moat.egress('net'),
      (a) => a.some((r) => r.host === 'refused.test'),
      5000,
    );
    expect(audit.find((r) => r.host === 'refused.test')).toMatchObject({ decision: 'denied', rule: expect.stringContaining('denied by a human (ui)') });
  });

  /** The real CLI, in its own process (no warm server), in the scratch repository. */
  const cli = (args: string[], extra: Record<string, string> = {}) =>
    new Promise<{ code: number; out: string; err: string }>((resolve) => {
      execFile(
        process.execPath,
        [MOAT_BIN, ...args],
        { cwd: scratch.repo, env: scratch.env({ MOAT_SERVER: 'off', MOAT_GATEWAY_DNS: `127.0.0.1:${dns.port}`, ...extra }) },
        (error, out, err) => resolve({ code: error ? Number((error as { code?: number }).code ?? 1) : 0, out, err }),
      );
    });

  it('the CLI lists a held request and answers it "always": the curl goes through and your config gains the host', async () => {
    const held = inSandbox('net', `curl -sS -m 50 http://always.test:${port}/cli 2>&1; echo "exit=$?"`);
    await eventually(
      () => moat.pending(),
      (p) => p.some((r) => r.host === 'always.test'),
      15_000,
    );
    const listed = await cli(['egress', '--pending', '--json']);
    expect(listed.code).toBe(0);
    expect(
      listed.out
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as { host: string; task: string }),
    ).toEqual([expect.objectContaining({ task: 'net', host: 'always.test' })]);
    const answered = await cli(['allow', 'net', 'always.test', '--always']);
    expect(answered.code, answered.err).toBe(0);
    expect(await held.done).toContain('upstream saw /cli');
    // The rule is the host and the port asked (a web port would give the bare name).
    expect(readFileSync(scratch.config, 'utf8')).toContain(`always.test:${port}`);
    expect((await moat.context.store.get((await moat.context.repo()).key, 'net'))?.egress?.allow).toContain(`always.test:${port}`);
    // Nothing waits any more: answering again is a clear not-found.
    const again = await cli(['allow', 'net', 'always.test', '--once']);
    expect(again.code).toBe(6);
    expect(again.err).toContain('no request of task net is waiting');
  });

  it('no answer in time is a refusal with the reason, audited', async () => {
    // The user's config is read afresh whenever the task's policy is written (here by moat allow).
    scratch.writeConfig('network: allowlist\negress:\n  ask: true\n  askSeconds: 2\n  allow: [allowed.test, 127.0.0.1/32]\n');
    await moat.changeEgress('net', { allow: ['allowed.test'] });
    const out = await inSandbox('net', `curl -sS -m 50 http://late.test:${port}/late 2>&1; echo "exit=$?"`).done;
    expect(out).not.toContain('upstream saw');
    expect(out).toContain('no answer within 2s');
    const audit = await eventually(
      () => moat.egress('net'),
      (a) => a.some((r) => r.host === 'late.test'),
      5000,
    );
    expect(audit.find((r) => r.host === 'late.test')).toMatchObject({ decision: 'denied', rule: expect.stringContaining('no answer within 2s (egress.ask)') });
    expect(await moat.pending()).toEqual([]);
  });

  it('moat ui takes its token from the environment, and --json to a pipe prints no token', async () => {
    const child = spawn(process.execPath, [MOAT_BIN, 'ui', '--json'], {
      cwd: scratch.repo,
      env: scratch.env({ MOAT_SERVER: 'off', MOAT_UI_TOKEN: 'env-token-0123456789abcdef' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      await eventually(
        async () => out,
        (o) => o.includes('}'),
        15_000,
      );
      const printed = JSON.parse(out) as { url: string; loginUrl?: string };
      expect(out).not.toContain('env-token');
      expect(printed.loginUrl).toBeUndefined();
      const { port: uiPort } = new URL(printed.url);
      const tasks = await fetch(new URL('/api/tasks', printed.url), { headers: { Cookie: `moat_ui_${uiPort}=env-token-0123456789abcdef` } });
      expect(tasks.status).toBe(200);
    } finally {
      child.kill('SIGTERM');
    }
  });

  it('shows hostile names, messages and hosts as text; no script of theirs runs', async () => {
    const hostile = [
      'mkdir -p "d" && printf x > "d/<img src=x onerror=window.__pwned=1>.txt"',
      'printf x > "javascript:window.__pwned=2"',
      `printf x > "$(printf 'ctl\\033[2J\\342\\200\\256txt.sh')"`,
      'git add -A && git commit -qm "<script>window.__pwned=3</script> \\"><img src=x onerror=window.__pwned=4>"',
      // A request target the gateway refuses; its text reaches the audit log and the live view.
      `curl -sS -m 5 -x http://127.0.0.1:3128 --request-target '"><img/src=x/onerror=window.__pwned=5>' http://x.test/ >/dev/null 2>&1; true`,
    ].join(' && ');
    await inSandbox('net', hostile).done;
    await page.getByTestId('nav-egress').click();
    const evil = page.locator('[data-testid=egress-row]', { hasText: 'onerror=window.__pwned=5' });
    await expect.poll(() => evil.count(), { timeout: 10_000 }).toBeGreaterThan(0);
    await page.getByTestId('nav-tasks').click();
    await page.locator('[data-testid=task-row][data-task=net]').getByTestId('review').click();
    await expect.poll(() => page.getByTestId('patch').count(), { timeout: 30_000 }).toBe(1);
    const files = await page.getByTestId('files').innerText();
    expect(files).toContain('d/<img src=x onerror=window.__pwned=1>.txt');
    expect(files).toContain('javascript:window.__pwned=2');
    // The control and bidi characters show as escapes.
    expect(files).toContain('ctl\\x1b[2J\\u{202e}txt.sh');
    expect(await page.locator('img, script:not([src="/app.js"]), a[href]').count()).toBe(0);
    expect(await marker()).toBeUndefined();
  });

  it('reviews a diff with a flagged file first, and merges it after the confirmation', async () => {
    await inSandbox('net', 'printf "#!/bin/sh\\necho hi\\n" > tool.sh && chmod +x tool.sh && git add -A && git commit -qm "add tool"').done;
    await page.getByTestId('nav-tasks').click();
    await page.locator('[data-testid=task-row][data-task=net]').getByTestId('review').click();
    await expect.poll(() => page.locator('[data-testid=flagged-file]', { hasText: 'tool.sh' }).count(), { timeout: 30_000 }).toBe(1);
    // Flagged files come first.
    const rows = await page.locator('[data-testid=files] tbody tr').evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-testid')));
    expect(rows.slice(rows.indexOf('file') === -1 ? rows.length : rows.indexOf('file'))).not.toContain('flagged-file');
    expect(rows).toContain('flagged-file');
    await page.screenshot({ path: join(DOCS, 'ui-review.png') });
    const before = gitIn(scratch.repo, 'rev-parse', 'HEAD').trim();
    await page.getByTestId('merge').click();
    // The CLI's refusal: flagged files need an explicit yes.
    await expect.poll(() => page.getByTestId('confirm').count(), { timeout: 15_000 }).toBe(1);
    expect(gitIn(scratch.repo, 'rev-parse', 'HEAD').trim()).toBe(before);
    await page.getByTestId('merge-anyway').click();
    await expect.poll(() => page.getByTestId('status').innerText(), { timeout: 15_000 }).toContain('merged');
    expect(gitIn(scratch.repo, 'log', '--format=%s', '-3')).toContain('add tool');
    expect(await marker()).toBeUndefined();
  });

  it('refuses requests without the token, from a foreign origin, or through a rebinding Host, and nothing changes', async () => {
    const { port: uiPort } = new URL(dashboard.url);
    const cookie = `moat_ui_${uiPort}=${TOKEN}`;
    const call = (method: string, path: string, headers: Record<string, string>, body?: string) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = request({ host: '127.0.0.1', port: Number(uiPort), method, path, headers }, (res) => {
          let text = '';
          res.on('data', (c: Buffer) => (text += c.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        });
        req.on('error', reject);
        req.end(body);
      });
    const host = `127.0.0.1:${uiPort}`;
    const rm = JSON.stringify({ repoKey: (await moat.context.repo()).key, task: 'second', action: 'rm', force: true });
    expect((await call('GET', '/api/tasks', { Host: host })).status).toBe(403);
    expect((await call('GET', '/?token=wrong-token-0123456789', { Host: host })).status).toBe(403);
    expect((await call('GET', '/api/tasks', { Host: `rebind.example:${uiPort}`, Cookie: cookie })).status).toBe(403);
    expect(
      (await call('POST', '/api/task', { Host: host, Cookie: cookie, Origin: 'http://evil.example', 'Content-Type': 'application/json' }, rm)).status,
    ).toBe(403);
    expect((await call('POST', '/api/task', { Host: host, Cookie: cookie, 'Content-Type': 'application/json' }, rm)).status).toBe(403);
    expect(
      (
        await call(
          'POST',
          '/api/task',
          { Host: `rebind.example:${uiPort}`, Cookie: cookie, Origin: `http://rebind.example:${uiPort}`, 'Content-Type': 'application/json' },
          rm,
        )
      ).status,
    ).toBe(403);
    expect((await call('POST', '/api/task', { Host: host, Origin: `http://${host}`, 'Content-Type': 'application/json' }, rm)).status).toBe(403);
    expect(await moat.context.store.get((await moat.context.repo()).key, 'second')).toBeDefined();
    // With everything right, the same request is served: the refusals above were the checks.
    const ok = await call('GET', '/api/tasks', { Host: host, Cookie: cookie });
    expect(ok.status).toBe(200);
    expect(
      JSON.parse(ok.text)
        .map((t: { name: string }) => t.name)
        .sort(),
    ).toEqual(['net', 'second']);
    const page = await call('GET', '/', { Host: host, Cookie: cookie });
    expect(page.text).not.toMatch(/<script>|\son[a-z]+=/);
  });
});
