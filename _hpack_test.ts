// Tests for _hpack.ts (RFC 7541): the examples of Appendix C byte for byte,
// decoded and encoded, the Huffman table against Appendix B, and each way a
// header block can be malformed or abusive.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  decodeInteger,
  type DynamicTable,
  encodeInteger,
  HpackDecoder,
  HpackEncoder,
  HpackError,
  HUFFMAN_CODES,
  huffmanDecode,
  huffmanEncode,
  huffmanLength,
  STATIC_TABLE,
} from "./_hpack.ts";

/** Bytes from the RFC's hex dumps ("8286 8441 …"). */
function hex(dump: string): Uint8Array {
  const digits = dump.replace(/\s+/g, "");
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digits.slice(i * 2, i * 2 + 2), 16);
  return bytes;
}

function toHex(bytes: Uint8Array | number[]): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function pairs(fields: string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < fields.length; i += 2) out.push([fields[i], fields[i + 1]]);
  return out;
}

/** The dynamic table as the RFC prints it: [name, value], newest first, and its size. */
function tableOf(table: DynamicTable): { entries: [string, string][]; size: number } {
  const entries: [string, string][] = [];
  for (let i = 1; i <= table.length; i++) entries.push([table.name(i)!, table.value(i)!]);
  return { entries, size: table.size };
}

const bytesOf = (text: string) => Uint8Array.from(text, (c) => c.charCodeAt(0));

describe("integers (§5.1, Appendix C.1)", () => {
  test("encodeInteger() writes 10 on a 5-bit prefix in one byte (C.1.1)", () => {
    const out: number[] = [];
    encodeInteger(out, 10, 5, 0);
    assert.deepEqual(out, [0x0a]);
  });

  test("encodeInteger() writes 1337 on a 5-bit prefix as 31, 154, 10 (C.1.2)", () => {
    const out: number[] = [];
    encodeInteger(out, 1337, 5, 0xe0);
    assert.deepEqual(out, [0xff, 0x9a, 0x0a]);
    assert.deepEqual(decodeInteger(new Uint8Array(out), 0, 5), { value: 1337, end: 3 });
  });

  test("encodeInteger() writes 42 on an 8-bit prefix (C.1.3)", () => {
    const out: number[] = [];
    encodeInteger(out, 42, 8, 0);
    assert.deepEqual(out, [42]);
  });

  test("integers round-trip on every prefix, around each boundary", () => {
    for (let prefix = 1; prefix <= 8; prefix++) {
      const max = (1 << prefix) - 1;
      for (const value of [0, max - 1, max, max + 1, max + 127, max + 128, 2 ** 20, 2 ** 31 - 1]) {
        if (value < 0) continue;
        const out: number[] = [];
        encodeInteger(out, value, prefix, 0);
        assert.deepEqual(decodeInteger(new Uint8Array(out), 0, prefix), {
          value,
          end: out.length,
        });
      }
    }
  });

  test("decodeInteger() rejects a value above 2^31 - 1 and a truncated one", () => {
    // 2^31 on a 7-bit prefix: 127 + continuation bytes.
    const out: number[] = [];
    encodeInteger(out, 2 ** 31, 7, 0);
    assert.throws(() => decodeInteger(new Uint8Array(out), 0, 7), HpackError);
    // Endless continuation bytes stop at the cap, not at the end of the input.
    const endless = new Uint8Array(100).fill(0xff);
    assert.throws(() => decodeInteger(endless, 0, 7), /over the limit/);
    assert.throws(() => decodeInteger(new Uint8Array([0x7f, 0x80]), 0, 7), /ends inside/);
    assert.throws(() => decodeInteger(new Uint8Array([]), 0, 7), /ends inside/);
  });
});

