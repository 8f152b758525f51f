// A shared HTTP cache (RFC 9111) for the reverse proxy (proxy.ts).
//
// The RFC's rules are pure functions at the top (directives, storability,
// freshness, age, Vary), each tested on its own; the store (bytes-bounded
// LRU in memory) and the request flow (lookup, validation, collapsing,
// invalidation, Cache-Status) use them below.
//
// Sections: 1. options, 2. directives and rules, 3. the store, 4. the flow.

// ─── 1. Options ─────────────────────────────────────────────────────────────

/** Options of the proxy's cache. */
export interface CacheOptions {
  /**
   * Bytes the memory store may hold (bodies plus fields). The least recently
   * used responses are evicted first.
   *
   * @default {67108864}
   */
  maxBytes?: number;
  /**
   * The largest response stored, in bytes; a larger body streams through
   * uncached.
   *
   * @default {maxBytes / 8}
   */
  maxEntryBytes?: number;
  /**
   * The name of this cache in `Cache-Status` (RFC 9211).
   *
   * @default {"brick"}
   */
  name?: string;
  /**
   * Fraction of the time since `Last-Modified` used as freshness when a
   * response gives none (RFC 9111 §4.2.2).
   *
   * @default {0.1}
   */
  heuristicFraction?: number;
}

// ─── 2. Directives and rules ────────────────────────────────────────────────

/** Cache-Control directives, names lowercased; a directive without value maps to "". */
export type Directives = Map<string, string>;

/** Parses Cache-Control (RFC 9111 §5.2): `token [ "=" ( token / quoted-string ) ]`, comma-separated. */
export function parseCacheControl(value: string | null): Directives {
  const directives: Directives = new Map();
  if (value === null) return directives;
  const re =
    /\s*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)\s*(?:=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*)))?\s*(?:,|$)/y;
  let at = 0;
  while (at < value.length) {
    re.lastIndex = at;
    const match = re.exec(value);
    if (match === null) {
      // Skip an element we cannot read, up to the next comma.
      const comma = value.indexOf(",", at);
      if (comma < 0) break;
      at = comma + 1;
      continue;
    }
    at = re.lastIndex;
    const name = match[1].toLowerCase();
    const arg = match[2] !== undefined ? match[2].replace(/\\(.)/g, "$1") : match[3] ?? "";
    // A repeated directive keeps its first value; a conflicting one makes it invalid.
    if (directives.has(name) && directives.get(name) !== arg) directives.set(name, "\0invalid");
    else directives.set(name, arg);
  }
  return directives;
}

/**
 * The Surrogate-Control directives (W3C Edge Architecture 1.0) that apply to
 * the surrogate `name`: those without a target, and those targeted at it
 * (`max-age=60;brick`). Null when the field is absent or none applies.
 */
export function surrogateDirectives(value: string | null, name: string): Directives | null {
  if (value === null) return null;
  const directives: Directives = new Map();
  for (const part of value.split(",")) {
    const [directive, target] = part.split(";").map((p) => p.trim());
    if (directive === "" || (target !== undefined && target.toLowerCase() !== name.toLowerCase())) {
      continue;
    }
    const eq = directive.indexOf("=");
    const key = (eq < 0 ? directive : directive.slice(0, eq)).toLowerCase();
    if (!/^[a-z0-9-]+$/.test(key)) continue;
    directives.set(key, eq < 0 ? "" : directive.slice(eq + 1));
  }
  return directives.size > 0 ? directives : null;
}

/** A delta-seconds argument (RFC 9111 §1.2.2), or null when absent or invalid. */
export function deltaSeconds(directives: Directives, name: string): number | null {
  const value = directives.get(name);
  if (value === undefined || !/^\d+$/.test(value)) return null;
  return Math.min(Number(value), 2 ** 31);
}

/** An HTTP-date (RFC 9110 §5.6.7) in ms, or null. */
export function parseHttpDate(value: string | null): number | null {
  if (value === null) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : ms;
}

/** Statuses that are heuristically cacheable (RFC 9110 §15.1). */
const HEURISTIC_STATUSES = new Set([200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501]);

/** Statuses whose semantics this cache implements (for `must-understand`, RFC 9111 §5.2.2.3). */
const UNDERSTOOD_STATUSES = new Set([
  200,
  203,
  204,
  300,
  301,
  302,
  303,
  307,
  308,
  400,
  403,
  404,
  405,
  410,
  414,
  451,
  500,
  501,
  502,
  503,
  504,
]);

/**
 * Why a response to `request` cannot be stored by a shared cache (RFC 9111
 * §3, §3.5), or null when it can.
 */
