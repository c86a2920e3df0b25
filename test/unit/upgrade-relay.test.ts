import { IncomingMessage } from 'node:http';
import { Socket } from 'node:net';
import { Duplex, PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { handshakeHeaders, relayUpgraded, responseHead, upgradeRefusal } from '../../src/gateway/upgrade-relay.js';

/** The pure parts of relaying a WebSocket handshake on an inspected connection (upgrade-relay.ts). */
describe('WebSocket upgrades on inspected connections', () => {
  it('relays only WebSocket upgrades without a body', () => {
    expect(upgradeRefusal({ upgrade: 'websocket', connection: 'Upgrade' })).toBeUndefined();
    expect(upgradeRefusal({ upgrade: 'WebSocket' })).toBeUndefined();
    // After an h2c upgrade requests would flow unjudged.
    expect(upgradeRefusal({ upgrade: 'h2c' })).toContain('only WebSocket upgrades are relayed');
    expect(upgradeRefusal({ upgrade: 'websocket, h2c' })).toContain('only WebSocket upgrades');
    expect(upgradeRefusal({ upgrade: 'websocket', 'content-length': '5' })).toBe('a WebSocket handshake with a body');
    expect(upgradeRefusal({ upgrade: 'websocket', 'transfer-encoding': 'chunked' })).toBe('a WebSocket handshake with a body');
    expect(upgradeRefusal({ upgrade: 'websocket', 'content-length': '0' })).toBeUndefined();
  });

  it('sends the judged headers upstream with the two that ask for the upgrade', () => {
    expect(handshakeHeaders({ host: 'a.test', 'sec-websocket-key': 'k' })).toEqual({
      host: 'a.test',
      'sec-websocket-key': 'k',
      connection: 'Upgrade',
      upgrade: 'websocket',
    });
  });

  const response = (status: number, message: string, raw: string[]) => {
    const message_ = new IncomingMessage(new Socket());
    message_.statusCode = status;
    message_.statusMessage = message;
    message_.rawHeaders = raw;
    return message_;
  };

  it('passes a 101 back with every header, any other answer without its framing and with the connection closed', () => {
    const switching = response(101, 'Switching Protocols', ['Upgrade', 'websocket', 'Connection', 'Upgrade', 'Sec-WebSocket-Accept', 'abc=']);
    expect(responseHead(switching)).toBe('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: abc=\r\n\r\n');
    const refused = response(403, 'Forbidden\r\nX-Injected: 1', [
      'Content-Length',
      '4',
      'Transfer-Encoding',
      'chunked',
      'X-Reason',
      'no',
      'Connection',
      'keep-alive',
    ]);
    expect(responseHead(refused)).toBe('HTTP/1.1 403 ForbiddenX-Injected: 1\r\nX-Reason: no\r\nConnection: close\r\n\r\n');
  });

  it('relays both ways, counts the bytes, ends the other side when one ends, and reports once both closed', async () => {
    // Each side: what it sends (readable) and what it receives (writable), apart.
    const side = () => {
      const sends = new PassThrough();
      const receives = new PassThrough();
      return { sends, receives, socket: Duplex.from({ readable: sends, writable: receives }) };
    };
    const client = side();
    const upstream = side();
    const done = new Promise<[number, number]>((resolve) => relayUpgraded(client.socket, upstream.socket, (up, down) => resolve([up, down])));
    client.sends.write('hello');
    upstream.sends.write('welcome!');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(String(upstream.receives.read())).toBe('hello');
    expect(String(client.receives.read())).toBe('welcome!');
    // The upstream ends: the client is ended after what is in flight, and closes when it is done too.
    upstream.sends.end();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(client.receives.writableEnded).toBe(true);
    client.sends.end();
    expect(await done).toEqual([5, 8]);
    expect(client.socket.destroyed && upstream.socket.destroyed).toBe(true);
  });
});
