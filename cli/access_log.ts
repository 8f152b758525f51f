/**
 * The access log: one line per response in Common Log Format
 * (`127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 13`),
 * written once the response is finished, and the raw request heads that
 * `--verbose` prints.
 *
 * @module
 */

import type { Addr, ResponseLogEntry } from "../mod.ts";

/** One finished request, as the access log sees it. */
export interface AccessLogEntry {
  /** The client's IP address, or `unix` for a client on a Unix socket. */
  remoteAddr: string;
  /** When the request arrived. */
  date: Date;
  /** The request line as received, for example `GET /path?query HTTP/1.1`. */
  requestLine: string;
  /** The response status code. */
  status: number;
  /** The bytes of body sent, or `undefined` for none (written `-`). */
  bytes: number | undefined;
}

/**
 * Formats an access log line in Common Log Format, with the date in the
 * local time zone: `127.0.0.1 - - [21/Nov/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 13`.
 *
 * @param entry The request to describe.
 * @returns The log line, without a newline.
 *
 * @example Usage
 * ```ts
 * import { formatAccessLog } from "./access_log.ts";
 * const line = formatAccessLog({
 *   remoteAddr: "127.0.0.1",
 *   date: new Date(),
 *   requestLine: "GET / HTTP/1.1",
 *   status: 200,
 *   bytes: 13,
 * });
 * console.assert(line.endsWith('"GET / HTTP/1.1" 200 13'));
 * ```
 */
export function formatAccessLog(entry: AccessLogEntry): string {
  return logLine(
    entry.remoteAddr,
    formatClfDate(entry.date),
    entry.requestLine,
    entry.status,
    entry.bytes,
  );
}

/** One log line from its parts, the date already formatted. */
function logLine(
  remoteAddr: string,
  date: string,
  requestLine: string,
  status: number,
  bytes: number | undefined,
): string {
  const line = isPlainForLog(requestLine)
    ? requestLine
    : escapeForLog(requestLine.replace(/["\\]/g, "\\$&"));
  return `${remoteAddr} - - [${date}] "${line}" ${status} ${bytes === undefined ? "-" : bytes}`;
}

/** Whether `text` needs no escaping: printable ASCII without `"` or `\`. */
function isPlainForLog(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code > 0x7e || code === 0x22 || code === 0x5c) return false;
  }
  return true;
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/**
 * Formats a date as Common Log Format does, in the local time zone:
 * `21/Nov/2026:10:00:00 +0000`.
 *
 * @param date The date to format.
 * @returns The formatted date.
 *
 * @example Usage
 * ```ts
 * import { formatClfDate } from "./access_log.ts";
 * console.log(formatClfDate(new Date()));
 * ```
 */
export function formatClfDate(date: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  const offset = -date.getTimezoneOffset();
  const sign = offset < 0 ? "-" : "+";
  const zone = `${sign}${two(Math.floor(Math.abs(offset) / 60))}${two(Math.abs(offset) % 60)}`;
  return `${two(date.getDate())}/${MONTHS[date.getMonth()]}/${date.getFullYear()}:` +
    `${two(date.getHours())}:${two(date.getMinutes())}:${two(date.getSeconds())} ${zone}`;
}

/**
 * Makes control characters visible (`\x1b`), so a client cannot move the
 * cursor or recolour the terminal of the person reading the log.
 * Tabs and line breaks are kept.
 */
function escapeForLog(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]/g, (c) => {
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/** Decodes bytes one to one as latin1, the way an HTTP head is defined. */
function latin1(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) {
    text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  }
  return text;
}

/**
 * Makes the server's `onResponse` callback that writes the access log: one
 * line per response the server sends, its own (400, 408, 413, 503…) and the
 * handler's, once it is written or the client has gone away, with the bytes
 * of body actually sent (`-` for none). Each line is one call of `log`.
 *
 * @param log Receives one formatted line per response.
 * @returns The callback for `serve({ onResponse })`.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "../mod.ts";
 * import { accessLogger } from "./access_log.ts";
 * serve({ handler: () => new Response("Hi"), onResponse: accessLogger(console.log) });
 * ```
 */
export function accessLogger(log: (line: string) => void): (entry: ResponseLogEntry) => void {
  // The date is formatted once per second, not once per line.
  let second = NaN;
  let date = "";
  return (entry) => {
    try {
      const now = Math.floor(entry.startTime / 1000);
      if (now !== second) {
        second = now;
        date = formatClfDate(new Date(now * 1000));
      }
      log(logLine(
        clientAddress(entry.remoteAddr),
        date,
        entry.requestLine === "" ? "-" : entry.requestLine,
        entry.status,
        entry.bodyBytes === 0 ? undefined : entry.bodyBytes,
      ));
    } catch {
      // A closed stdout must not take the server down.
    }
  };
}

/**
 * Makes a line writer that gathers the lines of one event-loop turn and
 * writes them with one call of `write`, at the end of the turn: one system
 * call for a burst of log lines instead of one each. Lines keep their order.
 *
 * @param write Receives the gathered lines, each ending in a newline.
 * @returns The function that takes one line (without its newline), with `flush()`.
 *
 * @example Usage
 * ```ts ignore
 * import process from "node:process";
 * import { batchedLines } from "./access_log.ts";
 * const log = batchedLines((text) => process.stdout.write(text));
 * log("one");
 * log("two"); // both written at once when this turn ends
 * ```
 */
export function batchedLines(write: (text: string) => void): LineBatch {
  let pending = "";
  const flush = () => {
    if (pending === "") return;
    const text = pending;
    pending = "";
    try {
      write(text);
    } catch {
      // A closed stdout must not take the server down.
    }
  };
  const add = (line: string) => {
    if (pending === "") setTimeout(flush, 0);
    pending += line + "\n";
    if (pending.length >= MAX_BATCH_CHARS) flush();
  };
  return Object.assign(add, { flush });
}

/** Takes one line; `flush()` writes what is gathered at once. */
export interface LineBatch {
  /** Gathers one line (without its newline). */
  (line: string): void;
  /** Writes the lines gathered so far now. */
  flush(): void;
}

/** A batch of log lines is written at once past this many characters. */
const MAX_BATCH_CHARS = 64 * 1024;

/** The client's address for the log: its IP address, or `unix` on a Unix socket. */
function clientAddress(addr: Addr): string {
  return addr.transport === "unix" ? "unix" : addr.hostname;
}

/**
 * Prints a raw request head byte for byte, decoded as latin1, with control
 * characters made visible. Its closing empty line shows as a blank line.
 */
export function printRequestHead(head: Uint8Array): void {
  try {
    console.log(escapeForLog(latin1(head)).replace(/\n$/, ""));
  } catch {
    // A closed stdout must not take the server down.
  }
}