export function whyNotStorable(
  method: string,
  requestHeaders: Headers,
  status: number,
  headers: Headers,
  name = "brick",
): string | null {
  if (method !== "GET") return "method";
  // Any final status may be stored with explicit freshness, except those this
  // cache does not understand: 206 and 304 (never stored whole), and any other
  // when the response says must-understand (RFC 9111 §3, §5.2.2.3).
  if (status < 200 || status === 206 || status === 304) return "status";
  if (
    !UNDERSTOOD_STATUSES.has(status) &&
    /(^|,)\s*must-understand\s*(,|$)/i.test(headers.get("cache-control") ?? "")
  ) {
    return "status";
  }
  const request = parseCacheControl(requestHeaders.get("cache-control"));
  if (request.has("no-store")) return "request-no-store";
  // Surrogate-Control speaks to this cache alone and takes precedence over Cache-Control.
  const surrogate = surrogateDirectives(headers.get("surrogate-control"), name);
  if (surrogate?.has("no-store")) return "surrogate-no-store";
  if (surrogate && deltaSeconds(surrogate, "max-age") !== null) return null;
  const response = parseCacheControl(headers.get("cache-control"));
  if (response.has("no-store")) return "no-store";
  if (response.has("private")) return "private";
  if (headers.get("vary")?.split(",").some((v) => v.trim() === "*")) return "vary-star";
  if (
    requestHeaders.has("authorization") && !response.has("public") &&
    !response.has("must-revalidate") && !response.has("s-maxage")
  ) {
    return "authorization";
  }
  const explicit = response.has("public") || response.has("s-maxage") ||
    response.has("max-age") || headers.has("expires");
  if (!explicit && !HEURISTIC_STATUSES.has(status)) return "no-freshness";
  return null;
}

/**
 * Whether a stored response's directives forbid this shared cache to serve it
 * stale, whatever max-stale, stale-while-revalidate or stale-if-error allow
 * (RFC 9111 §4.2.4): `no-cache`, `must-revalidate`, `proxy-revalidate`, and
 * `s-maxage`, which carries proxy-revalidate's meaning for a shared cache
 * (§5.2.2.10).
 */
function staleForbidden(response: Directives): boolean {
  return response.has("no-cache") || response.has("must-revalidate") ||
    response.has("proxy-revalidate") || response.has("s-maxage");
}

/** What freshness needs of a stored response's fields, computed once at store time. */
export interface Freshness {
  /** Freshness lifetime in seconds (RFC 9111 §4.2.1). */
  lifetime: number;
  /** Whether the lifetime came from heuristics (§4.2.2). */
  heuristic: boolean;
  directives: Directives;
}

/** The freshness lifetime of a response as a shared cache sees it (RFC 9111 §4.2.1–§4.2.2). */
export function freshnessLifetime(
  status: number,
  headers: Headers,
  heuristicFraction = 0.1,
  name = "brick",
): Freshness {
  const directives = parseCacheControl(headers.get("cache-control"));
  const surrogate = surrogateDirectives(headers.get("surrogate-control"), name);
  const surrogateMaxAge = surrogate === null ? null : deltaSeconds(surrogate, "max-age");
  if (surrogateMaxAge !== null) {
    // Cache-Control is for the caches after this one; only its revalidation rules stay.
    directives.delete("no-store");
    directives.delete("private");
    return { lifetime: surrogateMaxAge, heuristic: false, directives };
  }
  const sMaxAge = deltaSeconds(directives, "s-maxage");
  if (sMaxAge !== null) return { lifetime: sMaxAge, heuristic: false, directives };
  if (directives.has("s-maxage")) return { lifetime: 0, heuristic: false, directives };
  const maxAge = deltaSeconds(directives, "max-age");
  if (maxAge !== null) return { lifetime: maxAge, heuristic: false, directives };
  if (directives.has("max-age")) return { lifetime: 0, heuristic: false, directives };
  if (headers.has("expires")) {
    const expires = parseHttpDate(headers.get("expires"));
    const date = parseHttpDate(headers.get("date"));
    if (expires === null || date === null) return { lifetime: 0, heuristic: false, directives };
    return { lifetime: Math.max(0, (expires - date) / 1000), heuristic: false, directives };
  }
  const lastModified = parseHttpDate(headers.get("last-modified"));
  const date = parseHttpDate(headers.get("date"));
  if (
    (HEURISTIC_STATUSES.has(status) || directives.has("public")) && lastModified !== null &&
    date !== null && date > lastModified
  ) {
    return {
      lifetime: (date - lastModified) / 1000 * heuristicFraction,
      heuristic: true,
      directives,
    };
  }
  return { lifetime: 0, heuristic: true, directives };
}

