import { PassThrough } from 'node:stream';
import { MoatError } from '../errors.js';
import type { ContainerEngine, ExecCommand } from './engine.js';

/** Runs a command through an engine's streaming exec and collects its output, up to `maxBytes` of stdout. */
export async function captureExec(
  engine: Pick<ContainerEngine, 'exec'>,
  id: string,
  command: ExecCommand,
  maxBytes = 16 * 1024 * 1024,
): Promise<{ exitCode: number; stdout: Buffer; stderr: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  let overflow = false;
  const stdout = new PassThrough();
  stdout.on('data', (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxBytes) overflow = true;
    else chunks.push(chunk);
  });
  const errChunks: Buffer[] = [];
  const stderr = new PassThrough();
  stderr.on('data', (chunk: Buffer) => {
    if (errChunks.length < 64) errChunks.push(chunk);
  });
  const exitCode = await engine.exec(id, command, { stdout, stderr });
  if (overflow) {
    throw new MoatError('E_SYNC_FAILED', `output of ${command.cmd[0]} in the sandbox exceeded ${maxBytes} bytes`, {
      hint: 'the task produced more data than moat accepts in one go',
    });
  }
  return { exitCode, stdout: Buffer.concat(chunks), stderr: Buffer.concat(errChunks).toString('utf8') };
}
