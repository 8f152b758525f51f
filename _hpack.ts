/**
 * HPACK, header compression for HTTP/2 (RFC 7541), written for brick's
 * HTTP/2 engine (http2.ts). Internal: not exported from deno.json.
 *
 * - {@linkcode HpackDecoder} turns a header block into name/value pairs. It
 *   keeps the dynamic table (§2.3.2, §4), applies size updates (§6.3) within
 *   the limit the server announced in SETTINGS_HEADER_TABLE_SIZE, and bounds
 *   every cost by the input: a string's length is checked against the bytes
 *   left before anything is allocated, integers are capped, and the decoded
 *   list is measured against `maxHeaderListSize` (name + value + 32 per field,
 *   RFC 9113 §6.5.2) so that a small block that names a large table entry
 *   many times (an "HPACK bomb") cannot grow the output past that limit.
 * - {@linkcode HpackEncoder} turns fields into a header block, with the static
 *   table, a dynamic table of its own size (bounded by the peer's setting) and
 *   Huffman coding where it is shorter.
 * - {@linkcode huffmanEncode} / {@linkcode huffmanDecode}: the code of
 *   Appendix B. Decoding rejects EOS and padding that is longer than 7 bits or
 *   not all ones (§5.2).
 *
 * Every malformed input throws {@linkcode HpackError}; HTTP/2 maps it to a
 * connection error of type COMPRESSION_ERROR (RFC 9113 §4.3).
 *
 * @module
 */

// ─── 1. Errors ──────────────────────────────────────────────────────────────

/** A header block that cannot be decoded: a COMPRESSION_ERROR in HTTP/2. */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "HpackError";
  }
}

// ─── 2. Integers (§5.1) ─────────────────────────────────────────────────────

/**
 * The largest integer brick decodes: 2^31 - 1. Nothing in HPACK needs more
 * (indexes, lengths and table sizes are far smaller), and the cap keeps the
 * arithmetic exact.
 */
const MAX_INTEGER = 0x7fff_ffff;

/** A decoded integer and the offset just past it. */
interface Decoded {
  value: number;
  end: number;
}

/**
 * Reads an integer with an `prefixBits`-bit prefix starting at `buf[pos]`
 * (the bits above the prefix belong to the caller).
 */
export function decodeInteger(buf: Uint8Array, pos: number, prefixBits: number): Decoded {
  if (pos >= buf.length) throw new HpackError("Header block ends inside an integer");
  const max = (1 << prefixBits) - 1;
  let value = buf[pos++] & max;
  if (value < max) return { value, end: pos };
  let shift = 0;
  while (true) {
    if (pos >= buf.length) throw new HpackError("Header block ends inside an integer");
    const byte = buf[pos++];
    value += (byte & 0x7f) * 2 ** shift;
    if (value > MAX_INTEGER) {
      throw new HpackError(`Integer in header block is over the limit: above ${MAX_INTEGER}`);
    }
    if ((byte & 0x80) === 0) return { value, end: pos };
    shift += 7;
  }
}

/**
 * Appends `value` with an `prefixBits`-bit prefix; `flags` are the bits above
 * the prefix in the first byte.
 */
export function encodeInteger(
  out: number[],
  value: number,
  prefixBits: number,
  flags: number,
): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(flags | value);
    return;
  }
  out.push(flags | max);
  value -= max;
  while (value >= 128) {
    out.push((value % 128) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
}

// ─── 3. Huffman code (§5.2, Appendix B) ─────────────────────────────────────

/**
 * The code length of each symbol, 0–255 and EOS (256), in rows of 16, as
 * Appendix B lists them. The code is canonical (within one length, codes
 * rise with the symbol; each length starts where the previous one ended,
 * shifted), so the lengths alone define every code: {@linkcode HUFFMAN_CODES}
 * is derived from them, and the tests check the result against the RFC's
 * hexadecimal codes and its Appendix C examples.
 */
// deno-fmt-ignore
const HUFFMAN_LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, //   0
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, //  16
   6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, //  32 ' '
   5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, //  48 '0'
  13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, //  64 '@'
   7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, //  80 'P'
  15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, //  96 '`'
   6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 112 'p'
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240
  30,                                                             // 256 EOS
];

const EOS = 256;