/** The times and Age a stored response's current age is computed from (RFC 9111 §4.2.3). */
export interface AgeBasis {
  requestTime: number;
  responseTime: number;
  /** The Date field in ms, or responseTime when absent. */
  date: number;
  /** The Age field in seconds, 0 when absent. */
  age: number;
}

/** The largest age a cache sends or assumes, in seconds (RFC 9111 §1.2.2). */
const MAX_AGE = 2 ** 31;

/**
 * The Age field in seconds (RFC 9111 §5.1): a list written as one field
 * line ("0,7200") counts by its first member, as the RFC asks. Anything else
 * (a sign, a fraction, parameters, several field lines, which Headers joins
 * with ", ") makes the response stale: the RFC's SHOULD for invalid values,
 * and the safe side when values disagree on how old the response is.
 */
export function parseAge(value: string | null): number {
  if (value === null) return 0;
  const first = /^(\d+)(,\d+)*$/.exec(value);
  return first === null ? MAX_AGE : Math.min(Number(first[1]), MAX_AGE);
}

/** The current age in seconds at `now` (RFC 9111 §4.2.3). */
export function currentAge(basis: AgeBasis, now: number): number {
  const apparentAge = Math.max(0, basis.responseTime - basis.date) / 1000;
  const responseDelay = (basis.responseTime - basis.requestTime) / 1000;
  const correctedAgeValue = basis.age + responseDelay;
  const correctedInitialAge = Math.max(apparentAge, correctedAgeValue);
  const residentTime = (now - basis.responseTime) / 1000;
  return correctedInitialAge + residentTime;
}

/** The normalised values of the fields `vary` names, as a request sends them (RFC 9111 §4.1). */
export function varyKey(vary: string | null, requestHeaders: Headers): string | null {
  if (vary === null) return "";
  const names = vary.split(",").map((n) => n.trim().toLowerCase()).filter((n) => n !== "");
  if (names.includes("*")) return null;
  names.sort();
  let key = "";
  for (const name of names) {
    const value = requestHeaders.get(name);
    key += name + "\0" + (value === null ? "\x01" : value.replace(/\s*,\s*/g, ",").trim()) + "\0";
  }
  return key;
}

// ─── 3. The store ───────────────────────────────────────────────────────────

/** A stored response. */
export interface Entry {
  url: string;
  /** The Vary field of the response, and the request's values of those fields. */
  vary: string | null;
  varyKey: string;
  status: number;
  statusText: string;
  /** Fields as stored (end-to-end only), flat. */
  fields: [string, string][];
  body: Uint8Array;
  basis: AgeBasis;
  freshness: Freshness;
  size: number;
}

/** Headers of a stored entry, without Age and Cache-Status. */
function entryHeaders(entry: Entry): Headers {
  const headers = new Headers();
  for (const [name, value] of entry.fields) headers.append(name, value);
  return headers;
}

/** Bytes an entry accounts for: body, fields, and a fixed overhead. */
function entrySize(fields: [string, string][], body: Uint8Array, url: string): number {
  let size = 256 + body.length + url.length * 2;
  for (const [name, value] of fields) size += name.length + value.length + 32;
  return size;
}

/** A memory store bounded by bytes, least recently used evicted first. */
export class MemoryStore {
  bytes = 0;
  #byUrl = new Map<string, Entry[]>();
  /** Every entry, least recently used first (Map keeps insertion order). */
  #lru = new Map<Entry, true>();

  constructor(readonly maxBytes: number) {}

  get size(): number {
    return this.#lru.size;
  }

  /** The stored responses for `url`, most recent first. */
  variants(url: string): Entry[] {
    return this.#byUrl.get(url) ?? [];
  }

