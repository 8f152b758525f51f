/**
 * The `brick` command line: starts an HTTP/1.1 server that answers
 * `Hello, World!` on every path, prints where it listens, and writes an
 * access log line per request in Common Log Format.
 *
 * ```sh
 * deno run --allow-net main.ts                 # all interfaces, port 8888
 * deno run --allow-net main.ts -p 0 -H 127.0.0.1 --verbose
 * deno run --allow-net --allow-sys main.ts     # also lists the Network URLs
 * npx brick --port 0                           # the npm package, on Node
 * ```
 *
 * The same file runs on Deno, Node (as the npm package's `brick` command) and
 * Bun: it uses `node:` modules, and Deno's permission API only where `Deno`
 * exists.
 *
 * Flags: `--port/-p`, `--host/-H`, `--verbose/-v` (print each request head as
 * received), `--quiet/-q` (no access log), `--help/-h`, `--version/-V`.
 *
 * Exit codes: `0` after a graceful shutdown (SIGINT or SIGTERM) or `--help` /
 * `--version`, `1` when the server cannot start, `2` on a bad flag, `130` when
 * a second SIGINT or SIGTERM cuts the graceful shutdown short.
 *
 * @module
 */

import { realpathSync } from "node:fs";
import { networkInterfaces } from "node:os";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { type Handler, serve, type ServeInfo, type Server, VERSION } from "./mod.ts";

/** The port used when `--port` is not given. */
export const DEFAULT_PORT = 8888;
/** The interface used when `--host` is not given: all IPv4 interfaces. */
export const DEFAULT_HOST = "0.0.0.0";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

/**
 * The command shown in the usage line and in permission hints: how this
 * runtime starts brick. On Node and Bun that is the npm package's `brick`
 * command, through `npx` when npx started it.
 */
const COMMAND = deno
  ? "deno run --allow-net main.ts"
  : process.env.npm_command === "exec"
  ? "npx brick"
  : "brick";

/** The one-line usage printed under a flag error and at the top of `--help`. */
export const USAGE: string =
  `Usage: ${COMMAND} [--port <port>] [--host <host>] [--verbose] [--quiet]`;

/** The flags `brick` understands, after parsing and validation. */
export interface Flags {
  /** Port to listen on; `0` lets the system pick a free one. */
  port: number;
  /** Interface to listen on. */
  host: string;
  /** Print each raw request head as received. */
  verbose: boolean;
  /** Do not print the access log. */
  quiet: boolean;
  /** Print the help and exit. */
  help: boolean;
  /** Print the version and exit. */
  version: boolean;
}