describe("Huffman code (§5.2, Appendix B)", () => {
  test("codes derived from the lengths match Appendix B's hexadecimal codes", () => {
    // A sample from each length, and the first and last symbols.
    const expected: [number, number][] = [
      [0, 0x1ff8],
      [1, 0x7fffd8],
      [2, 0xfffffe2],
      [9, 0xffffea],
      [10, 0x3ffffffc],
      [22, 0x3ffffffe],
      [32, 0x14],
      [33, 0x3f8],
      [39, 0x7fa],
      [48, 0x0],
      [58, 0x5c],
      [60, 0x7ffc],
      [92, 0x7fff0],
      [94, 0x3ffc],
      [116, 0x9],
      [126, 0x1ffd],
      [127, 0xffffffc],
      [128, 0xfffe6],
      [153, 0x1fffdc],
      [192, 0x3ffffe0],
      [199, 0x1ffffec],
      [203, 0x7ffffde],
      [220, 0xffffffd],
      [239, 0x7ffff4],
      [254, 0x7fffff0],
      [255, 0x3ffffee],
      [256, 0x3fffffff],
    ];
    for (const [symbol, code] of expected) {
      assert.equal(HUFFMAN_CODES[symbol].toString(16), code.toString(16), `symbol ${symbol}`);
    }
  });

  test("every byte value round-trips, alone and all together", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    for (let byte = 0; byte < 256; byte++) {
      const out: number[] = [];
      huffmanEncode(out, all, byte, byte + 1);
      assert.equal(out.length, huffmanLength(all, byte, byte + 1));
      assert.equal(huffmanDecode(new Uint8Array(out)), String.fromCharCode(byte));
    }
    const out: number[] = [];
    huffmanEncode(out, all);
    const decoded = huffmanDecode(new Uint8Array(out));
    assert.deepEqual(bytesOf(decoded), all);
  });

  test("huffmanEncode() gives Appendix C's strings", () => {
    const cases: [string, string][] = [
      ["www.example.com", "f1e3c2e5f23a6ba0ab90f4ff"],
      ["no-cache", "a8eb10649cbf"],
      ["custom-key", "25a849e95ba97d7f"],
      ["custom-value", "25a849e95bb8e8b4bf"],
      ["302", "6402"],
      ["307", "640eff"],
      ["private", "aec3771a4b"],
      ["Mon, 21 Oct 2013 20:13:21 GMT", "d07abe941054d444a8200595040b8166e082a62d1bff"],
      ["https://www.example.com", "9d29ad171863c78f0b97c8e9ae82ae43d3"],
      ["gzip", "9bd9ab"],
      [
        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
        "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007",
      ],
    ];
    for (const [text, coded] of cases) {
      const out: number[] = [];
      huffmanEncode(out, bytesOf(text));
      assert.equal(toHex(out), coded, text);
      assert.equal(huffmanDecode(hex(coded)), text);
    }
  });

  test("huffmanDecode() rejects EOS, padding over 7 bits and padding not all ones", () => {
    // EOS is 30 ones: four 0xff bytes hold it.
    assert.throws(() => huffmanDecode(hex("ffffffff")), /EOS/);
    // 'a' (00011) then a whole byte of ones: 11 bits of padding.
    assert.throws(() => huffmanDecode(hex("1fff")), /padding/);
    // A byte of ones alone: 8 bits of padding.
    assert.throws(() => huffmanDecode(hex("ff")), /padding/);
    // 'a' then padding 000: not ones.
    assert.throws(() => huffmanDecode(hex("18")), /padding/);
    // 'a' then 111: fine; '0' alone (00000) then 111: fine.
    assert.equal(huffmanDecode(hex("1f")), "a");
    assert.equal(huffmanDecode(hex("07")), "0");
    assert.equal(huffmanDecode(new Uint8Array(0)), "");
  });
});

describe("static table (Appendix A)", () => {
  test("STATIC_TABLE holds 61 entries, in the RFC's order", () => {
    assert.equal(STATIC_TABLE.length, 62);
    assert.deepEqual(STATIC_TABLE[1], [":authority", ""]);
    assert.deepEqual(STATIC_TABLE[8], [":status", "200"]);
    assert.deepEqual(STATIC_TABLE[16], ["accept-encoding", "gzip, deflate"]);
    assert.deepEqual(STATIC_TABLE[24], ["cache-control", ""]);
    assert.deepEqual(STATIC_TABLE[33], ["date", ""]);
    assert.deepEqual(STATIC_TABLE[46], ["location", ""]);
    assert.deepEqual(STATIC_TABLE[55], ["set-cookie", ""]);
    assert.deepEqual(STATIC_TABLE[61], ["www-authenticate", ""]);
  });
});