  /** Marks `entry` as just used. */
  touch(entry: Entry): void {
    if (this.#lru.delete(entry)) this.#lru.set(entry, true);
  }

  /** Stores `entry`, replacing the variant with the same Vary values, and evicts to fit. */
  put(entry: Entry): void {
    if (entry.size > this.maxBytes) return;
    const list = this.#byUrl.get(entry.url) ?? [];
    for (const old of list.filter((e) => e.varyKey === entry.varyKey)) this.delete(old);
    const fresh = this.#byUrl.get(entry.url) ?? [];
    fresh.unshift(entry);
    this.#byUrl.set(entry.url, fresh);
    this.#lru.set(entry, true);
    this.bytes += entry.size;
    for (const [oldest] of this.#lru) {
      if (this.bytes <= this.maxBytes) break;
      this.delete(oldest);
    }
  }

  delete(entry: Entry): void {
    if (!this.#lru.delete(entry)) return;
    this.bytes -= entry.size;
    const list = this.#byUrl.get(entry.url);
    if (list === undefined) return;
    const rest = list.filter((e) => e !== entry);
    if (rest.length === 0) this.#byUrl.delete(entry.url);
    else this.#byUrl.set(entry.url, rest);
  }

  /** Removes every stored response for `url` (RFC 9111 §4.4). */
  invalidate(url: string): void {
    for (const entry of this.variants(url)) this.delete(entry);
  }

  /** Replaces `entry`'s size after its fields changed. */
  resize(entry: Entry): void {
    const size = entrySize(entry.fields, entry.body, entry.url);
    this.bytes += size - entry.size;
    entry.size = size;
  }
}

// ─── 4. The flow ────────────────────────────────────────────────────────────

/** Sends a request upstream; the proxy's own forwarding. */
export type FetchUpstream = (request: Request) => Promise<Response>;

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);
/** Fields of a 304 that do not replace the stored ones (RFC 9111 §3.2). */
const NOT_UPDATED = new Set([
  "content-length",
  "content-encoding",
  "content-range",
  "content-md5",
  "transfer-encoding",
  // The 304 validated the stored ETag; another one would not describe the stored body.
  "etag",
]);

/**
 * A shared HTTP cache (RFC 9111) with a memory store. Pass one to several
 * proxies' `cache` option to share it.
 *
 * @example Usage
 * ```ts ignore
 * import { createProxy, HttpCache } from "@brick/http/proxy";
 *
 * const cache = new HttpCache({ maxBytes: 256 * 1024 * 1024 });
 * const api = createProxy({ upstream: "http://127.0.0.1:3000", cache });
 * const assets = createProxy({ upstream: "http://127.0.0.1:4000", cache });
 * ```
 */
export class HttpCache {
  #store: MemoryStore;
  #name: string;
  #maxEntryBytes: number;
  #heuristicFraction: number;
  /** Fills in progress, by URL: concurrent misses wait for them (request collapsing). */
  #filling = new Map<string, Promise<void>>();
  /** Background revalidations in progress (stale-while-revalidate). */
  #revalidating = new Set<Entry>();

  /**
   * Creates an empty cache.
   *
   * @param options The store's size, the largest response stored, the name in `Cache-Status`.
   * @throws {RangeError} When a size is not a positive number.
   */
  constructor(options: CacheOptions = {}) {
    const maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    if (!(maxBytes > 0)) {
      throw new RangeError(`maxBytes must be a positive number, got ${maxBytes}`);
    }
    this.#store = new MemoryStore(maxBytes);
    this.#maxEntryBytes = options.maxEntryBytes ?? Math.floor(maxBytes / 8);
    if (!(this.#maxEntryBytes >= 0)) {
      throw new RangeError(`maxEntryBytes must be 0 or more, got ${options.maxEntryBytes}`);
    }
    this.#name = options.name ?? "brick";
    this.#heuristicFraction = options.heuristicFraction ?? 0.1;
  }

  /** Bytes the stored responses take, as counted against `maxBytes`. */
  get bytes(): number {
    return this.#store.bytes;
  }

  /** How many responses are stored. */
  get size(): number {
    return this.#store.size;
  }

  /**
   * Answers `request` from the store or through `fetchUpstream`, storing
   * what it may, and says which in `Cache-Status`.
   *
   * @param request The client's request.
   * @param fetchUpstream Sends a request to the upstream (the proxy's forwarding).
   * @returns The response for the client.
   */
  async handle(request: Request, fetchUpstream: FetchUpstream): Promise<Response> {
    const method = request.method;
    if (method !== "GET" && method !== "HEAD") {
      const response = await fetchUpstream(request);
      if (!SAFE_METHODS.has(method)) this.#invalidateAfter(request, response);
      return this.#status(response, `fwd=method; fwd-status=${response.status}`);
    }
    const directives = parseCacheControl(requestCacheControl(request.headers));
    for (let round = 0;; round++) {
      const entry = this.#select(request);
      if (entry !== null) return await this.#serveStored(request, entry, directives, fetchUpstream);
      if (directives.has("only-if-cached")) {
        return this.#status(
          new Response("Gateway Timeout: not in the cache (only-if-cached)\n", { status: 504 }),
          "fwd=miss; detail=only-if-cached",
        );
      }
      // Request collapsing: wait for a fill of the same URL, then look again.
      const filling = this.#filling.get(request.url);
      if (filling !== undefined && round === 0 && !request.headers.has("range")) {
        await filling;
        const stored = this.#select(request);
        if (stored !== null && this.#usable(stored, request, directives, Date.now()) === "fresh") {
          return this.#hit(request, stored, "hit; collapsed");
        }
      }
      const why = this.#store.variants(request.url).length > 0 ? "fwd=vary-miss" : "fwd=uri-miss";
      return await this.#fetchAndStore(request, fetchUpstream, why, null);
    }
  }

