/**
 * The startup banner: the version, what is served, the workers, and the
 * `Local:` and `Network:` URLs (or a Unix socket's path), in colour only on a
 * terminal and never with `NO_COLOR`.
 *
 * @module
 */

import { networkInterfaces } from "node:os";
import process from "node:process";
import { VERSION } from "../mod.ts";
import type { Target } from "./app.ts";
import { shellQuote } from "./command.ts";
import type { Flags } from "./flags.ts";
import type { ProxyMount } from "./proxy.ts";

/** Deno's API where this runs on Deno; undefined on Node and Bun. */
const deno: typeof Deno | undefined = (globalThis as { Deno?: typeof Deno }).Deno;

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
  /** What is served, shown above the URLs: an app module or a folder, by absolute path. */
  serving?: { kind: "app" | "folder"; path: string };
  /** Whether the server speaks HTTPS: the URLs then start with `https://`. */
  tls?: boolean;
  /**
   * The Unix socket the server listens on, by absolute path. The banner then
   * shows it, and how to reach it with curl, instead of URLs.
   */
  socket?: string;
  /**
   * The workers that serve, when there are several: how many, and their
   * process ids; without `pids`, they are threads of this process (Deno).
   */
  workers?: { count: number; pids?: number[] };
  /**
   * The `--proxy` mounts, one `Proxy:` line each, and the `--cache` size in
   * bytes, shown after each (per worker when there are several).
   */
  proxy?: { mounts: ProxyMount[]; cacheBytes?: number };
}

/**
 * Formats the startup banner: the version, what is served (`App:` or
 * `Folder:`), the workers, the `Local:` URL and, when listening on all
 * interfaces, one `Network:` URL per address; or for a Unix socket, its path
 * and a curl command that reaches it.
 *
 * @param options Where the server listens and how to print it.
 * @returns The banner, without a trailing newline.
 *
 * @example Usage
 * ```ts
 * import { formatBanner } from "./banner.ts";
 * console.log(formatBanner({ host: "0.0.0.0", port: 8888, networkAddresses: [], color: false }));
 * ```
 */
export function formatBanner(options: BannerOptions): string {
  const { host, port, color } = options;
  const bold = (s: string) => color ? `\x1b[1m${s}\x1b[22m` : s;
  const cyan = (s: string) => color ? `\x1b[36m${s}\x1b[39m` : s;
  const dim = (s: string) => color ? `\x1b[2m${s}\x1b[22m` : s;
  const scheme = options.tls ? "https://" : "http://";
  const url = (hostname: string) => cyan(`${scheme}${formatHost(hostname)}:${bold(String(port))}/`);
  const lines = [`${bold("brick")} ${VERSION} is listening`];
  const { serving, socket, workers } = options;
  if (serving) lines.push(`  ${serving.kind === "app" ? "App:    " : "Folder: "} ${serving.path}`);
  if (workers) {
    const pids = workers.pids ? ` (pids ${workers.pids.join(", ")})` : "";
    lines.push(`  Workers: ${workers.count} ${workers.pids ? "processes" : "threads"}${pids}`);
  }
  for (const mount of options.proxy?.mounts ?? []) {
    const { cacheBytes } = options.proxy!;
    const shared = options.proxy!.mounts.length > 1 ? ", shared" : "";
    const perWorker = workers && workers.count > 1 ? " per worker" : "";
    const cache = cacheBytes === undefined
      ? ""
      : dim(` (cache ${formatSize(cacheBytes)}${perWorker}${shared})`);
    const path = mount.prefix === "/" ? "everything" : mount.prefix;
    lines.push(`  Proxy:   ${path} → ${cyan(mount.upstream)}${cache}`);
  }
  if (socket !== undefined) {
    lines.push(`  Socket:  ${cyan(socket)}`);
    lines.push(`  Try:     ${dim(`curl --unix-socket ${shellQuote(socket)} http://localhost/`)}`);
  } else if (isWildcard(host)) {
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

/** The `--proxy` mounts and `--cache` size for the banner; undefined without `--proxy`. */
export function proxyBanner(flags: Flags): BannerOptions["proxy"] {
  if (flags.proxy.length === 0) return undefined;
  return { mounts: flags.proxy, cacheBytes: flags.cacheBytes };
}

/** A size in bytes as people read it: `256 MiB`, `1.5 GiB`, `900 bytes`. */
export function formatSize(bytes: number): string {
  const units = [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const;
  for (const [unit, size] of units) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))} ${unit}`;
  }
  return `${bytes} bytes`;
}

function isWildcard(host: string): boolean {
  return host === "0.0.0.0" || host === "::" || host === "[::]";
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || host.startsWith("127.");
}

/** Brackets an IPv6 address for use in a URL or `host:port`. */
export function formatHost(host: string): string {
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
 * @param target What is served; the banner names an app module or a folder.
 * @param more HTTPS, a Unix socket or workers, as {@linkcode BannerOptions} describes them.
 */
export function printBanner(
  host: string,
  port: number,
  target?: Target,
  more: Pick<BannerOptions, "tls" | "socket" | "workers" | "proxy"> = {},
): void {
  const addresses = isWildcard(host) && more.socket === undefined ? networkAddresses() : [];
  const serving = target && target.kind !== "hello"
    ? { kind: target.kind, path: target.path }
    : undefined;
  const color = useColor();
  console.log(
    formatBanner({ host, port, networkAddresses: addresses, color, serving, ...more }),
  );
}
