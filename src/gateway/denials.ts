import { chownSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { AuditRecord } from './audit.js';

/**
 * What a refused client is told, in words an agent can act on: that moat refused it, why, and
 * what a human can do. The same sentence goes into the 403's body, its Proxy-Status header
 * (RFC 9209, for clients that show headers) and the task's denials file in the sandbox.
 */
export type DenialKind = 'policy' | 'address' | 'dns' | 'connect' | 'proxy' | 'request' | 'rule';

const PROXY_STATUS_ERROR: Record<DenialKind, string> = {
  policy: 'http_request_denied',
  address: 'destination_ip_prohibited',
  dns: 'dns_error',
  connect: 'connection_refused',
  proxy: 'proxy_internal_error',
  request: 'http_request_error',
  rule: 'http_request_denied',
};

/** Where the sandbox reads its recent denials (the gateway's socket folder, mounted read-only). */
export const SANDBOX_DENIALS_FILE = '/moat/egress/denials';
export const DENIALS_NAME = 'denials';
/** Where `moat-why` sits in the sandbox: last on its PATH (sandbox-spec.ts), shadowing nothing. */
export const SANDBOX_BIN_DIR = '/moat/egress/bin';
export const MOAT_WHY_NAME = 'moat-why';

/**
 * `moat-why`: the task's recent refusals, read from the denials file, and how to ask a human for a
 * host. A constant script that only reads that file: it opens no connection and gives the sandbox
 * nothing it could not do with `cat`. It prints the file as the gateway wrote it (printable ASCII
 * only, see plain()). Shipped beside the file (read-only mount locally, pushed over exec on a
 * remote engine), so no image needs rebuilding.
 */
export const MOAT_WHY_SCRIPT = `#!/bin/sh
# moat-why (written by moat): this task's recent egress refusals, from ${SANDBOX_DENIALS_FILE}.
f=${SANDBOX_DENIALS_FILE}
if [ ! -s "$f" ]; then
  echo "moat-why: no egress denials recorded for this task: moat has refused none of its connections."
  exit 0
fi
echo "moat-why: this task's recent egress denials, oldest first (time, request, reason, what a human can do):"
cat "$f" || exit 1
echo "moat-why: to get a host allowed, tell the user which host and why the work needs it; only they can allow it, on their machine: moat allow \${MOAT_TASK:-TASK} HOST"
`;
const KEEP = 50;

/** Printable ASCII only: the text goes into a header and a terminal. */
function plain(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, 300);
}

export function denialSentence(task: string, host: string, port: number, rule: string, kind: DenialKind, pointer = true): string {
  const what = plain(`${host}:${port}`);
  const hint =
    kind === 'policy'
      ? `If the task needs it, ask the user to run: moat allow ${task} ${plain(host)}`
      : kind === 'address'
        ? "The name resolved to an address moat refuses; if that address is the network's own proxy, the user can admit its range (egress.allowAddresses in their moat config)"
        : kind === 'request'
          ? 'moat refuses a request of this form to any host'
          : kind === 'rule'
            ? `The user's method and path rules for ${plain(host)} do not admit this request; only the user can change them (egress.allow in their moat config)`
            : 'A network problem outside the sandbox; retry later or tell the user';
  return `moat: egress denied (${plain(rule)}) for ${what}. ${hint}.${pointer ? ` Recent denials: moat-why` : ''}`;
}

/**
 * A complete refusal: status line, Proxy-Status, body; the connection closes after it. The reason
 * phrase carries the reason too: for CONNECT, many clients show only the status line (Python's
 * "Tunnel connection failed: 403 …", curl -v), never the body.
 */
export function denialResponse(status: string, sentence: string, rule: string, kind: DenialKind): string {
  const body = `${sentence}\n`;
  const details = plain(rule).replace(/["\\]/g, "'");
  const code = status.slice(0, 3);
  return (
    `HTTP/1.1 ${code} moat refused: ${plain(rule).slice(0, 200)}\r\nProxy-Status: moat; error=${PROXY_STATUS_ERROR[kind]}; details="${details}"\r\n` +
    `X-Moat-Denied: ${plain(sentence)}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`
  );
}

/** The headers of a refusal an HTTP server object writes (inspected HTTPS): the same as denialResponse's. */
export function denialHeaders(sentence: string, rule: string, kind: DenialKind): { reason: string; headers: Record<string, string> } {
  const details = plain(rule).replace(/["\\]/g, "'");
  return {
    reason: `moat refused: ${plain(rule).slice(0, 200)}`,
    headers: {
      'proxy-status': `moat; error=${PROXY_STATUS_ERROR[kind]}; details="${details}"`,
      'x-moat-denied': plain(sentence),
      'content-type': 'text/plain; charset=utf-8',
      connection: 'close',
    },
  };
}

/**
 * Keeps the task's last denials in a small file beside the gateway's socket, readable in the
 * sandbox (read-only there) and by the sandbox's user alone on the host. Written whole, then
 * renamed: a reader never sees half a file.
 */
export function recordDenial(file: string, record: AuditRecord, owner?: { uid: number; gid: number }): void {
  let lines: string[] = [];
  try {
    lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    // first denial
  }
  lines.push(
    `${record.time} ${record.method}${record.path ? ` ${plain(record.path)}` : ''} ${denialSentence(record.task, record.host, record.port, record.rule, kindOf(record.rule), false)}`,
  );
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${lines.slice(-KEEP).join('\n')}\n`, { mode: 0o600 });
  if (owner && process.getuid?.() === 0) chownSync(tmp, owner.uid, owner.gid);
  renameSync(tmp, file);
}

/** The kind of a denial, from the rule text the audit line carries (for the denials file). */
export function kindOf(rule: string): DenialKind {
  if (rule.startsWith('rule ')) return 'rule';
  if (/ address .* refused$/.test(rule)) return 'address';
  if (rule === 'name did not resolve') return 'dns';
  if (rule.startsWith('could not')) return 'connect';
  if (rule.startsWith('the upstream proxy')) return 'proxy';
  if (/^(only absolute|invalid|bad Content-Length|chunked|Host header|tunnel without|TLS server name)/.test(rule)) return 'request';
  return 'policy';
}