  /** The stored response whose Vary values match `request`, or null (RFC 9111 §4.1). */
  #select(request: Request): Entry | null {
    for (const entry of this.#store.variants(request.url)) {
      if (varyKey(entry.vary, request.headers) === entry.varyKey) return entry;
    }
    return null;
  }

  /**
   * Whether `entry` may answer `request` without going upstream: "fresh",
   * "stale-ok" (stale but allowed by max-stale), or "validate".
   */
  #usable(
    entry: Entry,
    request: Request,
    directives: Directives,
    now: number,
  ): "fresh" | "stale-ok" | "validate" {
    const response = entry.freshness.directives;
    if (response.has("no-cache") || directives.has("no-cache")) return "validate";
    if (
      request.headers.has("authorization") && !response.has("public") &&
      !response.has("must-revalidate") && !response.has("s-maxage")
    ) {
      return "validate";
    }
    const age = currentAge(entry.basis, now);
    const maxAge = deltaSeconds(directives, "max-age");
    if (maxAge !== null && age > maxAge) return "validate";
    const minFresh = deltaSeconds(directives, "min-fresh") ?? 0;
    const lifetime = entry.freshness.lifetime;
    if (lifetime - age >= minFresh && age < lifetime) return "fresh";
    if (staleForbidden(response) || !directives.has("max-stale")) return "validate";
    const maxStale = deltaSeconds(directives, "max-stale");
    if (maxStale === null || age - lifetime <= maxStale) return "stale-ok";
    return "validate";
  }

  async #serveStored(
    request: Request,
    entry: Entry,
    directives: Directives,
    fetchUpstream: FetchUpstream,
  ): Promise<Response> {
    const now = Date.now();
    const usable = this.#usable(entry, request, directives, now);
    if (usable === "fresh") return this.#hit(request, entry, "hit");
    if (usable === "stale-ok") return this.#hit(request, entry, "hit; detail=stale");
    if (directives.has("only-if-cached")) {
      return this.#status(
        new Response("Gateway Timeout: only a stale response is cached (only-if-cached)\n", {
          status: 504,
        }),
        "fwd=stale; detail=only-if-cached",
      );
    }
    const staleFor = currentAge(entry.basis, now) - entry.freshness.lifetime;
    const swr = deltaSeconds(entry.freshness.directives, "stale-while-revalidate");
    const mayServeStale = !directives.has("no-cache") &&
      !staleForbidden(entry.freshness.directives);
    if (swr !== null && staleFor >= 0 && staleFor <= swr && mayServeStale) {
      this.#revalidateInBackground(request, entry, fetchUpstream);
      return this.#hit(request, entry, "hit; detail=stale-while-revalidate");
    }
    return await this.#fetchAndStore(
      request,
      fetchUpstream,
      directives.has("no-cache") ? "fwd=request" : "fwd=stale",
      entry,
    );
  }

  #revalidateInBackground(request: Request, entry: Entry, fetchUpstream: FetchUpstream): void {
    if (this.#revalidating.has(entry)) return;
    this.#revalidating.add(entry);
    const detached = new Request(request.url, { method: "GET", headers: request.headers });
    this.#fetchAndStore(detached, fetchUpstream, "fwd=stale", entry)
      .then((response) => response.body?.cancel())
      .catch(() => {})
      .finally(() => this.#revalidating.delete(entry));
  }

  /**
   * Goes upstream for `request`; with `stale`, as a conditional request that
   * validates it (RFC 9111 §4.3). Stores what may be stored.
   */
  async #fetchAndStore(
    request: Request,
    fetchUpstream: FetchUpstream,
    why: string,
    stale: Entry | null,
  ): Promise<Response> {
    const headers = new Headers(request.headers);
    const clientConditional = headers.has("if-none-match") || headers.has("if-modified-since");
    const range = headers.has("range");
    if (stale !== null && !range) {
      const storedHeaders = entryHeaders(stale);
      const etag = storedHeaders.get("etag");
      const lastModified = storedHeaders.get("last-modified");
      headers.delete("if-none-match");
      headers.delete("if-modified-since");
      if (etag !== null) headers.set("if-none-match", etag);
      else if (lastModified !== null) headers.set("if-modified-since", lastModified);
    }
    // Tells the upstream this cache understands Surrogate-Control, by its name.
    const capability = `${this.#name}="Surrogate/1.0"`;
    const seen = headers.get("surrogate-capability");
    headers.set("surrogate-capability", seen ? `${seen}, ${capability}` : capability);
    // HEAD goes up as HEAD; a GET fills the store.
    const outgoing = new Request(request.url, {
      method: request.method,
      headers,
      signal: request.signal,
    });
    let done!: () => void;
    const collapsing = request.method === "GET" && !range && !this.#filling.has(request.url);
    if (collapsing) {
      this.#filling.set(request.url, new Promise<void>((resolve) => done = resolve));
    }
    const finish = () => {
      if (collapsing) {
        this.#filling.delete(request.url);
        done();
      }
    };
    const requestTime = Date.now();
    let response: Response;
    try {
      response = await fetchUpstream(outgoing);
    } catch (error) {
      finish();
      throw error;
    }
    const responseTime = Date.now();
    const status = response.status;
    if (stale !== null) {
      if (status === 304) {
        finish();
        response.body?.cancel().catch(() => {});
        this.#update(stale, response.headers, requestTime, responseTime);
        return this.#hitAfterValidation(request, stale, clientConditional);
      }
      if (status >= 500 && this.#staleIfError(stale, request, responseTime)) {
        finish();
        response.body?.cancel().catch(() => {});
        return this.#hit(request, stale, `fwd=stale; fwd-status=${status}; detail=stale-if-error`);
      }
    }
    const whyNot = range
      ? "range"
      : whyNotStorable(request.method, request.headers, status, response.headers, this.#name);
    if (whyNot !== null || request.method !== "GET") {
      finish();
      if (request.method === "GET" && status < 500 && !range && status !== 304) {
        // The origin no longer allows reuse: drop the old copy.
        if (stale !== null && whyNot !== "authorization") this.#store.delete(stale);
      }
      return this.#status(response, `${why}; fwd-status=${status}; detail=${whyNot ?? "head"}`);
    }
    const vk = varyKey(response.headers.get("vary"), request.headers);
    if (vk === null) {
      finish();
      return this.#status(response, `${why}; fwd-status=${status}; detail=vary-star`);
    }
    const length = response.headers.get("content-length");
    if (length !== null && Number(length) > this.#maxEntryBytes) {
      finish();
      return this.#status(response, `${why}; fwd-status=${status}; detail=too-large`);
    }
    const fields: [string, string][] = [];
    response.headers.forEach((value, name) => {
      if (name !== "age" && name !== "cache-status") fields.push([name, value]);
    });
    if (!response.headers.has("date")) fields.push(["date", new Date(responseTime).toUTCString()]);
    const basis: AgeBasis = {
      requestTime,
      responseTime,
      date: parseHttpDate(response.headers.get("date")) ?? responseTime,
      age: parseAge(response.headers.get("age")),
    };
    const entryBase = {
      url: request.url,
      vary: response.headers.get("vary"),
      varyKey: vk,
      status,
      statusText: response.statusText,
      fields,
      basis,
      freshness: freshnessLifetime(
        status,
        new Headers(fields),
        this.#heuristicFraction,
        this.#name,
      ),
    };
    const store = (body: Uint8Array) => {
      const entry: Entry = { ...entryBase, body, size: entrySize(fields, body, request.url) };
      this.#store.put(entry);
      return entry;
    };
    const outHeaders = new Headers(response.headers);
    outHeaders.delete("cache-status");
    outHeaders.delete("surrogate-control");
    appendCacheStatus(
      outHeaders,
      response.headers.get("cache-status"),
      this.#name,
      `${why}; fwd-status=${status}; stored`,
    );
    if (response.body === null) {
      const entry = store(new Uint8Array(0));
      finish();
      if (clientConditional && notModified(request.headers, entryHeaders(entry))) {
        return this.#hitAfterValidation(request, entry, true);
      }
      return new Response(null, { status, statusText: response.statusText, headers: outHeaders });
    }
    const body = teeIntoStore(response.body, this.#maxEntryBytes, length, store, finish);
    // The first client gets the trailers too; the stored copy keeps none (RFC 9111 §3).
    return keepTrailers(
      response,
      new Response(body, { status, statusText: response.statusText, headers: outHeaders }),
    );
  }

  #staleIfError(entry: Entry, request: Request, now: number): boolean {
    const response = entry.freshness.directives;
    if (staleForbidden(response)) return false;
    const requestDirectives = parseCacheControl(requestCacheControl(request.headers));
    const limit = deltaSeconds(requestDirectives, "stale-if-error") ??
      deltaSeconds(response, "stale-if-error");
    if (limit === null) return false;
    return currentAge(entry.basis, now) - entry.freshness.lifetime <= limit;
  }

  /** Merges a 304's fields into the stored response (RFC 9111 §3.2, §4.3.4). */
  #update(entry: Entry, headers: Headers, requestTime: number, responseTime: number): void {
    const updated = new Map<string, string[]>();
    headers.forEach((value, name) => {
      if (NOT_UPDATED.has(name) || name === "cache-status") return;
      const list = updated.get(name) ?? [];
      list.push(value);
      updated.set(name, list);
    });
    const fields = entry.fields.filter(([name]) => !updated.has(name) && name !== "age");
    for (const [name, values] of updated) for (const value of values) fields.push([name, value]);
    entry.fields = fields;
    const merged = new Headers(fields);
    entry.basis = {
      requestTime,
      responseTime,
      date: parseHttpDate(merged.get("date")) ?? responseTime,
      age: parseAge(headers.get("age")),
    };
    entry.freshness = freshnessLifetime(entry.status, merged, this.#heuristicFraction, this.#name);
    this.#store.resize(entry);
    this.#store.touch(entry);
  }

  #hitAfterValidation(request: Request, entry: Entry, clientConditional: boolean): Response {
    if (clientConditional && notModified(request.headers, entryHeaders(entry))) {
      return this.#notModified(entry, "fwd=stale; fwd-status=304");
    }
    return this.#respond(request, entry, "fwd=stale; fwd-status=304");
  }

  /** Serves `entry` without going upstream. */
  #hit(request: Request, entry: Entry, status: string): Response {
    this.#store.touch(entry);
    if (notModified(request.headers, entryHeaders(entry))) return this.#notModified(entry, status);
    return this.#respond(request, entry, status);
  }

  #notModified(entry: Entry, status: string): Response {
    const headers = new Headers();
    for (const [name, value] of entry.fields) {
      if (/^(content-(length|type|encoding|range)|surrogate-control)$/.test(name)) continue;
      headers.append(name, value);
    }
    headers.set("age", ageValue(entry));
    appendCacheStatus(headers, null, this.#name, status);
    return new Response(null, { status: 304, headers });
  }

  /** The stored response, its range, or its head, with Age and Cache-Status. */
  #respond(request: Request, entry: Entry, status: string): Response {
    const headers = entryHeaders(entry);
    headers.delete("surrogate-control");
    headers.delete("trailer"); // a stored response keeps no trailer fields to announce
    headers.set("age", ageValue(entry));
    const upstreamStatus = headers.get("cache-status");
    headers.delete("cache-status");
    appendCacheStatus(headers, upstreamStatus, this.#name, status + ttl(entry));
    const body = entry.body;
    const range = entry.status === 200 ? byteRange(request.headers, headers, body.length) : null;
    if (range === "unsatisfiable") {
      const h = new Headers({ "content-range": `bytes */${body.length}` });
      appendCacheStatus(h, null, this.#name, status);
      return new Response(null, { status: 416, headers: h });
    }
    if (range !== null) {
      headers.set("content-range", `bytes ${range[0]}-${range[1]}/${body.length}`);
      headers.set("content-length", String(range[1] - range[0] + 1));
      const part = request.method === "HEAD" ? null : body.subarray(range[0], range[1] + 1);
      return new Response(part as Uint8Array<ArrayBuffer> | null, { status: 206, headers });
    }
    headers.set("content-length", String(body.length));
    const nullBody = request.method === "HEAD" || entry.status === 204 || entry.status === 304;
    return new Response(nullBody ? null : body as Uint8Array<ArrayBuffer>, {
      status: entry.status,
      statusText: entry.statusText,
      headers,
    });
  }

  /** Adds this cache's Cache-Status entry to a forwarded response. */
  #status(response: Response, status: string): Response {
    let headers: Headers;
    try {
      response.headers.delete("surrogate-control");
      response.headers.append("cache-status", `${this.#name}; ${status}`);
      return response;
    } catch {
      headers = new Headers(response.headers); // immutable headers (Response.error(), redirects)
    }
    headers.append("cache-status", `${this.#name}; ${status}`);
    return keepTrailers(
      response,
      new Response(response.body, {
        status: response.status,
        statusText: response.statusText,
        headers,
      }),
    );
  }

  /** Invalidates the target and Location/Content-Location after an unsafe method (RFC 9111 §4.4). */
  #invalidateAfter(request: Request, response: Response): void {
    if (response.status < 200 || response.status >= 400) return;
    this.#store.invalidate(request.url);
    const origin = new URL(request.url).origin;
    for (const name of ["location", "content-location"]) {
      const value = response.headers.get(name);
      if (value === null) continue;
      try {
        const url = new URL(value, request.url);
        if (url.origin === origin) this.#store.invalidate(url.href);
      } catch { /* not a URL: nothing to invalidate */ }
    }
  }
}