/** The code of each symbol, right-aligned, derived from the lengths. */
export const HUFFMAN_CODES: readonly number[] = canonicalCodes(HUFFMAN_LENGTHS);

function canonicalCodes(lengths: readonly number[]): number[] {
  const symbols = lengths.map((_, symbol) => symbol).sort((a, b) =>
    lengths[a] - lengths[b] || a - b
  );
  const codes = new Array<number>(lengths.length);
  let code = 0;
  let length = lengths[symbols[0]];
  for (const symbol of symbols) {
    code *= 2 ** (lengths[symbol] - length);
    length = lengths[symbol];
    codes[symbol] = code;
    code += 1;
  }
  return codes;
}

/** The number of bytes `bytes[start, end)` takes once Huffman-coded. */
export function huffmanLength(bytes: Uint8Array, start = 0, end = bytes.length): number {
  let bits = 0;
  for (let i = start; i < end; i++) bits += HUFFMAN_LENGTHS[bytes[i]];
  return Math.ceil(bits / 8);
}

/** Appends the Huffman coding of `bytes[start, end)`, padded with ones (EOS's prefix). */
export function huffmanEncode(
  out: number[],
  bytes: Uint8Array,
  start = 0,
  end = bytes.length,
): void {
  // `pending` holds fewer than 8 bits before a code is added (at most 30
  // bits), so it stays below 2^38: exact in a double, too wide for `|`.
  let pending = 0;
  let count = 0;
  for (let i = start; i < end; i++) {
    const length = HUFFMAN_LENGTHS[bytes[i]];
    pending = pending * 2 ** length + HUFFMAN_CODES[bytes[i]];
    count += length;
    while (count >= 8) {
      count -= 8;
      const divisor = 2 ** count;
      const byte = Math.floor(pending / divisor);
      out.push(byte);
      pending -= byte * divisor;
    }
  }
  if (count > 0) out.push((pending << (8 - count)) | (0xff >> count));
}

// The decoder walks the code tree four bits at a time. The tree has 256
// internal nodes (257 leaves); for each node and each nibble a table gives
// the node reached, the symbol emitted on the way (a code is at least 5 bits
// long, so at most one per nibble) and whether EOS was met. A block may end
// only at the root or at a node reached by at most 7 one-bits: the padding.

const NO_SYMBOL = 0x1ff;
const FAIL = 0x200;

/** For state * 16 + nibble: next state << 10 | flags (FAIL) | symbol or NO_SYMBOL. */
const HUFFMAN_STEPS = new Uint32Array(256 * 16);
/** Whether a block may end in this state. */
const HUFFMAN_ACCEPTS = new Uint8Array(256);

/**
 * Whether the tables above are built. They are built on the first decode, so
 * that a server that never speaks HTTP/2 does not build them at start.
 */
let huffmanDecoderBuilt = false;

function buildHuffmanDecoder(): void {
  huffmanDecoderBuilt = true;
  // children[node * 2 + bit]: an internal node's index, or -1 - symbol for a leaf.
  const children = new Int32Array(256 * 2);
  let nodes = 1;
  for (let symbol = 0; symbol <= EOS; symbol++) {
    const length = HUFFMAN_LENGTHS[symbol];
    const code = HUFFMAN_CODES[symbol];
    let node = 0;
    for (let bit = length - 1; bit > 0; bit--) {
      const slot = node * 2 + (Math.floor(code / 2 ** bit) & 1);
      if (children[slot] === 0) children[slot] = nodes++;
      node = children[slot];
    }
    children[node * 2 + (code & 1)] = -1 - symbol;
  }
  // A node accepts as the end of a block if its path from the root is all
  // ones and at most 7 long.
  HUFFMAN_ACCEPTS[0] = 1;
  for (let node = 0, depth = 0; depth < 7; depth++) {
    node = children[node * 2 + 1];
    HUFFMAN_ACCEPTS[node] = 1;
  }
  for (let state = 0; state < 256; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let symbol = NO_SYMBOL;
      let flags = 0;
      for (let bit = 3; bit >= 0; bit--) {
        const next = children[node * 2 + ((nibble >> bit) & 1)];
        if (next >= 0) {
          node = next;
          continue;
        }
        if (-1 - next === EOS) flags = FAIL;
        symbol = -1 - next;
        node = 0;
      }
      HUFFMAN_STEPS[state * 16 + nibble] = (node << 10) | flags | symbol;
    }
  }
}

