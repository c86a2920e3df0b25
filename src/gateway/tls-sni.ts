/**
 * Reads the server name (SNI) from a TLS ClientHello, pure. The gateway compares it with the
 * CONNECT host so that a tunnel opened for an allowed name cannot carry TLS for another one
 * (domain fronting through a shared front end).
 */
export type SniResult = { kind: 'sni'; name: string } | { kind: 'no-sni' } | { kind: 'incomplete' } | { kind: 'not-tls' };

export function readSni(data: Buffer): SniResult {
  if (data.length < 5) return { kind: 'incomplete' };
  // Record: handshake (22), version 3.x, length.
  if (data[0] !== 22 || data[1] !== 3) return { kind: 'not-tls' };
  const recordLength = data.readUInt16BE(3);
  if (data.length < 5 + recordLength) return { kind: 'incomplete' };
  let pos = 5;
  if (data[pos] !== 1) return { kind: 'not-tls' }; // ClientHello
  const helloLength = data.readUIntBE(pos + 1, 3);
  // A ClientHello split over several records is rare; we require it in the first one.
  if (helloLength + 4 > recordLength) return { kind: 'not-tls' };
  const end = pos + 4 + helloLength;
  pos += 4 + 2 + 32; // type+length, version, random
  if (pos + 1 > end) return { kind: 'not-tls' };
  pos += 1 + data[pos]!; // session id
  if (pos + 2 > end) return { kind: 'not-tls' };
  pos += 2 + data.readUInt16BE(pos); // cipher suites
  if (pos + 1 > end) return { kind: 'not-tls' };
  pos += 1 + data[pos]!; // compression methods
  if (pos + 2 > end) return { kind: 'no-sni' };
  const extensionsEnd = pos + 2 + data.readUInt16BE(pos);
  pos += 2;
  if (extensionsEnd > end) return { kind: 'not-tls' };
  const names: string[] = [];
  while (pos + 4 <= extensionsEnd) {
    const type = data.readUInt16BE(pos);
    const length = data.readUInt16BE(pos + 2);
    pos += 4;
    if (pos + length > extensionsEnd) return { kind: 'not-tls' };
    if (type === 0) {
      let p = pos + 2;
      const listEnd = pos + 2 + data.readUInt16BE(pos);
      while (p + 3 <= listEnd) {
        const nameType = data[p]!;
        const nameLength = data.readUInt16BE(p + 1);
        if (nameType === 0) names.push(data.subarray(p + 3, p + 3 + nameLength).toString('latin1'));
        p += 3 + nameLength;
      }
    }
    pos += length;
  }
  // More than one host name is not allowed by the RFC, and is exactly how a check is dodged.
  if (names.length > 1) return { kind: 'not-tls' };
  return names.length === 1 ? { kind: 'sni', name: names[0]! } : { kind: 'no-sni' };
}
