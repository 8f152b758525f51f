/**
 * A seeded mutation fuzzer for brick's HTTP/1.1 parser and connection loop.
 *
 * Each case takes valid requests from a small corpus, mutates them (bit flips,
 * truncation, duplication, splices, huge numbers, random bytes, line-ending
 * swaps, extra header fields), sends the result split across random writes,
 * then half-closes, waits, or resets. What comes back must be a sequence of
 * well-formed HTTP/1.1 responses (strictly parsed) or nothing, and the server
 * must close the connection within its timeouts. A case is fully determined by
 * the run's seed and its index, so any failure reproduces.
 *
 * `scripts/fuzz.ts` runs it against a target server in a child process;
 * `hardening_test.ts` runs a short version.
 *
 * @example Usage
 * ```ts ignore
 * import { fuzz } from "./fuzzer.ts";
 *
 * const report = await fuzz({ port: 8888, seed: 1, cases: 1000 });
 * console.log(report.violations.length === 0 ? "clean" : report.violations);
 * ```
 *
 * @module
 */

import {
  IncompleteResponseError,
  latin1,
  latin1Bytes,
  type ParsedResponse,
  parseResponses,
  RawClient,
  rawExchange,
  within,
} from "../../_test_utils.ts";
import type { Target, TargetOptions } from "./harness.ts";

// ─── Randomness ─────────────────────────────────────────────────────────────

/** A small seeded PRNG (mulberry32): the same seed gives the same cases everywhere. */
export class Random {
  #state: number;

  /**
   * Starts the sequence of `seed`.
   *
   * @param seed Any 32-bit integer.
   */
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** The next 32-bit unsigned integer. */
  next(): number {
    let t = (this.#state = (this.#state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : this.next() % n;
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.next() / 2 ** 32 < p;
  }

  /** One element of `items`. */
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)];
  }
}

/** The seed of case `index` in a run with seed `seed` (splitmix-style mixing). */
export function caseSeed(seed: number, index: number): number {
  let x = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca77)) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x7feb352d) >>> 0;
  x = Math.imul(x ^ (x >>> 15), 0x846ca68b) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

// ─── The corpus ─────────────────────────────────────────────────────────────

const req = (line: string, ...fields: string[]) => [line, ...fields, "", ""].join("\r\n");

/** Valid requests the mutations start from: one per feature of the parser and the routes. */
export const CORPUS: readonly string[] = [
  req("GET / HTTP/1.1", "Host: x"),
  req("GET /bytes?n=3000 HTTP/1.1", "Host: example.com:8080", "User-Agent: fuzz", "Accept: */*"),
  req("POST /echo HTTP/1.1", "Host: x", "Content-Length: 11", "Content-Type: text/plain") +
  "hello world",
  req("POST /echo HTTP/1.1", "Host: x", "Transfer-Encoding: chunked") +
  '5;ext=1;q="a b"\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n',
  req("PUT /echo HTTP/1.1", "Host: x", "Transfer-Encoding: gzip, chunked") +
  "a\r\n0123456789\r\n0\r\n\r\n",
  req("HEAD / HTTP/1.1", "Host: x"),
  req("GET / HTTP/1.0"),
  req("GET /echo HTTP/1.0", "Connection: keep-alive", "Content-Length: 2") + "hi",
  req("OPTIONS * HTTP/1.1", "Host: x"),
  req("GET http://x/abs?q=1#frag HTTP/1.1", "Host: x"),
  req("GET /%7Euser/a%20b?x=%41 HTTP/1.1", "Host: [::1]:80"),
  req("POST /echo HTTP/1.1", "Host: x", "Expect: 100-continue", "Content-Length: 4") + "body",
  req("GET / HTTP/1.1", "Host: x") +
  req("POST /echo HTTP/1.1", "Host: x", "Content-Length: 3") + "abc" +
  req("GET /bytes?n=10 HTTP/1.1", "Host: x", "Connection: close"),
  req("GET /stream?n=5000&chunk=700 HTTP/1.1", "Host: x"),
  req("GET /stream?n=300 HTTP/1.0", "Host: x"),
  req("POST / HTTP/1.1", "Host: x", "Content-Length: 100") + "z".repeat(100),
  req("DELETE /x HTTP/1.1", "Host: x", "Connection: close"),
  req("GET /throw HTTP/1.1", "Host: x"),
  req("GET /reject HTTP/1.1", "Host: x"),
  req("GET /not-a-response HTTP/1.1", "Host: x"),
  req("GET /stream-error HTTP/1.1", "Host: x"),
  req("GET /slow?ms=20 HTTP/1.1", "Host: x"),
  req("GET / HTTP/1.1", "Host: x", "Cookie: a=b; c=d", `X-Long: ${"v".repeat(200)}`),
  req("CONNECT x:443 HTTP/1.1", "Host: x:443"),
  req("GET / HTTP/1.1", "Host: x", "Connection: keep-alive, Upgrade", "Upgrade: websocket"),
  "\r\n\r\n" + req("PATCH /echo HTTP/1.1", "Host: x", "Content-Length: 0"),
];