/**
 * Decodes Huffman-coded `bytes[start, end)` as a string of Latin-1 code
 * units (one per byte).
 *
 * @throws {HpackError} on EOS or on padding that is longer than 7 bits or not all ones.
 */
export function huffmanDecode(bytes: Uint8Array, start = 0, end = bytes.length): string {
  if (!huffmanDecoderBuilt) buildHuffmanDecoder();
  // At most 8 / 5 symbols per byte: the output size is bounded by the input.
  const out = new Uint8Array(Math.ceil(((end - start) * 8) / 5));
  let length = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = bytes[i];
    for (let shift = 4; shift >= 0; shift -= 4) {
      const step = HUFFMAN_STEPS[state * 16 + ((byte >> shift) & 0xf)];
      if (step & FAIL) throw new HpackError("Huffman-coded string contains EOS");
      const symbol = step & NO_SYMBOL;
      if (symbol !== NO_SYMBOL) out[length++] = symbol;
      state = step >>> 10;
    }
  }
  if (!HUFFMAN_ACCEPTS[state]) {
    throw new HpackError(
      "Huffman-coded string has invalid padding: more than 7 bits, or not all ones",
    );
  }
  return latin1(out, 0, length);
}

/** Bytes as a string of Latin-1 code units. */
export function latin1(bytes: Uint8Array, start: number, end: number): string {
  let text = "";
  for (let i = start; i < end; i += 4096) {
    const stop = Math.min(end, i + 4096);
    text += String.fromCharCode.apply(null, bytes.subarray(i, stop) as unknown as number[]);
  }
  return text;
}

/** A string's code units as bytes (each below 256, as field text is). */
function latin1Bytes(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

// ─── 4. The static table (Appendix A) ───────────────────────────────────────

/** Index 1–61 → [name, value]; index 0 is unused. */
// deno-fmt-ignore
export const STATIC_TABLE: readonly (readonly [string, string])[] = [
  ["", ""],
  [":authority", ""],
  [":method", "GET"],
  [":method", "POST"],
  [":path", "/"],
  [":path", "/index.html"],
  [":scheme", "http"],
  [":scheme", "https"],
  [":status", "200"],
  [":status", "204"],
  [":status", "206"],
  [":status", "304"],
  [":status", "400"],
  [":status", "404"],
  [":status", "500"],
  ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"],
  ["accept-language", ""],
  ["accept-ranges", ""],
  ["accept", ""],
  ["access-control-allow-origin", ""],
  ["age", ""],
  ["allow", ""],
  ["authorization", ""],
  ["cache-control", ""],
  ["content-disposition", ""],
  ["content-encoding", ""],
  ["content-language", ""],
  ["content-length", ""],
  ["content-location", ""],
  ["content-range", ""],
  ["content-type", ""],
  ["cookie", ""],
  ["date", ""],
  ["etag", ""],
  ["expect", ""],
  ["expires", ""],
  ["from", ""],
  ["host", ""],
  ["if-match", ""],
  ["if-modified-since", ""],
  ["if-none-match", ""],
  ["if-range", ""],
  ["if-unmodified-since", ""],
  ["last-modified", ""],
  ["link", ""],
  ["location", ""],
  ["max-forwards", ""],
  ["proxy-authenticate", ""],
  ["proxy-authorization", ""],
  ["range", ""],
  ["referer", ""],
  ["refresh", ""],
  ["retry-after", ""],
  ["server", ""],
  ["set-cookie", ""],
  ["strict-transport-security", ""],
  ["transfer-encoding", ""],
  ["user-agent", ""],
  ["vary", ""],
  ["via", ""],
  ["www-authenticate", ""],
];

const STATIC_COUNT = STATIC_TABLE.length - 1;

/** "name\0value" → the lowest static index with both; name → the lowest with the name. */
const STATIC_FIELDS = new Map<string, number>();
const STATIC_NAMES = new Map<string, number>();
for (let index = STATIC_COUNT; index >= 1; index--) {
  const [name, value] = STATIC_TABLE[index];
  STATIC_FIELDS.set(`${name}\0${value}`, index);
  STATIC_NAMES.set(name, index);
}

// ─── 5. The dynamic table (§2.3.2, §4) ──────────────────────────────────────

/** An entry's size: its name and value lengths plus 32 (§4.1). */
export const ENTRY_OVERHEAD = 32;

/**
 * A dynamic table: entries newest first by index, evicted oldest first when
 * an insertion or a smaller size would exceed `maxSize`. Entries live in a
 * growing array (oldest at `head`) that is compacted when half of it is dead.
 */
export class DynamicTable {
  #names: string[] = [];
  #values: string[] = [];
  #head = 0;
  /** Sum of the entries' sizes. */
  size = 0;
  /** The current maximum size, set by size updates. */
  maxSize: number;
  /** Entries ever inserted: the id of the next one. */
  inserted = 0;

  constructor(maxSize: number) {
    this.maxSize = maxSize;
  }

  /** The number of entries. */
  get length(): number {
    return this.#names.length - this.#head;
  }

  /** The entry at dynamic index `index` (1 = newest), or undefined. */
  name(index: number): string | undefined {
    return this.#names[this.#names.length - index];
  }

  value(index: number): string | undefined {
    return this.#values[this.#values.length - index];
  }

  /** Inserts a field, evicting as §4.4 says; one larger than the table empties it. */
  insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    this.inserted++;
    if (size > this.maxSize) {
      this.#evictTo(0);
      return;
    }
    this.#evictTo(this.maxSize - size);
    this.#names.push(name);
    this.#values.push(value);
    this.size += size;
  }

  /** Sets the maximum size, evicting what no longer fits (§4.3). */
  resize(maxSize: number): void {
    this.maxSize = maxSize;
    this.#evictTo(maxSize);
  }

  #evictTo(limit: number): void {
    while (this.size > limit) {
      const name = this.#names[this.#head];
      const value = this.#values[this.#head];
      this.size -= name.length + value.length + ENTRY_OVERHEAD;
      this.#head++;
    }
    if (this.#head > 32 && this.#head * 2 > this.#names.length) {
      this.#names = this.#names.slice(this.#head);
      this.#values = this.#values.slice(this.#head);
      this.#head = 0;
    }
  }
}

