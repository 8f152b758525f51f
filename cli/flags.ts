/**
 * The command line's flags: the options, their parsing and validation into
 * {@linkcode Flags}, and the `--help` text.
 *
 * @module
 */

import { availableParallelism, cpus } from "node:os";
import process from "node:process";
import { parseArgs } from "node:util";
import { VERSION } from "../mod.ts";
import { brickCommand, READ_FILES } from "./command.ts";
import { parseByteSize, parseProxyFlag, PROXY_FLAGS, type ProxyMount } from "./proxy.ts";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;
/** Whether this runs on Bun. */
const bun = typeof (process.versions as { bun?: string }).bun === "string";

/** The port used when `--port` is not given. */
export const DEFAULT_PORT = 8888;

/** The interface used when `--host` is not given: all IPv4 interfaces. */
export const DEFAULT_HOST = "0.0.0.0";

/** The one-line usage printed under a flag error and at the top of `--help`. */
export const USAGE: string = `Usage: ${
  brickCommand(READ_FILES)
} [options] [<app module> | <folder>]`;

/** The flags `brick` understands, after parsing and validation. */
export interface Flags {
  /** Port to listen on; `0` lets the system pick a free one. */
  port: number;
  /** Interface to listen on. */
  host: string;
  /** The PEM certificate (chain) file given with `--cert`: brick speaks HTTPS. */
  cert: string | undefined;
  /** The PEM private key file of the certificate, given with `--key`. */
  key: string | undefined;
  /** The Unix domain socket to listen on instead of a TCP port, given with `--unix`. */
  unix: string | undefined;
  /**
   * How many workers serve: `1` serves in this process; more start a
   * supervisor and that many threads (Deno) or processes (Node, Bun).
   */
  workers: number;
  /** Add `x-brick-worker: <id>; pid=<pid>; start=<n>` to every response (hidden flag). */
  debugWorker: boolean;
  /** The app module given with `--app`. */
  app: string | undefined;
  /** The folder given with `--root`. */
  root: string | undefined;
  /** The argument without a flag: an app module or a folder, told apart by {@linkcode resolveTarget}. */
  path: string | undefined;
  /** Serve files and folders whose names start with a dot. */
  dotfiles: boolean;
  /** List a folder's files when it has no index.html. */
  listing: boolean;
  /** Compress file responses when the client accepts it. */
  compress: boolean;
  /** Add CORS headers to every response. */
  cors: boolean;
  /** Header fields from `--header`, as name and value, in the order given. */
  headers: [name: string, value: string][];
  /** The upstreams given with `--proxy`, in the order given. */
  proxy: ProxyMount[];
  /** The size of the proxy's HTTP cache in bytes, from `--cache`; no cache when undefined. */
  cacheBytes: number | undefined;
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
  cert: { type: "string", value: "<file>", help: "Serve HTTPS with this PEM certificate chain" },
  key: { type: "string", value: "<file>", help: "The PEM private key of --cert" },
  unix: { type: "string", value: "<path>", help: "Listen on this Unix socket instead of a port" },
  workers: {
    type: "string",
    value: "<n>",
    help: 'Serve with n processes (threads on Deno); "auto": one per core',
  },
  app: { type: "string", value: "<module>", help: "Serve this module's default export" },
  root: { type: "string", value: "<folder>", help: "Serve the files in this folder" },
  dotfiles: { type: "boolean", help: "Folder: also serve names that start with a dot" },
  "no-listing": { type: "boolean", help: "Folder: 404 for a folder without index.html" },
  "no-compress": { type: "boolean", help: "Folder: do not compress responses" },
  cors: { type: "boolean", help: "Allow cross-origin requests (Access-Control-Allow-Origin: *)" },
  header: {
    type: "string",
    value: "<field>",
    help: 'Add "Name: value" to every response, repeatable',
  },
  proxy: PROXY_FLAGS.proxy,
  cache: PROXY_FLAGS.cache,
  verbose: { type: "boolean", short: "v", help: "Print each request head as received" },
  quiet: { type: "boolean", short: "q", help: "Do not print the access log" },
  help: { type: "boolean", short: "h", help: "Print this help and exit" },
  version: { type: "boolean", short: "V", help: "Print the version and exit" },
  "debug-worker": {
    type: "boolean",
    hidden: true,
    help: "Name the worker that answered in an x-brick-worker response header",
  },
} as const;

