// The 1 MiB text file the stand-in benches read (bench/mcp-alternate.js, bench/mcp-fork-standin.js):
// base64 in lines of 76, as bench/mcp.js reads in a task, in a fresh folder the caller removes.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';

export function bigTextFile(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const file = join(dir, 'big.txt');
  writeFileSync(
    file,
    (
      randomBytes(786432)
        .toString('base64')
        .match(/.{1,76}/g) ?? []
    )
      .join('\n')
      .slice(0, 1048576),
  );
  return { dir, file };
}