// ─── 6. Decoding header blocks (§3, §6) ─────────────────────────────────────

/** Options of {@linkcode HpackDecoder}. */
export interface HpackDecoderOptions {
  /**
   * The SETTINGS_HEADER_TABLE_SIZE this side announced: the most a size
   * update may ask for.
   * @default {4096}
   */
  maxTableSize?: number;
  /**
   * The largest decoded header list, counted as RFC 9113 §6.5.2 does (name +
   * value + 32 per field). A list over it is still decoded to the end (the
   * dynamic table must stay in step with the peer's) but its fields are not
   * kept: {@linkcode DecodedBlock.oversized} says so.
   * @default {65536}
   */
  maxHeaderListSize?: number;
}

/** The result of decoding one header block. */
export interface DecodedBlock {
  /** Names and values, alternating: [name0, value0, name1, value1, …]. */
  fields: string[];
  /** The header list size (§6.5.2) over all fields, kept or not. */
  size: number;
  /** True when `size` went over `maxHeaderListSize`; `fields` is then incomplete. */
  oversized: boolean;
}

/** Decodes header blocks of one connection, in order (one decoder per direction). */
export class HpackDecoder {
  readonly table: DynamicTable;
  /** The most a size update may set; lowered or raised by the local SETTINGS. */
  maxTableSize: number;
  maxHeaderListSize: number;

  constructor(options: HpackDecoderOptions = {}) {
    this.maxTableSize = options.maxTableSize ?? 4096;
    this.maxHeaderListSize = options.maxHeaderListSize ?? 65536;
    this.table = new DynamicTable(this.maxTableSize);
  }