/** A command line the user has to correct; `main` answers it with exit code 2. */
export class UsageError extends Error {
  /**
   * Creates a usage error.
   *
   * @param message What is wrong with the command line, in sentence case.
   */
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Each option once: parseArgs config, help text and value name. */
const OPTIONS = {
  port: {
    type: "string",
    short: "p",
    value: "<port>",
    help: `Port to listen on, 0 picks a free one (default: ${DEFAULT_PORT})`,
  },
  host: {
    type: "string",
    short: "H",
    value: "<host>",
    help: `Interface to listen on (default: ${DEFAULT_HOST}, all interfaces)`,
  },
  verbose: { type: "boolean", short: "v", help: "Print each request head as received" },
  quiet: { type: "boolean", short: "q", help: "Do not print the access log" },
  help: { type: "boolean", short: "h", help: "Print this help and exit" },
  version: { type: "boolean", short: "V", help: "Print the version and exit" },
} as const;

type OptionName = keyof typeof OPTIONS;

/**
 * Parses and validates the command line arguments.
 *
 * @param args The arguments after the script name, as in `process.argv.slice(2)`.
 * @returns The flags, with defaults applied.
 * @throws {UsageError} On an unknown flag, a missing or malformed value, or a
 * positional argument.
 *
 * @example Usage
 * ```ts
 * import { parseFlags } from "./main.ts";
 * const flags = parseFlags(["-p", "0", "--host", "127.0.0.1"]);
 * console.assert(flags.port === 0 && flags.host === "127.0.0.1");
 * ```
 */
export function parseFlags(args: string[]): Flags {
  const { tokens } = parseArgs({
    args,
    options: OPTIONS,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const flags: Flags = {
    port: DEFAULT_PORT,
    host: DEFAULT_HOST,
    verbose: false,
    quiet: false,
    help: false,
    version: false,
  };
  for (const token of tokens) {
    if (token.kind === "option-terminator") continue;
    if (token.kind === "positional") {
      throw new UsageError(`Unexpected argument "${token.value}"`);
    }
    if (!Object.hasOwn(OPTIONS, token.name)) {
      throw new UsageError(`Unknown flag "${token.rawName}"`);
    }
    const name = token.name as OptionName;
    const option = OPTIONS[name];
    if (option.type === "boolean") {
      if (token.value !== undefined) {
        throw new UsageError(`Flag "${token.rawName}" takes no value`);
      }
      flags[name as "verbose" | "quiet" | "help" | "version"] = true;
      continue;
    }
    const value = token.value;
    // `--port --quiet` would otherwise take "--quiet" as the port.
    if (value === undefined || (!token.inlineValue && /^-[^\d]/.test(value))) {
      throw new UsageError(`Missing value for "${token.rawName}"`);
    }
    if (name === "port") flags.port = parsePort(value);
    else if (value === "") throw new UsageError(`Invalid host "": expected a name or an address`);
    else flags.host = value;
  }
  return flags;
}

/** Reads a port number strictly: digits only, 0 to 65535. */
function parsePort(value: string): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(port <= 65535)) {
    throw new UsageError(`Invalid port "${value}": expected a number from 0 to 65535`);
  }
  return port;
}

/**
 * Formats the `--help` text: the usage line and the options, aligned.
 *
 * @returns The help text, without a trailing newline.
 *
 * @example Usage
 * ```ts
 * import { formatHelp } from "./main.ts";
 * console.log(formatHelp());
 * ```
 */
export function formatHelp(): string {
  const rows = Object.entries(OPTIONS).map(([name, option]) => {
    const value = "value" in option ? ` ${option.value}` : "";
    return [`-${option.short}, --${name}${value}`, option.help];
  });
  const width = Math.max(...rows.map(([left]) => left.length));
  return [
    `brick ${VERSION}: a small HTTP/1.1 server`,
    "",
    USAGE,
    "",
    "Options:",
    ...rows.map(([left, help]) => `  ${left.padEnd(width)}  ${help}`),
  ].join("\n");
}

/**
 * Chooses the handler for the command line. Today every path answers
 * `Hello, World!`; serving an app module or static files will grow here.
 *
 * @param _flags The parsed flags.
 * @returns The request handler.
 */
function createHandler(_flags: Flags): Handler {
  return helloWorld;
}

const HELLO = "Hello, World!";
const HELLO_LENGTH = String(new TextEncoder().encode(HELLO).byteLength);

function helloWorld(): Response {
  return new Response(HELLO, {
    headers: { "content-type": "text/plain; charset=utf-8", "content-length": HELLO_LENGTH },
  });
}

/** One finished request, as the access log sees it. */
export interface AccessLogEntry {
  /** The client's address. */
  remoteAddr: string;
  /** When the request arrived. */
  date: Date;
  /** The request line as received, for example `GET /path?query HTTP/1.1`. */
  requestLine: string;
  /** The response status code. */
  status: number;
  /** The response body size in bytes, or `undefined` when unknown. */
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
 * import { formatAccessLog } from "./main.ts";
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
  const requestLine = escapeForLog(entry.requestLine.replace(/["\\]/g, "\\$&"));
  const bytes = entry.bytes === undefined ? "-" : String(entry.bytes);
  const date = formatClfDate(entry.date);
  return `${entry.remoteAddr} - - [${date}] "${requestLine}" ${entry.status} ${bytes}`;
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
 * import { formatClfDate } from "./main.ts";
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
 * Writes one access log line per request, once its response is fully written
 * or the client has gone away. The request line is taken from the raw request
 * head, which `serve()` hands to {@linkcode AccessLog.recordHead} with the same
 * `info` object that the handler receives; without it, the line is rebuilt
 * from the method and the URL's path and query.
 */
class AccessLog {
  #requestLines = new WeakMap<ServeInfo, string>();

  /** @param log Receives one formatted line per request. */
  constructor(readonly log: (line: string) => void) {}

  /** Remembers the request line exactly as received, as Common Log Format wants it. */
  recordHead(head: Uint8Array, info: ServeInfo): void {
    let lf = head.indexOf(10);
    if (lf === -1) return;
    if (head[lf - 1] === 13) lf--;
    this.#requestLines.set(info, latin1(head.subarray(0, lf)));
  }

  /** Wraps a handler so each of its requests is logged. */
  wrap(handler: Handler): Handler {
    return async (request: Request, info: ServeInfo) => {
      const date = new Date();
      const requestLine = this.#requestLines.get(info) ??
        `${request.method} ${requestTarget(request.url)} HTTP/1.1`;
      const response = await handler(request, info);
      const length = response.headers.get("content-length");
      const entry: AccessLogEntry = {
        remoteAddr: info.remoteAddr.hostname,
        date,
        requestLine,
        status: response.status,
        bytes: length !== null && /^\d+$/.test(length) ? Number(length) : undefined,
      };
      const write = () => {
        try {
          this.log(formatAccessLog(entry));
        } catch {
          // A closed stdout must not take the server down.
        }
      };
      info.completed.then(write, write);
      return response;
    };
  }
}

/** The path and query of an absolute request URL. */
function requestTarget(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  return start === -1 ? "/" : url.slice(start);
}

/** Whether to colour what goes to stdout: only on a terminal, and never with `NO_COLOR`. */
function useColor(): boolean {
  try {
    // On Deno, reading the environment would need --allow-env; Deno.noColor does not.
    const noColor = deno ? deno.noColor : Boolean(process.env.NO_COLOR);
    return !noColor && process.stdout.isTTY === true;
  } catch {
    return false;
  }
}

/** Options for {@linkcode formatBanner}. */
export interface BannerOptions {
  /** The host given on the command line. */
  host: string;
  /** The port the server actually listens on. */
  port: number;
  /**
   * This machine's non-internal IPv4 addresses, for the Network lines; null
   * when listing them was not permitted (no `--allow-sys`), to print a hint.
   */
  networkAddresses: string[] | null;
  /** Whether to use ANSI colours. */
  color: boolean;
}

/**
 * Formats the startup banner: the version, the `Local:` URL and, when
 * listening on all interfaces, one `Network:` URL per address.
 *
 * @param options Where the server listens and how to print it.
 * @returns The banner, without a trailing newline.
 *
 * @example Usage
 * ```ts
 * import { formatBanner } from "./main.ts";
 * console.log(formatBanner({ host: "0.0.0.0", port: 8888, networkAddresses: [], color: false }));
 * ```
 */
export function formatBanner(options: BannerOptions): string {
  const { host, port, color } = options;
  const bold = (s: string) => color ? `\x1b[1m${s}\x1b[22m` : s;
  const cyan = (s: string) => color ? `\x1b[36m${s}\x1b[39m` : s;
  const dim = (s: string) => color ? `\x1b[2m${s}\x1b[22m` : s;
  const url = (hostname: string) => cyan(`http://${formatHost(hostname)}:${bold(String(port))}/`);
  const lines = [`${bold("brick")} ${VERSION} is listening`];
  if (isWildcard(host)) {
    lines.push(`  Local:   ${url("localhost")}`);
    if (options.networkAddresses === null) {
      lines.push(`  Network: ${dim("add --allow-sys to list this machine's addresses")}`);
    }
    for (const address of options.networkAddresses ?? []) {
      lines.push(`  Network: ${url(address)}`);
    }
  } else if (isLoopback(host)) {
    lines.push(`  Local:   ${url(host)}`);
  } else {
    lines.push(`  Network: ${url(host)}`);
  }
  lines.push(dim("Press Ctrl+C to stop"));
  return lines.join("\n");
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || host.startsWith("127.");
}

/** Brackets an IPv6 address for use in a URL or `host:port`. */
function formatHost(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}

/**
 * This machine's non-internal IPv4 addresses. On Deno, null when
 * `--allow-sys` was not given: the permission is queried first, so this never
 * prompts. Node and Bun need no permission.
 */
function networkAddresses(): string[] | null {
  try {
    if (deno) {
      const { state } = deno.permissions.querySync({ name: "sys", kind: "networkInterfaces" });
      if (state !== "granted") return null;
    }
    const addresses = Object.values(networkInterfaces()).flatMap((list) => list ?? [])
      .filter((i) => i.family === "IPv4" && !i.internal && !i.address.startsWith("127."))
      .map((i) => i.address);
    return [...new Set(addresses)];
  } catch {
    return [];
  }
}

/**
 * Prints the startup banner on stdout.
 *
 * @param host The host given on the command line.
 * @param port The port the server actually listens on.
 */
export function printBanner(host: string, port: number): void {
  const addresses = isWildcard(host) ? networkAddresses() : [];
  console.log(
    formatBanner({ host, port, networkAddresses: addresses, color: useColor() }),
  );
}

/**
 * Prints a raw request head byte for byte, decoded as latin1, with control
 * characters made visible. Its closing empty line shows as a blank line.
 */
function printRequestHead(head: Uint8Array): void {
  try {
    console.log(escapeForLog(latin1(head)).replace(/\n$/, ""));
  } catch {
    // A closed stdout must not take the server down.
  }
}

/**
 * Whether the permission to listen was granted, asked without prompting.
 * Always true on Node and Bun, which have no such permission.
 */
function canListen(host: string, port: number): boolean {
  if (!deno) return true;
  try {
    const descriptor = { name: "net", host: `${formatHost(host)}:${port}` } as const;
    return deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return true; // Unknown: let serve() find out.
  }
}

/**
 * Why listening failed, as a Node error code (`EADDRINUSE`, `EACCES`,
 * `EADDRNOTAVAIL`), or `"ENOTCAPABLE"` for Deno's missing `--allow-net`.
 * Deno's error classes are mapped to the same codes.
 */
function listenErrorCode(error: unknown): string | undefined {
  if (deno) {
    // Deno 2 reports a missing --allow-net as NotCapable and keeps
    // PermissionDenied for the OS refusing (a port below 1024, say).
    const errors = deno.errors as Partial<typeof Deno.errors>;
    if (errors.NotCapable && error instanceof errors.NotCapable) return "ENOTCAPABLE";
    if (errors.AddrInUse && error instanceof errors.AddrInUse) return "EADDRINUSE";
    if (errors.AddrNotAvailable && error instanceof errors.AddrNotAvailable) {
      return "EADDRNOTAVAIL";
    }
    if (errors.PermissionDenied && error instanceof errors.PermissionDenied) {
      return errors.NotCapable ? "EACCES" : "ENOTCAPABLE";
    }
  }
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Quotes an argument for a POSIX shell when it needs it. */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

function permissionHint(address: string, args: string[]): string {
  const command = [COMMAND, ...args.map(shellQuote)].join(" ");
  return `Cannot listen on ${address}: network access is not allowed\n` +
    `Run it with network access instead: ${command}`;
}

/**
 * Explains why the server could not listen, in words a user can act on.
 *
 * @param error What `serve()` threw (Deno), or what `server.finished`
 * rejected with before the server listened (Node and Bun).
 * @param flags The parsed flags.
 * @param args The original arguments, to suggest a command to run instead.
 * @returns The message for stderr.
 */
export function describeListenError(error: unknown, flags: Flags, args: string[]): string {
  const address = `${formatHost(flags.host)}:${flags.port}`;
  switch (listenErrorCode(error)) {
    case "EADDRINUSE": {
      const next = flags.port === 0 || flags.port === 65535 ? 0 : flags.port + 1;
      return `Cannot listen on ${address}: address already in use (try --port ${next})`;
    }
    case "ENOTCAPABLE":
      return permissionHint(address, args);
    case "EACCES":
      return `Cannot listen on ${address}: permission denied by the system ` +
        `(ports below 1024 usually need privileges; try --port ${DEFAULT_PORT})`;
    case "EADDRNOTAVAIL":
      return `Cannot listen on ${address}: address not available on this machine ` +
        `(try --host ${DEFAULT_HOST})`;
  }
  const detail = error instanceof Error ? error.message : String(error);
  // The error may already say where it could not listen.
  return detail.startsWith("Cannot listen on ") ? detail : `Cannot listen on ${address}: ${detail}`;
}

/** Listens for SIGINT and SIGTERM; returns a function that stops listening. */
function onShutdownSignal(listener: () => void): () => void {
  const added: ("SIGINT" | "SIGTERM")[] = [];
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      process.on(signal, listener);
      added.push(signal);
    } catch {
      // Deno cannot listen for SIGTERM on Windows.
    }
  }
  return () => added.forEach((signal) => process.off(signal, listener));
}

/**
 * Runs the `brick` command line: parses the flags, starts the server and
 * waits until a SIGINT or SIGTERM has shut it down gracefully.
 *
 * @param args The arguments after the script name, as in `process.argv.slice(2)`.
 * @returns The exit code: `0` after a graceful shutdown or `--help`/`--version`,
 * `1` when the server cannot start, `2` on a bad flag. A second signal during
 * the shutdown exits at once with `130`.
 *
 * @example Usage
 * ```ts ignore
 * import process from "node:process";
 * import { main } from "./main.ts";
 * process.exit(await main(["--port", "8080"]));
 * ```
 */
export async function main(args: string[]): Promise<number> {
  let flags: Flags;
  try {
    flags = parseFlags(args);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    console.error(error.message);
    console.error(USAGE);
    return 2;
  }
  if (flags.help) {
    console.log(formatHelp());
    return 0;
  }
  if (flags.version) {
    console.log(`brick ${VERSION}`);
    return 0;
  }

  const address = `${formatHost(flags.host)}:${flags.port}`;
  if (!canListen(flags.host, flags.port)) {
    console.error(permissionHint(address, args));
    return 1;
  }
  let handler = createHandler(flags);
  const heads: ((head: Uint8Array, info: ServeInfo) => void)[] = [];
  if (flags.verbose) heads.push(printRequestHead);
  if (!flags.quiet) {
    const accessLog = new AccessLog((line) => console.log(line));
    handler = accessLog.wrap(handler);
    heads.push((head, info) => accessLog.recordHead(head, info));
  }

  // Deno binds inside serve() and throws there when it cannot; Node and Bun
  // bind in the background and reject `server.finished` before onListen.
  let listening = false;
  let server: Server;
  try {
    server = serve({
      port: flags.port,
      hostname: flags.host,
      handler,
      onListen: ({ port }) => {
        listening = true;
        printBanner(flags.host, port);
      },
      onRequestHead: heads.length === 0 ? undefined : (head, info) => {
        for (const onHead of heads) onHead(head, info);
      },
    });
  } catch (error) {
    console.error(describeListenError(error, flags, args));
    return 1;
  }

  let shuttingDown = false;
  const removeSignalListeners = onShutdownSignal(() => {
    if (shuttingDown) {
      console.error("Forcing exit");
      process.exit(130);
    }
    shuttingDown = true;
    console.error("Shutting down");
    server.shutdown().catch((error) => {
      console.error(`Shutdown failed: ${error instanceof Error ? error.message : error}`);
    });
  });
  try {
    await server.finished;
    return 0;
  } catch (error) {
    if (!listening) console.error(describeListenError(error, flags, args));
    else console.error(`Server stopped: ${error instanceof Error ? error.message : error}`);
    return 1;
  } finally {
    removeSignalListeners();
  }
}

/**
 * Whether this module is the program's entry point. Deno, Bun and newer Node
 * versions say so in `import.meta.main`; on older Node it is the script named
 * in `process.argv[1]`, which for the npm package is the `brick` symlink (or a
 * shim naming the real file), so both paths are resolved before comparing.
 */
function isEntryPoint(): boolean {
  const meta = import.meta as { main?: boolean };
  if (typeof meta.main === "boolean") return meta.main;
  const script = process.argv[1];
  if (!script) return false;
  try {
    const self = realpathSync(fileURLToPath(import.meta.url));
    for (const candidate of [script, `${script}.js`]) {
      try {
        if (realpathSync(candidate) === self) return true;
      } catch {
        // No such file: try the next spelling.
      }
    }
  } catch {
    // Not a file URL: not started as a script.
  }
  return false;
}

if (isEntryPoint()) process.exit(await main(process.argv.slice(2)));