/** Field lines worth inserting: framing, expectations and repeats that change how a request parses. */
const FIELDS = [
  "Transfer-Encoding: chunked",
  "Transfer-Encoding: identity",
  "Transfer-Encoding: chunked, chunked",
  "Content-Length: 0",
  "Content-Length: 5",
  "Content-Length: 5, 5",
  "Content-Length: 5, 6",
  "Content-Length: -1",
  "Content-Length: 99999999999999999999",
  "Expect: 100-continue",
  "Expect: nothing",
  "Connection: close",
  "Connection: keep-alive",
  "Host: y",
  "Host:",
  "Host: a b",
  " folded: value",
  "X: \x00",
  "X:\x7f",
  "Bad Name: v",
  ": empty name",
  "X-\xff: latin1",
  "X: \xff\xfe",
];

/** Numbers that break naive parsers: signs, overflow, hex, exponents, padding. */
const NUMBERS = [
  "0",
  "-1",
  "+1",
  "1e3",
  "0x10",
  "007",
  "4294967296",
  "9007199254740993",
  "18446744073709551616",
  "9".repeat(40),
  "ffffffffffffffff",
  "FFFFFFFFFFFFFFFFFFFFFFFF",
  " 5",
  "5 ",
  "",
  "1.5",
  "\xd9\xa1", // Arabic-Indic one, in UTF-8
];

/** Single bytes that mean something to an HTTP parser. */
const BYTES = [0, 9, 10, 13, 32, 34, 35, 37, 44, 47, 58, 59, 61, 63, 0x7f, 0x80, 0xff];

// ─── Mutations ──────────────────────────────────────────────────────────────

/** Largest mutated case, in bytes. */
const MAX_CASE_BYTES = 65_536;

type Bytes = number[];
type Mutation = (rng: Random, bytes: Bytes) => Bytes;

const toArray = (s: string): Bytes => Array.from(latin1Bytes(s));
const randomBytes = (rng: Random, n: number) => Array.from({ length: n }, () => rng.int(256));

/** Positions just after each LF: where a line, and so a field, may be inserted. */
function lineStarts(bytes: Bytes): number[] {
  const starts: number[] = [];
  for (let i = 0; i < bytes.length; i++) if (bytes[i] === 10) starts.push(i + 1);
  return starts;
}

/** Runs of decimal or hex digits: Content-Length values, chunk sizes, query numbers. */
function numberRuns(bytes: Bytes): [number, number][] {
  const text = latin1(Uint8Array.from(bytes));
  return [...text.matchAll(/[0-9a-fA-F]+/g)].map((m) => [m.index!, m.index! + m[0].length]);
}

/**
 * `times` copies of `bytes`, but no more than fill a case up to
 * {@linkcode MAX_CASE_BYTES} from `at`: a case is cut there anyway, so the
 * result is the same, without building arrays of millions of numbers first
 * (550 copies of a 20 KB line: seconds of CPU and GC in the fuzzer).
 */