  /**
   * Decodes one complete header block (HEADERS plus its CONTINUATION
   * fragments, joined).
   *
   * @throws {HpackError} when the block is malformed.
   */
  decode(block: Uint8Array): DecodedBlock {
    const fields: string[] = [];
    let size = 0;
    let oversized = false;
    let pos = 0;
    let sawField = false;
    while (pos < block.length) {
      const byte = block[pos];
      let name: string;
      let value: string;
      if (byte & 0x80) {
        // Indexed header field (§6.1).
        const { value: index, end } = decodeInteger(block, pos, 7);
        pos = end;
        if (index === 0) throw new HpackError("Indexed header field with index 0");
        name = this.#name(index);
        value = this.#value(index);
      } else if ((byte & 0xe0) === 0x20) {
        // Dynamic table size update (§6.3): only before the first field.
        if (sawField) {
          throw new HpackError("Dynamic table size update after a header field");
        }
        const { value: maxSize, end } = decodeInteger(block, pos, 5);
        pos = end;
        if (maxSize > this.maxTableSize) {
          throw new HpackError(
            `Dynamic table size update to ${maxSize} is over the announced limit ${this.maxTableSize}`,
          );
        }
        this.table.resize(maxSize);
        continue;
      } else {
        // Literal with incremental indexing (01), without indexing (0000),
        // never indexed (0001) (§6.2).
        const indexing = (byte & 0xc0) === 0x40;
        const { value: index, end } = decodeInteger(block, pos, indexing ? 6 : 4);
        pos = end;
        if (index === 0) {
          const string = readString(block, pos);
          name = string.text;
          pos = string.end;
        } else {
          name = this.#name(index);
        }
        const string = readString(block, pos);
        value = string.text;
        pos = string.end;
        if (indexing) this.table.insert(name, value);
      }
      sawField = true;
      size += name.length + value.length + ENTRY_OVERHEAD;
      if (size > this.maxHeaderListSize) oversized = true;
      if (!oversized) fields.push(name, value);
    }
    return { fields: oversized ? [] : fields, size, oversized };
  }

  #name(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_TABLE[index][0];
    const name = this.table.name(index - STATIC_COUNT);
    if (name === undefined) throw indexError(index, this.table.length);
    return name;
  }

  #value(index: number): string {
    if (index <= STATIC_COUNT) return STATIC_TABLE[index][1];
    const value = this.table.value(index - STATIC_COUNT);
    if (value === undefined) throw indexError(index, this.table.length);
    return value;
  }
}

function indexError(index: number, entries: number): HpackError {
  return new HpackError(
    `Header field index ${index} is out of range: the tables hold ${STATIC_COUNT + entries}`,
  );
}

/**
 * Reads a string literal (§5.2) at `pos`. Its length is checked against the
 * bytes left before anything is allocated, so a declared length cannot make
 * the decoder reserve memory the block does not carry.
 */
function readString(block: Uint8Array, pos: number): { text: string; end: number } {
  if (pos >= block.length) throw new HpackError("Header block ends before a string literal");
  const huffman = (block[pos] & 0x80) !== 0;
  const { value: length, end: start } = decodeInteger(block, pos, 7);
  const end = start + length;
  if (end > block.length) {
    throw new HpackError(
      `String literal of ${length} bytes is longer than the ${
        block.length - start
      } left in the header block`,
    );
  }
  const text = huffman ? huffmanDecode(block, start, end) : latin1(block, start, end);
  return { text, end };
}

// ─── 7. Encoding header blocks ──────────────────────────────────────────────

/** Field names whose values should never enter a compression table (§7.1.3). */
const SENSITIVE = new Set(["authorization", "proxy-authorization", "set-cookie", "cookie"]);

/** Options of {@linkcode HpackEncoder}. */
export interface HpackEncoderOptions {
  /**
   * The dynamic table size to use (at most the peer's SETTINGS_HEADER_TABLE_SIZE).
   * @default {4096}
   */
  maxTableSize?: number;
  /**
   * Huffman-code strings where that is not longer.
   * @default {true}
   */
  huffman?: boolean;
  /**
   * Names sent as never-indexed literals and kept out of the dynamic table.
   * @default {new Set(["authorization", "proxy-authorization", "set-cookie", "cookie"])}
   */
  neverIndexed?: ReadonlySet<string>;
}

/**
 * Encodes header blocks for one connection. Fields found in the static or
 * dynamic table are sent as an index; others as a literal that is added to
 * the dynamic table, except sensitive ones (credentials, cookies), which are
 * sent as never-indexed literals. Strings are Huffman-coded unless that is longer.
 */