type OptionName = keyof typeof OPTIONS;

/** Where each boolean flag is recorded in {@linkcode Flags}, and the value it sets. */
const BOOLEAN_FLAGS = {
  dotfiles: ["dotfiles", true],
  "no-listing": ["listing", false],
  "no-compress": ["compress", false],
  cors: ["cors", true],
  verbose: ["verbose", true],
  quiet: ["quiet", true],
  help: ["help", true],
  version: ["version", true],
  "debug-worker": ["debugWorker", true],
} as const satisfies Record<string, [keyof Flags, boolean]>;

/** The flags that only mean something when brick serves a folder. */
export const FOLDER_FLAGS = ["dotfiles", "no-listing", "no-compress"] as const;

/**
 * Parses and validates the command line arguments. It does not look at the
 * file system: {@linkcode resolveTarget} does that.
 *
 * @param args The arguments after the script name, as in `process.argv.slice(2)`.
 * @returns The flags, with defaults applied.
 * @throws {UsageError} On an unknown flag, a missing or malformed value, a
 * second positional argument, or an app and a folder at once.
 *
 * @example Usage
 * ```ts
 * import { parseFlags } from "./flags.ts";
 * const flags = parseFlags(["-p", "0", "--host", "127.0.0.1", "public", "--cors"]);
 * console.assert(flags.port === 0 && flags.path === "public" && flags.cors);
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
    cert: undefined,
    key: undefined,
    unix: undefined,
    workers: 1,
    debugWorker: false,
    app: undefined,
    root: undefined,
    path: undefined,
    dotfiles: false,
    listing: true,
    compress: true,
    cors: false,
    headers: [],
    proxy: [],
    cacheBytes: undefined,
    verbose: false,
    quiet: false,
    help: false,
    version: false,
  };
  const given = new Set<OptionName>();
  for (const token of tokens) {
    if (token.kind === "option-terminator") continue;
    if (token.kind === "positional") {
      if (flags.path !== undefined) {
        throw new UsageError(
          `Unexpected argument "${token.value}": brick serves one app module or one folder`,
        );
      }
      flags.path = token.value;
      continue;
    }
    if (!Object.hasOwn(OPTIONS, token.name)) {
      throw new UsageError(`Unknown flag "${token.rawName}"`);
    }
    const name = token.name as OptionName;
    given.add(name);
    if (OPTIONS[name].type === "boolean") {
      if (token.value !== undefined) {
        throw new UsageError(`Flag "${token.rawName}" takes no value`);
      }
      const [field, value] = BOOLEAN_FLAGS[name as keyof typeof BOOLEAN_FLAGS];
      (flags[field] as boolean) = value;
      continue;
    }
    const value = token.value;
    // `--port --quiet` would otherwise take "--quiet" as the port.
    if (value === undefined || (!token.inlineValue && /^-[^\d]/.test(value))) {
      throw new UsageError(`Missing value for "${token.rawName}"`);
    }
    switch (name) {
      case "port":
        flags.port = parsePort(value);
        break;
      case "host":
        if (value === "") throw new UsageError(`Invalid host "": expected a name or an address`);
        flags.host = value;
        break;
      case "app":
      case "root":
      case "cert":
      case "key":
      case "unix":
        if (value === "") throw new UsageError(`Missing value for "${token.rawName}"`);
        flags[name] = value;
        break;
      case "workers":
        flags.workers = parseWorkerCount(value);
        break;
      case "header":
        flags.headers.push(parseHeaderFlag(value));
        break;
      case "proxy":
        flags.proxy.push(asUsageError(() => parseProxyFlag(value)));
        break;
      case "cache":
        flags.cacheBytes = asUsageError(() => parseByteSize(value));
        break;
    }
  }
  checkOneTarget(flags);
  checkProxyFlags(flags);
  checkListenFlags(flags, given);
  return flags;
}

/** The most workers `--workers` starts: a larger number is more likely a typo than a plan. */
const MAX_WORKERS = 256;

