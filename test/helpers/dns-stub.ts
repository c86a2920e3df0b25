import { createSocket, type Socket } from 'node:dgram';

/**
 * A DNS server for tests, on loopback: answers A queries from a fixed table, NXDOMAIN otherwise,
 * and records every name it was asked, so a test can prove that a denied name was never looked up.
 */
export class DnsStub {
  readonly queries: string[] = [];
  private socket?: Socket;
  port = 0;

  constructor(private readonly table: Record<string, string>) {}

  async start(): Promise<void> {
    const socket = createSocket('udp4');
    this.socket = socket;
    socket.on('message', (msg, rinfo) => {
      const answer = this.answer(msg);
      if (answer) socket.send(answer, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
    this.port = socket.address().port;
  }

  stop(): void {
    this.socket?.close();
  }

  private answer(msg: Buffer): Buffer | undefined {
    if (msg.length < 12) return undefined;
    let pos = 12;
    const labels: string[] = [];
    while (pos < msg.length && msg[pos] !== 0) {
      const len = msg[pos]!;
      labels.push(msg.subarray(pos + 1, pos + 1 + len).toString('latin1'));
      pos += 1 + len;
    }
    const questionEnd = pos + 5;
    const qtype = msg.readUInt16BE(pos + 1);
    const name = labels.join('.').toLowerCase();
    this.queries.push(name);
    const address = this.table[name];
    const header = Buffer.from(msg.subarray(0, 12));
    header.writeUInt16BE(0x8180 | (address ? 0 : 3), 2); // response, recursion available, NXDOMAIN if unknown
    header.writeUInt16BE(1, 4);
    const question = msg.subarray(12, questionEnd);
    if (!address || qtype !== 1) {
      header.writeUInt16BE(0, 6);
      if (address) header.writeUInt16BE(0x8180, 2); // name exists, no record of that type
      return Buffer.concat([header, question]);
    }
    header.writeUInt16BE(1, 6);
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question name
    rr.writeUInt16BE(1, 2); // A
    rr.writeUInt16BE(1, 4); // IN
    rr.writeUInt32BE(5, 6); // TTL
    rr.writeUInt16BE(4, 10);
    address.split('.').forEach((octet, i) => rr.writeUInt8(Number(octet), 12 + i));
    return Buffer.concat([header.subarray(0, 8), Buffer.from([0, 0, 0, 0]), question, rr]);
  }
}