export class HpackEncoder {
  readonly table: DynamicTable;
  /** "name\0value" → id of the newest dynamic entry with both. */
  #fields = new Map<string, number>();
  /** name → id of the newest dynamic entry with the name. */
  #names = new Map<string, number>();
  /** A size update the next block must start with (the lowest, then the final). */
  #pendingSizes: number[] = [];
  /** Id of the oldest entry the lookups may name. */
  #oldest = 0;
  #huffman: boolean;
  #neverIndexed: ReadonlySet<string>;

  constructor(options: HpackEncoderOptions = {}) {
    this.table = new DynamicTable(options.maxTableSize ?? 4096);
    this.#huffman = options.huffman ?? true;
    this.#neverIndexed = options.neverIndexed ?? SENSITIVE;
  }

  /**
   * Follows a new SETTINGS_HEADER_TABLE_SIZE from the peer: the table shrinks
   * to it (or grows up to `cap`) and the next block announces it (§4.2).
   */
  setMaxTableSize(size: number, cap = 4096): void {
    const next = Math.min(size, cap);
    if (next === this.table.maxSize && this.#pendingSizes.length === 0) return;
    const lowest = Math.min(next, this.#pendingSizes[0] ?? next);
    this.#pendingSizes = lowest < next ? [lowest, next] : [next];
    this.table.resize(lowest);
    this.table.resize(next);
    this.#forgetEvicted();
  }

  /** Encodes fields given as [name, value] pairs (names already lowercase). */
  encode(fields: Iterable<readonly [string, string]>): Uint8Array {
    const out: number[] = [];
    for (const size of this.#pendingSizes) encodeInteger(out, size, 5, 0x20);
    this.#pendingSizes = [];
    for (const [name, value] of fields) this.#encodeField(out, name, value);
    return new Uint8Array(out);
  }

  #encodeField(out: number[], name: string, value: string): void {
    const key = `${name}\0${value}`;
    const staticIndex = STATIC_FIELDS.get(key);
    if (staticIndex !== undefined) {
      encodeInteger(out, staticIndex, 7, 0x80);
      return;
    }
    const sensitive = this.#neverIndexed.has(name);
    const dynamicId = sensitive ? undefined : this.#fields.get(key);
    if (dynamicId !== undefined) {
      encodeInteger(out, this.#indexOf(dynamicId), 7, 0x80);
      return;
    }
    const nameIndex = STATIC_NAMES.get(name) ??
      (this.#names.has(name) ? this.#indexOf(this.#names.get(name)!) : 0);
    const indexing = !sensitive &&
      name.length + value.length + ENTRY_OVERHEAD <= this.table.maxSize / 2;
    if (indexing) encodeInteger(out, nameIndex, 6, 0x40);
    else encodeInteger(out, nameIndex, 4, sensitive ? 0x10 : 0x00);
    if (nameIndex === 0) encodeString(out, name, this.#huffman);
    encodeString(out, value, this.#huffman);
    if (indexing) {
      const id = this.table.inserted;
      this.table.insert(name, value);
      this.#fields.set(key, id);
      this.#names.set(name, id);
      this.#forgetEvicted();
    }
  }

  /** The index (62 and up) of the dynamic entry with id `id`. */
  #indexOf(id: number): number {
    return STATIC_COUNT + (this.table.inserted - id);
  }

  /** Drops lookups of entries the table no longer holds. */
  #forgetEvicted(): void {
    const oldest = this.table.inserted - this.table.length;
    if (oldest === this.#oldest) return;
    this.#oldest = oldest;
    for (const [key, id] of this.#fields) if (id < oldest) this.#fields.delete(key);
    for (const [key, id] of this.#names) if (id < oldest) this.#names.delete(key);
  }
}

/** Appends a string literal, Huffman-coded (if allowed) when that is not longer. */
export function encodeString(out: number[], text: string, huffman = true): void {
  const bytes = latin1Bytes(text);
  const coded = huffman ? huffmanLength(bytes) : Infinity;
  if (coded <= bytes.length) {
    encodeInteger(out, coded, 7, 0x80);
    huffmanEncode(out, bytes);
  } else {
    encodeInteger(out, bytes.length, 7, 0);
    for (let i = 0; i < bytes.length; i++) out.push(bytes[i]);
  }
}
