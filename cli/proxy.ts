/**
 * The CLI's reverse proxy: what `brick --proxy <upstream>` and
 * `--cache <size>` need, from flag values to the handler.
 *
 * - `--proxy http://127.0.0.1:3000` forwards every request.
 * - `--proxy /api=http://127.0.0.1:3000` forwards `/api` and `/api/…` (the
 *   path kept as it is) and leaves the rest to the folder or app; repeatable.
 * - `--cache 256MB` puts one shared HTTP cache (RFC 9111) of that many bytes
 *   in front of every upstream.
 *
 * @example Usage
 * ```ts
 * import { parseByteSize, parseProxyFlag, proxyHandler } from "./proxy.ts";
 *
 * const mount = parseProxyFlag("/api=http://127.0.0.1:3000");
 * const handler = proxyHandler([mount], { cacheBytes: parseByteSize("64MB") });
 * console.assert(mount.prefix === "/api" && typeof handler === "function");
 * handler.close();
 * ```
 *
 * @module
 */

import type { Handler } from "../mod.ts";
import { createProxy, HttpCache } from "../proxy.ts";
import { withResponseHeaders } from "./headers.ts";

/** Help lines for the flags, in the shape of main.ts's option table. */
export const PROXY_FLAGS = {
  proxy: {
    type: "string",
    multiple: true,
    value: "<[/path=]url>",
    help: "Forward to an http:// upstream: every path, or only /path (repeatable)",
  },
  cache: {
    type: "string",
    value: "<size>",
    help: "Cache upstream responses (RFC 9111) in this much memory, e.g. 256MB",
  },
} as const;

/** One `--proxy` value: the path it serves and where it forwards. */
export interface ProxyMount {
  /** "/" for everything, else a path prefix without trailing slash ("/api"). */
  prefix: string;
  /** The upstream origin, `http://host:port`, optionally with a base path. */
  upstream: string;
}

/**
 * Parses a `--proxy` value: `http://host:port` or `/path=http://host:port`.
 *
 * @param value The flag's value.
 * @returns The mount it describes.
 * @throws {TypeError} With a message for the command line when it is malformed.
 */
export function parseProxyFlag(value: string): ProxyMount {
  const eq = value.indexOf("=");
  const hasPrefix = value.startsWith("/") && eq > 0;
  const prefix = hasPrefix ? value.slice(0, eq).replace(/\/+$/, "") || "/" : "/";
  const upstream = hasPrefix ? value.slice(eq + 1) : value;
  if (value.startsWith("/") && eq < 0) {
    throw new TypeError(
      `Invalid --proxy "${value}": a path needs its upstream, as in /api=http://127.0.0.1:3000`,
    );
  }
  let url: URL;
  try {
    url = new URL(upstream);
  } catch {
    throw new TypeError(
      `Invalid --proxy "${value}": "${upstream}" is not a URL; give one such as http://127.0.0.1:3000`,
    );
  }
  if (url.protocol !== "http:") {
    throw new TypeError(`Invalid --proxy "${value}": only http:// upstreams are supported`);
  }
  if (url.search !== "" || url.hash !== "" || url.username !== "") {
    throw new TypeError(
      `Invalid --proxy "${value}": the upstream takes no query, fragment or credentials`,
    );
  }
  if (!/^\/[^?#]*$/.test(prefix) || prefix.includes("//")) {
    throw new TypeError(`Invalid --proxy "${value}": the path must look like /api`);
  }
  return { prefix, upstream: url.origin + url.pathname.replace(/\/$/, "") };
}

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1024 ** 3,
  gib: 1024 ** 3,
};

/**
 * Parses a size such as `256MB`, `64m`, `1.5GiB` or `1048576`. Units are
 * powers of 1024, as nginx and Varnish read them.
 *
 * @param value The size as typed.
 * @returns The size in bytes, a whole number above 0.
 * @throws {TypeError} When it is not a size.
 */
export function parseByteSize(value: string): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(value);
  const unit = match ? UNITS[match[2].toLowerCase()] : undefined;
  if (match === null || unit === undefined) {
    throw new TypeError(`Invalid size "${value}": give a number with an optional unit, e.g. 256MB`);
  }
  const bytes = Math.floor(Number(match[1]) * unit);
  if (!(bytes > 0) || !Number.isSafeInteger(bytes)) {
    throw new TypeError(`Invalid size "${value}": it must be above 0`);
  }
  return bytes;
}

/** Options of {@linkcode proxyHandler}. */
export interface ProxyHandlerOptions {
  /** Bytes of the shared cache (`--cache`); no cache when absent. */
  cacheBytes?: number;
  /** What answers requests no mount takes (the folder or the app); 404 when absent. */
  fallback?: Handler;
  /** Fields from `--header`, set on every proxied response. */
  headers?: [string, string][];
  /** `--cors`: allow any origin on proxied responses, and answer preflights the upstream refuses. */
  cors?: boolean;
}

/**
 * Builds the handler for a list of `--proxy` mounts: the longest matching
 * prefix forwards, anything else goes to `fallback`. One cache is shared by
 * every mount.
 *
 * @param mounts The parsed `--proxy` values.
 * @param options The cache size and the handler for the rest.
 * @returns The handler, with `close()` to close idle upstream connections.
 */
export function proxyHandler(
  mounts: ProxyMount[],
  options: ProxyHandlerOptions = {},
): Handler & { close(): void } {
  const cache = options.cacheBytes === undefined
    ? undefined
    : new HttpCache({ maxBytes: options.cacheBytes });
  const proxies = mounts.map((mount) => createProxy({ upstream: mount.upstream, cache }));
  const routes: { prefix: string; handler: Handler }[] = mounts
    .map((mount, i) => ({
      prefix: mount.prefix,
      handler: withResponseHeaders(proxies[i], options.headers ?? [], options.cors ?? false),
    }))
    .sort((a, b) => b.prefix.length - a.prefix.length);
  const fallback: Handler = options.fallback ??
    (() => new Response("Not Found\n", { status: 404, headers: { "content-type": "text/plain" } }));
  const handler: Handler = (request, info) => {
    const route = routes.find((r) => mounted(r.prefix, pathOf(request.url)));
    return route ? route.handler(request, info) : fallback(request, info);
  };
  return Object.assign(handler, {
    close: () => {
      for (const proxy of proxies) proxy.close();
    },
  });
}

/** The path of an absolute URL, without parsing all of it. */
function pathOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return "/";
  const end = url.slice(start).search(/[?#]/);
  return end < 0 ? url.slice(start) : url.slice(start, start + end);
}

/** Whether `path` is `prefix` or below it ("/api" takes "/api" and "/api/x", not "/apix"). */
function mounted(prefix: string, path: string): boolean {
  if (prefix === "/") return true;
  return path === prefix || (path.startsWith(prefix) && path.charCodeAt(prefix.length) === 47);
}