/** Where brick's server finds a response's trailer fields (mod.ts `withTrailers`). */
const TRAILERS = Symbol.for("brick.trailers");

/** `to`, carrying the trailer fields of `from` when it has some. */
function keepTrailers(from: Response, to: Response): Response {
  const trailers = (from as unknown as Record<symbol, unknown>)[TRAILERS];
  if (trailers !== undefined) Object.defineProperty(to, TRAILERS, { value: trailers });
  return to;
}

/** The request's Cache-Control, or `no-cache` from `Pragma: no-cache` without it (RFC 9111 §5.4). */
function requestCacheControl(headers: Headers): string | null {
  const value = headers.get("cache-control");
  if (value !== null) return value;
  return /(^|,)\s*no-cache\s*(,|$)/i.test(headers.get("pragma") ?? "") ? "no-cache" : null;
}

function ttl(entry: Entry): string {
  const left = Math.floor(entry.freshness.lifetime - currentAge(entry.basis, Date.now()));
  return `; ttl=${left}`;
}

/** Appends `brick; <params>` to Cache-Status after the upstream's own entries (RFC 9211 §2). */
function appendCacheStatus(
  headers: Headers,
  upstream: string | null,
  name: string,
  params: string,
): void {
  headers.set("cache-status", (upstream ? upstream + ", " : "") + `${name}; ${params}`);
}

