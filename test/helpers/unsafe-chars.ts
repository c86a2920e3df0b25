/**
 * What a terminal must never get raw from a sandbox, built here independently of
 * src/domain/terminal-text.ts: every code point is looked up property by property, and a list of
 * code points known to hide or reorder text (spelled out, not derived) must all be in the set.
 */

/** Known offenders, by code point: if Unicode's tables or the runtime ever dropped one, the tests say so. */
export const KNOWN_INVISIBLE = [
  0x00,
  0x07,
  0x08,
  0x0d,
  0x1b,
  0x7f, // C0: NUL, BEL, BS, CR, ESC; DEL
  0x85,
  0x90,
  0x9b,
  0x9c,
  0x9d, // C1: NEL, DCS, CSI, ST, OSC
  0xad,
  0x34f,
  0x61c,
  0x180e, // soft hyphen, combining grapheme joiner, Arabic letter mark, Mongolian vowel separator
  0x115f,
  0x1160,
  0x3164,
  0xffa0, // Hangul fillers
  0x200b,
  0x200c,
  0x200d,
  0x200e,
  0x200f, // zero-width space, non-joiner, joiner; LRM, RLM
  0x2028,
  0x2029, // line and paragraph separators
  0x202a,
  0x202b,
  0x202c,
  0x202d,
  0x202e, // bidi embeddings and overrides
  0x2060,
  0x2061,
  0x2064,
  0x2066,
  0x2067,
  0x2068,
  0x2069, // word joiner, invisible operators, isolates
  0xfe00,
  0xfe0f,
  0xfeff,
  0xfff9,
  0xfffb, // variation selectors, BOM, interlinear annotations
  0x1bca0,
  0x1d173, // shorthand format controls, musical symbol begin beam
  0xe0001,
  0xe0041,
  0xe007f,
  0xe0100,
  0xe01ef, // tag characters, variation selectors supplement
];

const PROPERTIES = ['Cc', 'Cf', 'Zl', 'Zp', 'Default_Ignorable_Code_Point'].map((name) => new RegExp(`^\\p{${name}}$`, 'u'));

function build(): Set<number> {
  const set = new Set<number>();
  for (let code = 0; code <= 0x10ffff; code += 1) {
    if (code >= 0xd800 && code <= 0xdfff) continue;
    const char = String.fromCodePoint(code);
    if (PROPERTIES.some((property) => property.test(char))) set.add(code);
  }
  return set;
}

/** Every code point a terminal must not get raw. */
export const UNSAFE_CODE_POINTS = build();

/** The first character a terminal must not get raw, with some context around it; LF and TAB allowed when `lines`. */
export function firstRaw(text: string, lines = false): string | undefined {
  let index = 0;
  for (const char of text) {
    const code = char.codePointAt(0)!;
    if (UNSAFE_CODE_POINTS.has(code) && !(lines && (char === '\n' || char === '\t'))) {
      const around = text.slice(Math.max(0, index - 40), index + 40);
      return JSON.stringify(around).replace(/[^\x20-\x7e]/gu, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
    }
    index += char.length;
  }
  return undefined;
}