describe("header field representations (Appendix C.2)", () => {
  test("C.2.1 literal with indexing: decoded, added to the table, and encoded back", () => {
    const block = hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572");
    const decoder = new HpackDecoder();
    assert.deepEqual(pairs(decoder.decode(block).fields), [["custom-key", "custom-header"]]);
    assert.deepEqual(tableOf(decoder.table), {
      entries: [["custom-key", "custom-header"]],
      size: 55,
    });
    const encoder = new HpackEncoder({ huffman: false });
    assert.equal(toHex(encoder.encode([["custom-key", "custom-header"]])), toHex(block));
  });

  test("C.2.2 literal without indexing leaves the table empty", () => {
    const decoder = new HpackDecoder();
    const block = hex("040c 2f73 616d 706c 652f 7061 7468");
    assert.deepEqual(pairs(decoder.decode(block).fields), [[":path", "/sample/path"]]);
    assert.equal(decoder.table.length, 0);
  });

  test("C.2.3 literal never indexed leaves the table empty; the encoder uses it for secrets", () => {
    const decoder = new HpackDecoder();
    const block = hex("1008 7061 7373 776f 7264 0673 6563 7265 74");
    assert.deepEqual(pairs(decoder.decode(block).fields), [["password", "secret"]]);
    assert.equal(decoder.table.length, 0);
    const encoder = new HpackEncoder({ huffman: false, neverIndexed: new Set(["password"]) });
    assert.equal(toHex(encoder.encode([["password", "secret"]])), toHex(block));
    assert.equal(encoder.table.length, 0);
  });

  test("C.2.4 indexed field", () => {
    const decoder = new HpackDecoder();
    assert.deepEqual(pairs(decoder.decode(hex("82")).fields), [[":method", "GET"]]);
    assert.equal(toHex(new HpackEncoder().encode([[":method", "GET"]])), "82");
  });
});

/** One step of Appendix C.3–C.6: the fields, the block, the table after it. */
interface Step {
  fields: [string, string][];
  block: string;
  table: [string, string][];
  size: number;
}

