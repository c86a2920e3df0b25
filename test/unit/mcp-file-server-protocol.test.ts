import type { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import type { ContainerEngine } from '../../src/engine/engine.js';
import { FileServer } from '../../src/mcp/file-server.js';

/**
 * The host side of the resident file server trusts nothing the sandbox sends beyond its caps: the
 * agent can replace the server. A fake engine plays a server that answers with `reply`.
 */
function fakeEngine(reply: (request: Buffer) => Buffer) {
  const kills: string[][] = [];
  let end!: (status: number) => void;
  const engine = {
    exec: (_id: string, _command: unknown, io: { stdin: NodeJS.ReadableStream; stdout: Writable }) => {
      io.stdout.write(frame(0, [Buffer.from('42')]));
      io.stdin.on('data', (chunk: Buffer) => io.stdout.write(reply(chunk)));
      io.stdin.on('end', () => end(0));
      return new Promise<number>((resolve) => (end = resolve));
    },
    execCapture: async (_id: string, command: { cmd: string[] }) => {
      kills.push(command.cmd);
      end(137);
      return { exitCode: 0, stdout: Buffer.alloc(0), stderr: '' };
    },
  } as unknown as ContainerEngine;
  return { engine, kills };
}

function frame(status: number, fields: Buffer[]): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(status, 0);
  head.writeUInt32BE(fields.length, 4);
  return Buffer.concat([head, ...fields.flatMap((f) => [u32(f.length), f])]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

describe('resident file server: the host side', () => {
  it('takes an answer within its caps, in one piece or in many', async () => {
    const { engine } = fakeEngine(() => frame(0, [Buffer.from('5'), Buffer.from('hello')]));
    const server = await FileServer.start(engine, 'c', '1000:1000');
    expect(server).toBeInstanceOf(FileServer);
    const answer = await (server as FileServer).request(['read', 'f', '10'], [20, 10]);
    expect(answer.status).toBe(0);
    expect(answer.fields.map((f) => f.toString())).toEqual(['5', 'hello']);
  });

  it('kills a server that sends more than the request allows, before buffering it', async () => {
    const { engine, kills } = fakeEngine(() => Buffer.concat([u32(0), u32(2), u32(1), Buffer.from('5'), u32(2 ** 31)]));
    const server = (await FileServer.start(engine, 'c', '1000:1000')) as FileServer;
    await expect(server.request(['read', 'f', '10'], [20, 10])).rejects.toThrow(/out of protocol \(a field of 2147483648 bytes\)/);
    expect(kills).toEqual([['kill', '-KILL', '42']]);
    expect(server.alive).toBe(false);
  });

  it('refuses unknown statuses, extra fields and long failure messages', async () => {
    for (const bad of [frame(99, []), frame(0, [Buffer.from('1'), Buffer.from('2'), Buffer.from('3')]), frame(8, [Buffer.alloc(5000)])]) {
      const { engine, kills } = fakeEngine(() => bad);
      const server = (await FileServer.start(engine, 'c', '1000:1000')) as FileServer;
      await expect(server.request(['read', 'f', '10'], [20, 10])).rejects.toThrow(/out of protocol/);
      expect(kills.length).toBe(1);
    }
  });
});