/** Whether the client's If-None-Match / If-Modified-Since hold for the stored fields (RFC 9110 §13.1). */
export function notModified(request: Headers, stored: Headers): boolean {
  const ifNoneMatch = request.get("if-none-match");
  if (ifNoneMatch !== null) {
    const etag = stored.get("etag");
    if (etag === null) return false;
    if (ifNoneMatch.trim() === "*") return true;
    const weak = (tag: string) => tag.trim().replace(/^W\//, "");
    return ifNoneMatch.split(",").some((tag) => weak(tag) === weak(etag));
  }
  const since = parseHttpDate(request.get("if-modified-since"));
  const lastModified = parseHttpDate(stored.get("last-modified"));
  return since !== null && lastModified !== null && lastModified <= since;
}

/**
 * The single byte range a request asks of a stored full response, as
 * [first, last]; null to send it whole; "unsatisfiable" for 416 (RFC 9110 §14).
 */
export function byteRange(
  request: Headers,
  stored: Headers,
  length: number,
): [number, number] | "unsatisfiable" | null {
  const value = request.get("range");
  if (value === null) return null;
  const ifRange = request.get("if-range");
  if (ifRange !== null) {
    const etag = stored.get("etag");
    const matches = ifRange.startsWith('"') || ifRange.startsWith("W/")
      ? etag !== null && !etag.startsWith("W/") && ifRange === etag
      : stored.get("last-modified") === ifRange;
    if (!matches) return null;
  }
  const match = /^bytes=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(value);
  if (match === null || (match[1] === "" && match[2] === "")) return null; // several ranges, or junk
  if (match[1] === "") {
    const suffix = Number(match[2]);
    if (suffix === 0 || length === 0) return "unsatisfiable";
    return [Math.max(0, length - suffix), length - 1];
  }
  const first = Number(match[1]);
  const last = match[2] === "" ? length - 1 : Math.min(Number(match[2]), length - 1);
  if (first >= length) return "unsatisfiable";
  if (last < first) return null;
  return [first, last];
}

/**
 * Passes `source` through to the client while copying it into the store:
 * stored once it ended whole; dropped past `maxBytes`, on error, or when the
 * client stops reading. `finish` runs once either way (it releases collapsed
 * waiters).
 */
function teeIntoStore(
  source: ReadableStream<Uint8Array>,
  maxBytes: number,
  declaredLength: string | null,
  store: (body: Uint8Array) => unknown,
  finish: () => void,
): ReadableStream<Uint8Array> {
  const reader = source.getReader();
  let pieces: Uint8Array[] | null = [];
  let total = 0;
  let finished = false;
  const end = (complete: boolean) => {
    if (finished) return;
    finished = true;
    if (
      complete && pieces !== null && (declaredLength === null || Number(declaredLength) === total)
    ) {
      const body = new Uint8Array(total);
      let at = 0;
      for (const piece of pieces) {
        body.set(piece, at);
        at += piece.length;
      }
      store(body);
    }
    pieces = null;
    finish();
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { value, done } = await reader.read();
        if (done) {
          end(true);
          controller.close();
          return;
        }
        total += value.length;
        if (pieces !== null) {
          if (total > maxBytes) pieces = null;
          else pieces.push(value);
        }
        controller.enqueue(value);
      } catch (error) {
        end(false);
        controller.error(error);
      }
    },
    cancel(reason) {
      end(false);
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

/** The Age field a served response carries: whole seconds, at most 2^31. */
function ageValue(entry: Entry): string {
  return String(Math.min(MAX_AGE, Math.floor(currentAge(entry.basis, Date.now()))));
}