const REQUESTS: [string, string][][] = [
  [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
  [
    [":method", "GET"],
    [":scheme", "http"],
    [":path", "/"],
    [":authority", "www.example.com"],
    ["cache-control", "no-cache"],
  ],
  [
    [":method", "GET"],
    [":scheme", "https"],
    [":path", "/index.html"],
    [":authority", "www.example.com"],
    ["custom-key", "custom-value"],
  ],
];

const REQUEST_TABLES: [[string, string][], number][] = [
  [[[":authority", "www.example.com"]], 57],
  [[["cache-control", "no-cache"], [":authority", "www.example.com"]], 110],
  [[["custom-key", "custom-value"], ["cache-control", "no-cache"], [
    ":authority",
    "www.example.com",
  ]], 164],
];

const RESPONSES: [string, string][][] = [
  [
    [":status", "302"],
    ["cache-control", "private"],
    ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
    ["location", "https://www.example.com"],
  ],
  [
    [":status", "307"],
    ["cache-control", "private"],
    ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
    ["location", "https://www.example.com"],
  ],
  [
    [":status", "200"],
    ["cache-control", "private"],
    ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
    ["location", "https://www.example.com"],
    ["content-encoding", "gzip"],
    ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
  ],
];

const RESPONSE_TABLES: [[string, string][], number][] = [
  [[
    ["location", "https://www.example.com"],
    ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
    ["cache-control", "private"],
    [":status", "302"],
  ], 222],
  [[
    [":status", "307"],
    ["location", "https://www.example.com"],
    ["date", "Mon, 21 Oct 2013 20:13:21 GMT"],
    ["cache-control", "private"],
  ], 222],
  [[
    ["set-cookie", "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"],
    ["content-encoding", "gzip"],
    ["date", "Mon, 21 Oct 2013 20:13:22 GMT"],
  ], 215],
];

function steps(
  lists: [string, string][][],
  tables: [[string, string][], number][],
  blocks: string[],
): Step[] {
  return lists.map((fields, i) => ({
    fields,
    block: blocks[i],
    table: tables[i][0],
    size: tables[i][1],
  }));
}

const EXAMPLES: Record<string, { tableSize: number; huffman: boolean; steps: Step[] }> = {
  "C.3 requests without Huffman coding": {
    tableSize: 4096,
    huffman: false,
    steps: steps(REQUESTS, REQUEST_TABLES, [
      "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
      "8286 84be 5808 6e6f 2d63 6163 6865",
      "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ]),
  },
  "C.4 requests with Huffman coding": {
    tableSize: 4096,
    huffman: true,
    steps: steps(REQUESTS, REQUEST_TABLES, [
      "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
      "8286 84be 5886 a8eb 1064 9cbf",
      "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ]),
  },
  "C.5 responses without Huffman coding": {
    tableSize: 256,
    huffman: false,
    steps: steps(RESPONSES, RESPONSE_TABLES, [
      "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133" +
      "2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70" +
      "6c65 2e63 6f6d",
      "4803 3330 37c1 c0bf",
      "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d" +
      "54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049" +
      "5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e" +
      "3d31",
    ]),
  },
  "C.6 responses with Huffman coding": {
    tableSize: 256,
    huffman: true,
    steps: steps(RESPONSES, RESPONSE_TABLES, [
      "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6" +
      "2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
      "4883 640e ffc1 c0bf",
      "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab" +
      "77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f" +
      "9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ]),
  },
};

for (const [name, example] of Object.entries(EXAMPLES)) {
  describe(name, () => {
    test("HpackDecoder gives each list and the table after it", () => {
      const decoder = new HpackDecoder({ maxTableSize: example.tableSize });
      for (const step of example.steps) {
        const decoded = decoder.decode(hex(step.block));
        assert.equal(decoded.oversized, false);
        assert.deepEqual(pairs(decoded.fields), step.fields);
        assert.deepEqual(tableOf(decoder.table), { entries: step.table, size: step.size });
      }
    });

    test("HpackEncoder writes each block byte for byte", () => {
      const encoder = new HpackEncoder({
        maxTableSize: example.tableSize,
        huffman: example.huffman,
        neverIndexed: new Set(),
      });
      for (const step of example.steps) {
        assert.equal(toHex(encoder.encode(step.fields)), toHex(hex(step.block)));
        assert.deepEqual(tableOf(encoder.table), { entries: step.table, size: step.size });
      }
    });
  });
}

describe("HpackDecoder errors and limits", () => {
  test("rejects index 0, an index past the tables, and a truncated block", () => {
    const decoder = new HpackDecoder();
    assert.throws(() => decoder.decode(hex("80")), /index 0/);
    assert.throws(() => decoder.decode(hex("be")), /out of range/); // 62, table empty
    assert.throws(() => decoder.decode(hex("40")), /ends before a string/);
    assert.throws(() => decoder.decode(hex("4003616263")), /ends before a string/);
    assert.throws(() => decoder.decode(hex("04")), /ends before a string/);
  });

  test("bounds a string by the bytes left before allocating (a huge declared length)", () => {
    const decoder = new HpackDecoder();
    // Literal, new name, name length 2^31 - 1 on a 7-bit prefix, no bytes after.
    const out: number[] = [0x00];
    encodeInteger(out, 2 ** 31 - 1, 7, 0);
    assert.throws(() => decoder.decode(new Uint8Array(out)), /longer than the 0 left/);
    // Huffman-coded value declared longer than the block.
    assert.throws(() => decoder.decode(hex("0481ff")), /longer than the 0 left|padding/);
    assert.throws(() => decoder.decode(hex("0485ff")), /longer than the 1 left/);
  });

  test("rejects a size update above the announced limit or after a field", () => {
    const decoder = new HpackDecoder({ maxTableSize: 256 });
    const over: number[] = [];
    encodeInteger(over, 257, 5, 0x20);
    assert.throws(() => decoder.decode(new Uint8Array(over)), /over the announced limit 256/);
    assert.throws(() => decoder.decode(hex("8220")), /after a header field/);
    // Two updates at the start are allowed (§4.2): down to 0, then up to 100.
    const both: number[] = [0x20];
    encodeInteger(both, 100, 5, 0x20);
    both.push(0x82);
    assert.deepEqual(decoder.decode(new Uint8Array(both)).fields, [":method", "GET"]);
    assert.equal(decoder.table.maxSize, 100);
  });

  test("a size update evicts entries; a too-large entry empties the table", () => {
    const decoder = new HpackDecoder();
    decoder.decode(hex("400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572"));
    assert.equal(decoder.table.length, 1);
    decoder.decode(hex("3f11")); // size update to 48 (31 + 17): the 55-byte entry goes
    assert.equal(decoder.table.length, 0);
    assert.equal(decoder.table.size, 0);
    // An entry bigger than the table is not added, and empties it (§4.4).
    decoder.decode(hex("4001 61 01 62")); // a: b, 34 bytes, fits in 48
    assert.equal(decoder.table.length, 1);
    decoder.decode(hex("4001 61 10 30303030303030303030303030303030")); // 49 bytes
    assert.equal(decoder.table.length, 0);
  });

  test("an HPACK bomb (one big entry named many times) stops at maxHeaderListSize", () => {
    const decoder = new HpackDecoder({ maxHeaderListSize: 16384 });
    // Insert a 4000-byte value, then name it (one byte: 0xbe) 10000 times.
    const literal: number[] = [0x40, 0x01, 0x78];
    encodeInteger(literal, 4000, 7, 0);
    for (let i = 0; i < 4000; i++) literal.push(0x61);
    const block = new Uint8Array([...literal, ...new Array(10000).fill(0xbe)]);
    const decoded = decoder.decode(block);
    assert.equal(decoded.oversized, true);
    assert.deepEqual(decoded.fields, []);
    assert.equal(decoded.size, 10001 * (1 + 4000 + 32));
    // The table stayed in step: the next block can still name the entry.
    assert.equal(decoder.decode(hex("be")).fields[1].length, 4000);
  });

  test("any byte sequence either decodes or throws HpackError (random blocks)", () => {
    let seed = 42;
    const random = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    for (let round = 0; round < 2000; round++) {
      const decoder = new HpackDecoder();
      const block = Uint8Array.from(
        { length: 1 + Math.floor(random() * 40) },
        () => Math.floor(random() * 256),
      );
      try {
        decoder.decode(block);
      } catch (error) {
        assert.ok(error instanceof HpackError, String(error));
      }
    }
  });
});

describe("HpackEncoder", () => {
  test("round-trips through HpackDecoder over many blocks with evictions", () => {
    const encoder = new HpackEncoder({ maxTableSize: 256 });
    const decoder = new HpackDecoder({ maxTableSize: 256 });
    for (let i = 0; i < 200; i++) {
      const fields: [string, string][] = [
        [":status", i % 2 ? "200" : "404"],
        ["content-type", "text/plain;charset=UTF-8"],
        ["x-count", String(i % 7)],
        ["x-bytes", String.fromCharCode(i % 256, (i * 7) % 256)],
        ["set-cookie", `id=${i}`],
      ];
      assert.deepEqual(pairs(decoder.decode(encoder.encode(fields)).fields), fields);
      assert.ok(encoder.table.size <= 256);
    }
  });

  test("never indexes set-cookie or authorization by default", () => {
    const encoder = new HpackEncoder();
    const block = encoder.encode([["set-cookie", "a=b"], ["authorization", "Basic x"]]);
    assert.equal(encoder.table.length, 0);
    assert.equal(block[0] & 0xf0, 0x10);
  });

  test("setMaxTableSize() shrinks the table and announces the smallest size, then the final", () => {
    const encoder = new HpackEncoder();
    const decoder = new HpackDecoder();
    decoder.decode(encoder.encode([["x-a", "1"]]));
    encoder.setMaxTableSize(0);
    encoder.setMaxTableSize(100);
    const block = encoder.encode([["x-a", "1"]]);
    assert.equal(toHex(block.subarray(0, 3)), "203f45"); // 0, then 100 (31 + 69)
    assert.deepEqual(decoder.decode(block).fields, ["x-a", "1"]);
    assert.equal(decoder.table.maxSize, 100);
  });
});