/** The number of CPU cores this process may use, as `--workers auto` counts them. */
function coreCount(): number {
  return typeof availableParallelism === "function" ? availableParallelism() : cpus().length || 1;
}

/** Reads a `--workers` value: a count from 1 to {@linkcode MAX_WORKERS}, or `auto`. */
function parseWorkerCount(value: string): number {
  if (value === "auto") return coreCount();
  const count = /^\d{1,4}$/.test(value) ? Number(value) : NaN;
  if (!(count >= 1 && count <= MAX_WORKERS)) {
    throw new UsageError(
      `Invalid worker count "${value}": expected a number from 1 to ${MAX_WORKERS}, or "auto"`,
    );
  }
  return count;
}

/**
 * Rejects listening flags that do not go together: a certificate without its
 * key (or the reverse), and `--unix` with anything that belongs to a TCP port.
 */
function checkListenFlags(flags: Flags, given: Set<OptionName>): void {
  if ((flags.cert === undefined) !== (flags.key === undefined)) {
    const [has, lacks] = flags.cert === undefined ? ["--key", "--cert"] : ["--cert", "--key"];
    throw new UsageError(
      `Flag "${has}" needs "${lacks}" too: HTTPS takes a certificate and its private key`,
    );
  }
  if (flags.unix === undefined) return;
  const why = {
    port: "brick listens on a Unix socket or on a TCP port, not both",
    host: "brick listens on a Unix socket or on a TCP port, not both",
    cert: "brick serves HTTPS on TCP ports only",
    key: "brick serves HTTPS on TCP ports only",
    workers: "workers share a TCP port",
  } as const;
  for (const name of ["port", "host", "cert", "key", "workers"] as const) {
    if (!given.has(name) || (name === "workers" && flags.workers === 1)) continue;
    throw new UsageError(`Flag "--unix" cannot be combined with "--${name}": ${why[name]}`);
  }
}

/** Reads a port number strictly: digits only, 0 to 65535. */
function parsePort(value: string): number {
  const port = /^\d{1,5}$/.test(value) ? Number(value) : NaN;
  if (!(port <= 65535)) {
    throw new UsageError(`Invalid port "${value}": expected a number from 0 to 65535`);
  }
  return port;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

// Visible ASCII, spaces and tabs inside, and obs-text; no control characters.
const FIELD_VALUE = /^(?:[\x21-\x7e\x80-\xff](?:[\t\x20-\x7e\x80-\xff]*[\x21-\x7e\x80-\xff])?)?$/;

/**
 * Reads a `--header` value, `Name: value`, into a name and a value with the
 * whitespace around the value trimmed. An empty value is allowed, as in HTTP.
 */
function parseHeaderFlag(text: string): [string, string] {
  const colon = text.indexOf(":");
  const name = colon === -1 ? "" : text.slice(0, colon);
  const value = text.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
  if (colon === -1 || !TOKEN.test(name) || !FIELD_VALUE.test(value)) {
    const why = colon === -1
      ? 'expected "Name: value"'
      : !TOKEN.test(name)
      ? "the name must be letters, digits and !#$%&'*+-.^_`|~, with no spaces"
      : "the value must not contain control characters";
    throw new UsageError(`Invalid header ${JSON.stringify(text)}: ${why}`);
  }
  return [name, value];
}

/** Runs a parser of cli/proxy.ts, whose TypeError becomes a {@linkcode UsageError}. */
function asUsageError<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
}

/**
 * Rejects `--cache` without `--proxy`, two `--proxy` values for one path, and
 * an app or folder that a `--proxy` on `/` would leave unreachable.
 */
