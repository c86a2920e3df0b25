import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * A certificate authority made for one task. Its key never leaves the host; its certificate is
 * given to that task's sandbox only, so interception works for that sandbox and nobody else,
 * and only for the hosts a secret is bound to (the gateway asks for leaves for those alone).
 */
export interface TaskCa {
  key: string;
  cert: string;
}

const OPENSSL_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin' };

export function createTaskCa(dir: string, task: string): TaskCa {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = join(dir, 'ca.key');
  const cert = join(dir, 'ca.pem');
  if (!existsSync(cert)) {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '90',
        '-subj',
        `/CN=moat task ${task} ${randomBytes(4).toString('hex')}`,
        '-addext',
        'basicConstraints=critical,CA:TRUE,pathlen:0',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
      ],
      { stdio: 'ignore', env: OPENSSL_ENV },
    );
  }
  return { key, cert };
}

/** A leaf certificate for one bound host, signed by the task's CA; made once, then reused. */
export function leafFor(ca: TaskCa, host: string): { key: string; cert: string } {
  const dir = join(ca.key, '..', 'leaves');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = join(dir, `${host}.key`);
  const cert = join(dir, `${host}.pem`);
  if (!existsSync(cert)) {
    const csr = execFileSync(
      'openssl',
      [
        'req',
        '-new',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:P-256',
        '-nodes',
        '-keyout',
        key,
        '-subj',
        `/CN=${host}`,
        '-addext',
        `subjectAltName=DNS:${host}`,
      ],
      { env: OPENSSL_ENV, stdio: ['ignore', 'pipe', 'ignore'] },
    );
    const signed = execFileSync(
      'openssl',
      ['x509', '-req', '-CA', ca.cert, '-CAkey', ca.key, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '30', '-copy_extensions', 'copy'],
      { input: csr, env: OPENSSL_ENV, stdio: ['pipe', 'pipe', 'ignore'] },
    );
    writeFileSync(cert, signed);
  }
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8') };
}
