// The byte classes of HTTP's grammar, shared by the server's request parser
// (mod.ts) and the proxy's upstream client (_upstream.ts): lookup tables with
// one entry per byte, and the two checks a field line needs. Internal: not a
// package export.

/** Builds a 256-entry lookup table: 1 for each byte in `chars` or the ranges. */
export function byteTable(chars: string, ...ranges: [number, number][]): Uint8Array {
  const table = new Uint8Array(256);
  for (let i = 0; i < chars.length; i++) table[chars.charCodeAt(i)] = 1;
  for (const [from, to] of ranges) table.fill(1, from, to + 1);
  return table;
}

/** Digits and ASCII letters, as ranges for {@linkcode byteTable}. */
export const ALNUM: [number, number][] = [[48, 57], [65, 90], [97, 122]];
/** RFC 9110 §5.6.2 tchar. */
export const TCHAR: Uint8Array = byteTable("!#$%&'*+-.^_`|~", ...ALNUM);
/** RFC 9110 §5.5 field-vchar, SP and HTAB: what a field value may hold. */
export const FIELD_CHAR: Uint8Array = byteTable("\t ", [0x21, 0x7e], [0x80, 0xff]);

/** Whether `name` is an RFC 9110 token: a valid field name or method. */
export function isToken(name: string): boolean {
  if (name.length === 0) return false;
  for (let i = 0; i < name.length; i++) {
    const code = name.charCodeAt(i);
    if (code > 255 || TCHAR[code] !== 1) return false;
  }
  return true;
}

/** Whether `value` holds only what a field value may (no CR, LF, NUL or other controls). */
export function isFieldValue(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code > 255 || FIELD_CHAR[code] !== 1) return false;
  }
  return true;
}