function repeatWithin(bytes: Bytes, times: number, at: number): Bytes {
  const needed = bytes.length === 0
    ? 0
    : Math.ceil(Math.max(0, MAX_CASE_BYTES - at) / bytes.length);
  const copies: Bytes = new Array(Math.min(times, needed) * bytes.length);
  for (let i = 0; i < copies.length; i++) copies[i] = bytes[i % bytes.length];
  return copies;
}

const MUTATIONS: Record<string, Mutation> = {
  flipBit(rng, b) {
    if (b.length > 0) b[rng.int(b.length)] ^= 1 << rng.int(8);
    return b;
  },
  setByte(rng, b) {
    if (b.length > 0) b[rng.int(b.length)] = rng.chance(0.7) ? rng.pick(BYTES) : rng.int(256);
    return b;
  },
  truncate(rng, b) {
    return b.slice(0, rng.int(b.length + 1));
  },
  dropSlice(rng, b) {
    const at = rng.int(b.length);
    return [...b.slice(0, at), ...b.slice(at + 1 + rng.int(16))];
  },
  duplicate(rng, b) {
    const from = rng.int(b.length);
    const slice = b.slice(from, from + 1 + rng.int(64));
    const times = rng.chance(0.2) ? 1 + rng.int(300) : 1 + rng.int(3);
    const at = rng.int(b.length + 1);
    return [...b.slice(0, at), ...repeatWithin(slice, times, at), ...b.slice(at)];
  },
  repeatLine(rng, b) {
    const starts = lineStarts(b);
    if (starts.length < 2) return b;
    const i = rng.int(starts.length - 1);
    const line = b.slice(starts[i], starts[i + 1]);
    const times = rng.chance(0.3) ? 50 + rng.int(500) : 1 + rng.int(4);
    return [
      ...b.slice(0, starts[i]),
      ...repeatWithin(line, times, starts[i]),
      ...b.slice(starts[i]),
    ];
  },
  splice(rng, b) {
    const other = toArray(rng.pick(CORPUS));
    const cut = rng.int(b.length + 1);
    return [...b.slice(0, cut), ...other.slice(rng.int(other.length + 1))];
  },
  append(rng, b) {
    return [...b, ...toArray(rng.pick(CORPUS))];
  },
  hugeNumber(rng, b) {
    const runs = numberRuns(b);
    if (runs.length === 0) return b;
    const [from, to] = rng.pick(runs);
    return [...b.slice(0, from), ...toArray(rng.pick(NUMBERS)), ...b.slice(to)];
  },
  insertRandom(rng, b) {
    const at = rng.int(b.length + 1);
    return [...b.slice(0, at), ...randomBytes(rng, 1 + rng.int(64)), ...b.slice(at)];
  },
  longRun(rng, b) {
    const at = rng.int(b.length + 1);
    const run = new Array(1 + rng.int(20_000)).fill(rng.pick([0x61, 0x20, 0x2f, 0x25, 0x3b]));
    return [...b.slice(0, at), ...run, ...b.slice(at)];
  },
  lineEndings(rng, b) {
    const text = latin1(Uint8Array.from(b));
    const swapped = rng.pick([
      () => text.replace(/\r\n/g, "\n"),
      () => text.replace("\r\n", "\n"),
      () => text.replace("\r\n", "\r"),
      () => text.replace(/\r\n/g, "\r\r\n"),
      () => text.replace("\r\n\r\n", "\r\n \r\n"),
      () => text.replace("\r\n\r\n", "\n\r\n"),
    ])();
    return toArray(swapped);
  },
  insertField(rng, b) {
    const starts = lineStarts(b);
    if (starts.length === 0) return b;
    const at = rng.pick(starts);
    return [...b.slice(0, at), ...toArray(rng.pick(FIELDS) + "\r\n"), ...b.slice(at)];
  },
  changeCase(rng, b) {
    const at = rng.int(b.length);
    for (let i = at; i < Math.min(b.length, at + 8); i++) {
      if (b[i] >= 65 && b[i] <= 90) b[i] += 32;
      else if (b[i] >= 97 && b[i] <= 122) b[i] -= 32;
    }
    return b;
  },
  randomRequest(rng) {
    return randomBytes(rng, 1 + rng.int(256));
  },
};

