/**
 * A template's home files may name a bound secret's placeholder, for agent CLIs that remember
 * which key the user approved (Claude Code keeps the last 20 characters of an approved key and
 * otherwise asks "use this API key?" on every fresh home). `{{placeholder:NAME}}` is the
 * placeholder the sandbox sees in NAME, `{{placeholder:NAME:-20}}` its last 20 characters; a
 * secret that is not bound gives an empty string. Only placeholders: a real value never reaches
 * a file in the sandbox.
 */
export function renderHomeFile(content: string, placeholders: ReadonlyMap<string, string>): string {
  return content.replace(/\{\{placeholder:([A-Za-z_][A-Za-z0-9_]*)(?::-(\d{1,3}))?\}\}/g, (_match, name: string, tail?: string) => {
    const placeholder = placeholders.get(name) ?? '';
    return tail === undefined ? placeholder : placeholder.slice(-Number(tail));
  });
}