function checkProxyFlags(flags: Flags): void {
  if (flags.cacheBytes !== undefined && flags.proxy.length === 0) {
    throw new UsageError(
      'Flag "--cache" needs "--proxy": it caches upstream responses (e.g. --proxy http://127.0.0.1:3000 --cache 256MB)',
    );
  }
  const seen = new Set<string>();
  for (const mount of flags.proxy) {
    if (seen.has(mount.prefix)) {
      throw new UsageError(
        `Flag "--proxy" is given twice for "${mount.prefix}": each path forwards to one upstream`,
      );
    }
    seen.add(mount.prefix);
  }
  const served = servedPath(flags);
  if (seen.has("/") && served !== undefined) {
    const upstream = flags.proxy.find((mount) => mount.prefix === "/")!.upstream;
    throw new UsageError(
      `Flag "--proxy ${upstream}" forwards every path, so "${served}" would never be served: ` +
        `mount the upstream on a path instead, as in --proxy /api=${upstream}`,
    );
  }
}

/** Rejects a command line that names more than one app or folder. */
function checkOneTarget(flags: Flags): void {
  const given = [
    flags.path === undefined ? "" : `"${flags.path}"`,
    flags.app === undefined ? "" : `--app "${flags.app}"`,
    flags.root === undefined ? "" : `--root "${flags.root}"`,
  ].filter((text) => text !== "");
  if (given.length > 1) {
    throw new UsageError(
      `Cannot serve ${given.join(" and ")} at once: brick serves one app module or one folder`,
    );
  }
}

/**
 * Formats the `--help` text: the usage line, the options, aligned, and
 * examples that use this runtime's command.
 *
 * @returns The help text, without a trailing newline.
 *
 * @example Usage
 * ```ts
 * import { formatHelp } from "./flags.ts";
 * console.log(formatHelp());
 * ```
 */
export function formatHelp(): string {
  const rows = Object.entries(OPTIONS).filter(([, option]) => !("hidden" in option)).map(
    ([name, option]) => {
      const short = "short" in option ? `-${option.short}, ` : "    ";
      const value = "value" in option ? ` ${option.value}` : "";
      return [`${short}--${name}${value}`, option.help];
    },
  );
  const width = Math.max(...rows.map(([left]) => left.length));
  const hello = brickCommand(["--allow-net"]);
  const files = brickCommand(READ_FILES);
  const workers = brickCommand([...READ_FILES, "--unstable-net"]);
  return [
    `brick ${VERSION}: a small HTTP/1.1 server`,
    "",
    USAGE,
    "",
    "Serves an app module (its default export is a fetch handler: a function",
    "(request, info) => Response, or an object with a fetch method, such as a",
    "Hono app), or the files in a folder, or Hello, World! when given neither.",
    "A path names an app when it is a file and a folder when it is a folder.",
    "",
    "Options:",
    ...rows.map(([left, help]) => `  ${left.padEnd(width)}  ${help}`),
    "",
    "Examples:",
    "  # Hello, World! on http://localhost:8888/",
    `  ${hello}`,
    '  # An app: export default { fetch(request) { return new Response("Hi") } }',
    `  ${files} app.${deno || bun ? "ts" : "js"}`,
    "  # The files in ./public on port 8080, for local clients only, with CORS",
    `  ${files} ./public -p 8080 -H 127.0.0.1 --cors`,
    "  # Every response with a header field",
    `  ${files} dist --header "Cache-Control: no-store"`,
    "  # A reverse proxy with a 256 MiB cache in front of an app on port 3000",
    `  ${hello} --proxy http://127.0.0.1:3000 --cache 256MB`,
    "  # The files in ./dist, and /api forwarded to port 3000",
    `  ${files} ./dist --proxy /api=http://127.0.0.1:3000`,
    "  # HTTPS with a certificate and its key, in PEM files",
    `  ${files} ./public --cert cert.pem --key key.pem`,
    "  # An app on every core of this machine",
    `  ${workers} app.${deno || bun ? "ts" : "js"} --workers auto`,
  ].join("\n");
}

/** The path of the app module or folder to serve, if the flags name one. */
export function servedPath(flags: Flags): string | undefined {
  return flags.app ?? flags.root ?? flags.path;
}

/** Whether brick reads files for these flags, which on Deno needs `--allow-read`. */
export function readsFiles(flags: Flags): boolean {
  return servedPath(flags) !== undefined || flags.cert !== undefined || flags.unix !== undefined;
}