const MUTATION_NAMES = Object.keys(MUTATIONS);

// ─── Cases ──────────────────────────────────────────────────────────────────

/** How a case's client ends its side of the connection. */
export type Ending = "fin" | "wait" | "reset";

/** One fuzz case: the bytes, how they are split across writes, and how the client ends. */
export interface FuzzCase {
  /** The case's index in its run. */
  index: number;
  /** The mutations applied, in order. */
  mutations: string[];
  /** What the client sends. */
  bytes: Uint8Array;
  /** The length of each write; they add up to `bytes.length`. */
  pieces: number[];
  /** Milliseconds to wait before each write after the first. */
  pauses: number[];
  /** After the last write: half-close, wait for the server, or reset (then after write `resetAfter`). */
  ending: Ending;
  /** For a reset: how many writes go out before it. */
  resetAfter: number;
}

/**
 * Builds case `index` of the run with seed `seed`; the same arguments always
 * give the same case.
 *
 * @param seed The run's seed.
 * @param index The case's index.
 * @returns The case.
 */
export function makeCase(seed: number, index: number): FuzzCase {
  const rng = new Random(caseSeed(seed, index));
  let bytes = toArray(rng.pick(CORPUS));
  const mutations: string[] = [];
  const count = rng.chance(0.1) ? 0 : 1 + rng.int(rng.chance(0.3) ? 8 : 3);
  for (let i = 0; i < count; i++) {
    const name = rng.pick(MUTATION_NAMES);
    mutations.push(name);
    bytes = MUTATIONS[name](rng, bytes);
    if (bytes.length > MAX_CASE_BYTES) bytes = bytes.slice(0, MAX_CASE_BYTES);
  }
  const { pieces, pauses } = split(rng, bytes.length);
  const roll = rng.int(100);
  const ending: Ending = roll < 75 ? "fin" : roll < 90 ? "wait" : "reset";
  const resetAfter = ending === "reset" ? 1 + rng.int(pieces.length) : pieces.length;
  return { index, mutations, bytes: Uint8Array.from(bytes), pieces, pauses, ending, resetAfter };
}

/** Random write boundaries: one write, a few, many, or byte by byte at the start. */
function split(rng: Random, length: number): { pieces: number[]; pauses: number[] } {
  const pieces: number[] = [];
  const roll = rng.int(100);
  if (length === 0) {
    pieces.push(0);
  } else if (roll < 40) {
    pieces.push(length);
  } else if (roll < 95) {
    const cuts = new Set<number>();
    const n = roll < 80 ? 1 + rng.int(3) : 4 + rng.int(12);
    for (let i = 0; i < n; i++) cuts.add(1 + rng.int(length - 1 || 1));
    let last = 0;
    for (const cut of [...cuts].sort((a, b) => a - b)) {
      if (cut > last && cut < length) pieces.push(cut - last), last = cut;
    }
    pieces.push(length - last);
  } else {
    const single = Math.min(length, 1 + rng.int(48));
    for (let i = 0; i < single; i++) pieces.push(1);
    if (length > single) pieces.push(length - single);
  }
  const pauses = pieces.map((_, i) => {
    if (i === 0) return 0;
    const p = rng.int(100);
    return p < 70 ? 0 : p < 95 ? 1 : 5 + rng.int(20);
  });
  return { pieces, pauses };
}

/** Shows a case's bytes as a JavaScript string literal, one character per byte. */
export function showBytes(bytes: Uint8Array): string {
  return JSON.stringify(latin1(bytes)).replace(
    /[\u007f-\u00ff]/g,
    (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`,
  );
}

// ─── Checking what came back ────────────────────────────────────────────────

/** What a case's connection produced. */
export interface CaseOutcome {
  /** The status codes received, in order. */
  statuses: number[];
  /**
   * `responses`: complete responses; `silent`: a close without a byte;
   * `cut stream`: complete responses, then a chunked body left unterminated (a
   * stream the server cut: the client left, writeTimeout, or the stream
   * failed); `reset`: the client reset, so nothing is checked.
   */
  kind: "responses" | "silent" | "cut stream" | "reset";
  /** What broke the rules, if anything did. */
  violation?: string;
  /** Milliseconds from connect to the server's close. */
  ms: number;
  /** What the client received, kept when there is a violation. */
  received?: Uint8Array;
}

/**
 * Checks the bytes a connection received: complete, strictly well-formed
 * responses, nothing after a response that said `connection: close`, only
 * `100` among 1xx, and at most a final chunked response cut short.
 *
 * @param bytes Everything the client received before the server closed.
 * @returns The statuses, the kind of outcome, and a violation if any.
 */
export function checkResponses(bytes: Uint8Array): Omit<CaseOutcome, "ms" | "received"> {
  let responses: ParsedResponse[];
  let kind: CaseOutcome["kind"] = bytes.length === 0 ? "silent" : "responses";
  try {
    responses = parseResponses(bytes);
  } catch (error) {
    if (!(error instanceof IncompleteResponseError)) {
      return { statuses: [], kind, violation: `Malformed response: ${(error as Error).message}` };
    }
    const cut = splitCutStream(bytes);
    if (cut === null) {
      return { statuses: [], kind, violation: `Incomplete response: ${(error as Error).message}` };
    }
    responses = cut;
    kind = "cut stream";
  }
  const statuses = responses.map((r) => r.status);
  for (let i = 0; i < responses.length; i++) {
    const r = responses[i];
    if (r.status < 200 && r.status !== 100) {
      return { statuses, kind, violation: `Unexpected interim status ${r.status}` };
    }
    const closes = /(^|,)\s*close\s*(,|$)/i.test(r.headers["connection"]?.join(",") ?? "");
    const last = i === responses.length - 1 && kind !== "cut stream";
    if (closes && !last) {
      return { statuses, kind, violation: "Bytes after a response that said connection: close" };
    }
  }
  if (responses.length > 0 && responses[responses.length - 1].status === 100) {
    if (kind !== "cut stream") {
      return { statuses, kind, violation: "A 100 Continue with no final response" };
    }
  }
  return { statuses, kind };
}

/**
 * When `bytes` end inside a response, finds whether they are complete
 * responses followed by one chunked response whose head is complete and whose
 * body stops early. Returns the parsed responses (the cut one last), or null.
 */
function splitCutStream(bytes: Uint8Array): ParsedResponse[] | null {
  const text = latin1(bytes);
  for (let at = text.lastIndexOf("HTTP/1."); at >= 0; at = text.lastIndexOf("HTTP/1.", at - 1)) {
    let before: ParsedResponse[];
    try {
      before = parseResponses(bytes.subarray(0, at));
    } catch {
      if (at === 0) break;
      continue;
    }
    const headEnd = text.indexOf("\r\n\r\n", at);
    if (headEnd < 0) return null;
    const tailHead = text.slice(at, headEnd + 4);
    if (!/\r\ntransfer-encoding: chunked\r\n/i.test(tailHead)) return null;
    try {
      // The head must be well-formed (terminated, it parses), and the chunks
      // up to the cut too: a parse of the tail may only fail for want of bytes.
      parseResponses(latin1Bytes(tailHead + "0\r\n\r\n"));
      parseResponses(bytes.subarray(at));
      return null;
    } catch (error) {
      if (!(error instanceof IncompleteResponseError)) return null;
    }
    const status = Number(tailHead.slice(9, 12));
    return [...before, { status, headers: {} } as ParsedResponse];
  }
  return null;
}

// ─── Running cases ──────────────────────────────────────────────────────────

/** Timeouts a case runs under. */
export interface CaseLimits {
  /**
   * A case whose connection the server has not closed after this many ms fails;
   * the fuzzer's own pauses (GC) are not counted. @default {10_000}
   */
  closeWithinMs?: number;
  /**
   * The target's shortest timeout in ms. A connection that fails (a reset,
   * a broken pipe) sooner, before complete responses arrived, was not ended
   * by a timeout: the server closed it while the client was still sending,
   * and the reset may have destroyed the response. @default {1000}
   */
  shortestTimeoutMs?: number;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** How often a case waiting for the server's close checks that time went by for it too. */
const CLOSE_TICK_MS = 100;

/**
 * Waits until the server closes `client`, for at most `ms` of the time this
 * process ran. When this process pauses (a long GC on a loaded machine), the
 * server's closes queue up unread, and after the pause timers fire before that
 * I/O is read: a plain timeout would then blame the server for every
 * connection in flight at once. So the wait goes by short ticks, and a tick
 * that came late counts as two ticks at most.
 *
 * @returns Whether the server closed in time.
 */
async function closedWithinAwake(client: RawClient, ms: number): Promise<boolean> {
  let awakeMs = 0;
  while (!client.closed) {
    if (awakeMs >= ms) return false;
    const tickStarted = Date.now();
    await client.waitClosed(CLOSE_TICK_MS).catch(() => {});
    awakeMs += Math.min(Date.now() - tickStarted, 2 * CLOSE_TICK_MS);
  }
  return true;
}

/**
 * Runs one case against a server on 127.0.0.1:`port` and checks the outcome.
 *
 * @param port The server's port.
 * @param fuzzCase The case to send.
 * @param limits How long the server may take to close.
 * @returns What happened; `violation` is set when a rule was broken.
 */
export async function runCase(
  port: number,
  fuzzCase: FuzzCase,
  limits: CaseLimits = {},
): Promise<CaseOutcome> {
  const closeWithinMs = limits.closeWithinMs ?? 10_000;
  const started = Date.now();
  let client: RawClient;
  try {
    client = await RawClient.connect(port);
  } catch (error) {
    return {
      statuses: [],
      kind: "silent",
      violation: `Cannot connect: ${(error as Error).message}`,
      ms: 0,
    };
  }
  try {
    let offset = 0;
    for (let i = 0; i < fuzzCase.pieces.length; i++) {
      if (fuzzCase.ending === "reset" && i === fuzzCase.resetAfter) break;
      if (fuzzCase.pauses[i] > 0) await delay(fuzzCase.pauses[i]);
      if (client.closed) break;
      const piece = fuzzCase.bytes.subarray(offset, offset + fuzzCase.pieces[i]);
      offset += fuzzCase.pieces[i];
      // The server may close first. Bun's node:net then never calls the write
      // callback: do not wait for it longer than a case may last.
      if (piece.length > 0) await within(client.write(piece), closeWithinMs, "").catch(() => {});
    }
    if (fuzzCase.ending === "reset") {
      client.reset();
      return { statuses: [], kind: "reset", ms: Date.now() - started };
    }
    if (fuzzCase.ending === "fin" && !client.closed) await client.end().catch(() => {});
    if (!await closedWithinAwake(client, closeWithinMs)) {
      const ms = Date.now() - started;
      return {
        ...checkResponses(client.received),
        violation: `The server did not close the connection within ${closeWithinMs} ms ` +
          `(${ms} ms after connecting, pauses of the fuzzer itself not counted)`,
        ms,
        received: client.received,
      };
    }
    const ms = Date.now() - started;
    const outcome = { ...checkResponses(client.received), ms };
    const failure = client.error &&
      ((client.error as { code?: string }).code ?? client.error.message);
    const timedOut = ms >= (limits.shortestTimeoutMs ?? 1000) - 50;
    if (!outcome.violation && failure && outcome.kind !== "responses" && !timedOut) {
      // A reset after complete responses loses nothing; before them it may have.
      outcome.violation = `The connection failed (${failure}) after ${ms} ms, ` +
        `with ${outcome.kind === "silent" ? "no response" : outcome.kind}`;
    }
    return outcome.violation ? { ...outcome, received: client.received } : outcome;
  } finally {
    client.destroy();
  }
}

/** Options for {@linkcode fuzz}. */
export interface FuzzOptions extends CaseLimits {
  /** The server's port on 127.0.0.1. */
  port: number;
  /** The run's seed. */
  seed: number;
  /** How many cases to run. */
  cases: number;
  /** Run only these case indexes (to reproduce a failure). */
  only?: number[];
  /** Connections in flight at once. @default {64} */
  concurrency?: number;
  /** Stop after this many violations. @default {10} */
  maxViolations?: number;
  /** Called every `progressEvery` cases with the count done. */
  onProgress?: (done: number) => void;
  /** How often `onProgress` is called, in cases. @default {5000} */
  progressEvery?: number;
  /** Checked between cases; a message stops the run (the target died). */
  healthCheck?: () => string | null;
}

/** A broken rule, with what is needed to reproduce it. */
export interface Violation {
  /** The run's seed. */
  seed: number;
  /** The case's index in the run. */
  index: number;
  /** The rule that broke, in words. */
  what: string;
  /** The case itself. */
  fuzzCase: FuzzCase;
  /** What the client received, as a string literal. */
  received?: string;
}

/** What a fuzz run saw. */
export interface FuzzReport {
  /** The run's seed. */
  seed: number;
  /** Cases run. */
  cases: number;
  /** Status code → how many responses had it. */
  statuses: Record<number, number>;
  /** Outcome kind → how many cases ended that way. */
  kinds: Record<string, number>;
  /** Every broken rule. */
  violations: Violation[];
  /** How long the run took, in ms. */
  ms: number;
  /** The slowest case, in ms from connect to close. */
  slowestMs: number;
  /** The slowest case's index. */
  slowestIndex: number;
  /** Set when the run stopped early, and why. */
  stopped?: string;
}

/**
 * Runs `cases` fuzz cases against a server, `concurrency` at a time.
 *
 * @param options The server's port, the seed, the case count and limits.
 * @returns Counts of statuses and outcomes, and every violation found.
 */
export async function fuzz(options: FuzzOptions): Promise<FuzzReport> {
  const { seed, port, concurrency = 64, maxViolations = 10, progressEvery = 5000 } = options;
  const indexes = options.only ?? Array.from({ length: options.cases }, (_, i) => i);
  const report: FuzzReport = {
    seed,
    cases: 0,
    statuses: {},
    kinds: {},
    violations: [],
    ms: 0,
    slowestMs: 0,
    slowestIndex: -1,
  };
  const started = Date.now();
  let next = 0;
  const worker = async () => {
    while (next < indexes.length && !report.stopped) {
      const index = indexes[next++];
      const fuzzCase = makeCase(seed, index);
      const outcome = await runCase(port, fuzzCase, options);
      report.cases++;
      report.kinds[outcome.kind] = (report.kinds[outcome.kind] ?? 0) + 1;
      for (const status of outcome.statuses) {
        report.statuses[status] = (report.statuses[status] ?? 0) + 1;
      }
      if (outcome.ms > report.slowestMs) {
        report.slowestMs = outcome.ms;
        report.slowestIndex = index;
      }
      if (outcome.violation) {
        const received = outcome.received && showBytes(outcome.received.subarray(0, 2000));
        report.violations.push({ seed, index, what: outcome.violation, fuzzCase, received });
        if (report.violations.length >= maxViolations) report.stopped = "too many violations";
      }
      const unhealthy = options.healthCheck?.();
      if (unhealthy) report.stopped = unhealthy;
      if (report.cases % progressEvery === 0) options.onProgress?.(report.cases);
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, indexes.length) }, worker));
  report.ms = Date.now() - started;
  return report;
}

/** A multi-line description of a violation that reproduces it. */
export function describeViolation(v: Violation): string {
  const c = v.fuzzCase;
  return [
    `${v.what}`,
    `  reproduce: --seed ${v.seed} --only ${v.index}`,
    `  mutations: ${c.mutations.join(", ") || "(none)"}; writes: ${c.pieces.join("+")}; ` +
    `ending: ${c.ending}${c.ending === "reset" ? ` after write ${c.resetAfter}` : ""}`,
    `  bytes (${c.bytes.length}): ${showBytes(c.bytes.subarray(0, 2000))}${
      c.bytes.length > 2000 ? "…" : ""
    }`,
    ...(v.received === undefined ? [] : [`  received: ${v.received}`]),
  ].join("\n");
}

// ─── A whole run against a target process ───────────────────────────────────

/** Timeouts and limits for a fuzz target: short, so that cases that stall end fast. */
export const FUZZ_TARGET_OPTIONS: TargetOptions = {
  readHeaderTimeout: 1000,
  readTimeout: 2000,
  writeTimeout: 2000,
  idleTimeout: 500,
  maxHeaderBytes: 4096,
  maxBodyBytes: 65_536,
  shutdownTimeout: 3000,
  maxStreamBytes: 1 << 20,
};

/** A fuzz run against a target process, with the process's health before and after. */
export interface TargetFuzzReport extends FuzzReport {
  /** Open file descriptors of the target after warm-up, and after the run settled. */
  fds: { before: number; after: number } | null;
  /** Resident memory of the target in bytes: after warm-up, after the run, and its peak. */
  rss: { before: number; after: number; peak: number } | null;
  /** Lines the target printed on stderr that start a report, by their first words. */
  logged: Record<string, number>;
  /** Everything that makes the run fail, in words; empty when it passed. */
  problems: string[];
}

/** File descriptors above the baseline that a run may end with (runtime-internal ones). */
const FD_SLACK = 2;

/**
 * Runs a fuzz campaign against a target started with
 * {@linkcode FUZZ_TARGET_OPTIONS}: warms it up, records its file descriptors
 * and memory, runs the cases, then checks that it is alive, answers a normal
 * request, reported no unexpected failure and is back to its file
 * descriptors.
 *
 * @param target The running target.
 * @param options The seed, the case count and the concurrency.
 * @returns The report; `problems` lists what failed.
 */
export async function fuzzTarget(
  target: Target,
  options: Omit<FuzzOptions, "port">,
): Promise<TargetFuzzReport> {
  const port = target.port;
  for (let i = 0; i < 50; i++) await normalRequest(port);
  await delay(200);
  const before = target.stats();
  const report = await fuzz({
    ...options,
    port,
    healthCheck: () =>
      target.process.running ? null : `the target exited: ${target.process.stderr.slice(-2000)}`,
  });
  const problems = report.violations.map(describeViolation);
  if (report.stopped) problems.push(`The run stopped early: ${report.stopped}`);
  if (target.process.running) {
    const answer = await normalRequest(port).catch((error) => `${error}`);
    if (answer !== "ok") problems.push(`A normal request afterwards got ${answer}`);
  }
  let after = target.stats();
  if (before && after) {
    // Connections the cases left are closed by now or soon: let the target settle.
    const deadline = Date.now() + 5000;
    while (after && after.fds > before.fds + FD_SLACK && Date.now() < deadline) {
      await delay(100);
      after = target.stats();
    }
    if (after && after.fds > before.fds + FD_SLACK) {
      problems.push(`File descriptors leaked: ${before.fds} before, ${after.fds} after`);
    }
  }
  const logged: Record<string, number> = {};
  for (const line of target.process.stderr.split("\n")) {
    const match = line.match(/^(brick|target): ([^:]+)/);
    if (!match) continue;
    const key = `${match[1]}: ${match[2]}`;
    logged[key] = (logged[key] ?? 0) + 1;
    if (match[1] === "target" || /Unexpected|Accepting/.test(match[2])) {
      if (logged[key] === 1) problems.push(`The target logged: ${line}`);
    }
  }
  return {
    ...report,
    fds: before && after ? { before: before.fds, after: after.fds } : null,
    rss: before && after ? { before: before.rss, after: after.rss, peak: after.peakRss } : null,
    logged,
    problems,
  };
}

/** GET / on a fresh connection; resolves to the body of a 200, or a description of what came. */
async function normalRequest(port: number): Promise<string> {
  const { bytes } = await rawExchange(port, [
    "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  ], {
    waitMs: 2000,
  });
  try {
    const [response] = parseResponses(bytes);
    return response?.status === 200 ? response.text : `status ${response?.status}`;
  } catch (error) {
    return `${(error as Error).message}: ${showBytes(bytes)}`;
  }
}
