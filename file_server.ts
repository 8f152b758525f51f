/**
 * Static files for brick. {@linkcode serveDir} answers a request from a
 * folder and {@linkcode serveFile} with one file. Both are fetch-style
 * functions, `(Request) => Promise<Response>`, so they fit inside any handler,
 * on brick or any other server. The same code runs on Deno, Node and Bun: it
 * reads files through `node:fs`. On Deno it needs `--allow-read`.
 *
 * What they do for you:
 *
 * - `GET` and `HEAD`; other methods get `405` with `Allow`.
 * - Content-Type from one table ({@linkcode contentType}), and
 *   `X-Content-Type-Options: nosniff` on every response.
 * - Caching: a weak `ETag` and `Last-Modified`; `If-None-Match` and
 *   `If-Modified-Since` answer `304`. `Cache-Control: no-cache`, so browsers
 *   check before they reuse a file, and an edited file shows on the next load.
 * - Ranges (`206`, multipart for several ranges, `416`) and `If-Range`.
 * - gzip and brotli for text-like files over 1 KiB, never for ranges.
 * - Files are streamed from disk as the client takes them, in reads of up
 *   to 512 KiB: a response holds at most two of them, however slow its
 *   client. A file or range of up to 64 KiB is sent from a single read.
 * - Nothing outside the root is served: `..`, encoded slashes and backslashes,
 *   NUL, bad percent-encoding and symlinks that lead out all get `404`.
 *
 * Sections:
 *
 * 1. Public API
 * 2. Content types
 * 3. Request targets: from the URL to a path inside the root
 * 4. Responses and file system errors
 * 5. Files: validators, conditional requests and ranges
 * 6. Compression
 * 7. Streaming from disk
 * 8. Directories: index.html and listings
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { serveDir } from "@brick/http/file-server";
 *
 * serve((request) => serveDir(request, { root: "./public" }));
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { constants as fsConstants, type Stats } from "node:fs";
import { type FileHandle, open, readdir, realpath, stat } from "node:fs/promises";
import { join, sep } from "node:path";
import process from "node:process";
import * as zlib from "node:zlib";

// ─── 1. Public API ──────────────────────────────────────────────────────────

/** Options for {@linkcode serveFile}, and for each file {@linkcode serveDir} serves. */
export interface ServeFileOptions {
  /**
   * Compress text-like files (see {@linkcode contentType}) of 1 KiB or more
   * with brotli or gzip, whichever the client's `Accept-Encoding` prefers
   * (brotli on a tie). serveDir sets no `Content-Length` on them. Requests
   * with a `Range` header are never compressed. Answers that could be
   * compressed carry `Vary: Accept-Encoding`, compressed or not.
   *
   * @default {true}
   */
  compress?: boolean;
  /**
   * Allow cross-origin reads: `Access-Control-Allow-Origin: *` on every
   * response, and `OPTIONS` answered as a CORS preflight (`204`).
   *
   * @default {false}
   */
  enableCors?: boolean;
  /**
   * Header fields added to every response, errors and `304` included. They
   * are set last, so they replace serveDir's own value of the same field: for
   * example `{ "cache-control": "max-age=3600" }` replaces `no-cache`.
   *
   * @default {{}}
   */
  headers?: HeadersInit;
}

/** Options for {@linkcode serveDir}. */
export interface ServeDirOptions extends ServeFileOptions {
  /**
   * The folder to serve, absolute or relative to the working directory.
   *
   * @default {"."}
   */
  root?: string;
  /**
   * The URL path the folder is mounted at, as decoded text (`"/static"`).
   * The prefix is stripped before the file lookup; requests outside it get
   * `404`. The default mounts the folder at `/`.
   *
   * @default {""}
   */
  urlRoot?: string;
  /**
   * Answer a directory without `index.html` with an HTML listing of its
   * entries. When false, such a directory is `404`.
   *
   * @default {true}
   */
  showDirListing?: boolean;
  /**
   * Answer a directory with its `index.html` when it has one.
   *
   * @default {true}
   */
  showIndex?: boolean;
  /**
   * Serve files and folders whose names start with a dot (`.env`, `.git/`)
   * and list them. When false they are `404` and left out of listings.
   *
   * @default {false}
   */
  showDotfiles?: boolean;
}

/**
 * Answers a request from a folder: a file, a directory's `index.html`, or a
 * listing of the directory.
 *
 * The request's URL path, less `urlRoot`, names a path inside `root`. A
 * directory asked for without its trailing slash is redirected (`301`) to the
 * path with the slash, keeping the query. Missing files, hidden dotfiles and
 * anything outside the root are `404`. The target is checked segment by
 * segment (`.` and `..`, encoded `/` and `\`, NUL and invalid percent-encoding
 * are refused), and the real path of what it names, symlinks resolved, must be
 * inside the real path of `root`. A file the process may not read is `403`,
 * any other file system error `500`, logged with `console.error`, with a body
 * that does not say what went wrong.
 *
 * Ranges follow RFC 9110 §14: `bytes=a-b`, `a-` and `-n`, each answered `206`
 * with `Content-Range`; several ranges as `multipart/byteranges`. A request
 * for more than 16 ranges, or for ranges that overlap, gets `200` with the
 * whole file instead: serving such sets costs far more than they save. A
 * range set of which no range fits the file is `416`; a malformed `Range` is
 * ignored. `If-Range` keeps the range only when it holds the file's
 * `Last-Modified` date. ETags never match it, since If-Range compares them
 * strongly and every ETag here is weak.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { serveDir } from "@brick/http/file-server";
 *
 * serve((request) =>
 *   new URL(request.url).pathname.startsWith("/static/")
 *     ? serveDir(request, { root: "./public", urlRoot: "/static" })
 *     : new Response("Not here", { status: 404 })
 * );
 * ```
 *
 * @param request The request to answer. Only its method, URL and header fields
 * are read.
 * @param options What to serve and how; see {@linkcode ServeDirOptions}.
 * @returns The response; the file body streams from disk as it is read.
 * @throws {Error} On Deno without read permission, saying to add `--allow-read`.
 */
export async function serveDir(
  request: Request,
  options: ServeDirOptions = {},
): Promise<Response> {
  const settings = dirSettings(options);
  const early = answerMethod(request, settings);
  if (early !== null) return early;
  const target = parseTarget(request.url);
  const inside = target && stripUrlRoot(target.segments, settings.urlRoot);
  if (!target || !inside || (!settings.showDotfiles && inside.some(isDotName))) {
    return errorResponse(404, settings);
  }
  try {
    const root = await realpath(settings.root);
    const path = await realpath(join(root, ...inside));
    if (!isInside(path, root)) return errorResponse(404, settings);
    const stats = await stat(path);
    if (stats.isDirectory()) {
      return await directoryResponse(request, { root, path, inside, target }, settings);
    }
    if (!stats.isFile() || target.trailingSlash) return errorResponse(404, settings);
    return await fileResponse(request, path, settings);
  } catch (error) {
    return fileSystemErrorResponse(error, settings, settings.root);
  }
}

/**
 * Answers a request with one file, with the caching, range and compression
 * rules of {@linkcode serveDir}. The path is used as given: check it yourself
 * when it comes from the request. A directory or a missing file is `404`.
 *
 * @example Usage
 * ```ts ignore
 * import { serve } from "@brick/http";
 * import { serveFile } from "@brick/http/file-server";
 *
 * serve((request) => serveFile(request, "./public/app.html"));
 * ```
 *
 * @param request The request to answer. Only its method and header fields are
 * read.
 * @param path The file to send, absolute or relative to the working directory.
 * @param options Compression, CORS and extra header fields.
 * @returns The response; the body streams from disk as it is read.
 * @throws {Error} On Deno without read permission, saying to add `--allow-read`.
 */
export async function serveFile(
  request: Request,
  path: string,
  options: ServeFileOptions = {},
): Promise<Response> {
  const settings = fileSettings(options);
  const early = answerMethod(request, settings);
  if (early !== null) return early;
  try {
    return await fileResponse(request, path, settings);
  } catch (error) {
    return fileSystemErrorResponse(error, settings, path);
  }
}

/**
 * The media type serveDir sends for a file name or extension, from one table:
 * text types with `; charset=utf-8`, images, fonts, audio, video, archives and
 * more. `undefined` for an extension it does not know; serveDir then sends
 * `application/octet-stream`.
 *
 * @example Usage
 * ```ts
 * import { contentType } from "@brick/http/file-server";
 *
 * contentType("index.html"); // "text/html; charset=utf-8"
 * contentType(".png"); // "image/png"
 * contentType("wasm"); // "application/wasm"
 * contentType("notes.unknown"); // undefined
 * ```
 *
 * @param pathOrExtension A path or file name (`"a/b.css"`), or an extension
 * with or without its dot (`".css"`, `"css"`). Case does not matter.
 * @returns The Content-Type value, or `undefined` for an unknown extension.
 */
export function contentType(pathOrExtension: string): string | undefined {
  return TYPES[extensionOf(pathOrExtension)]?.type;
}

// ─── 2. Content types ───────────────────────────────────────────────────────

/** A Content-Type value and whether bodies of that type are worth compressing. */
interface TypeInfo {
  type: string;
  compressible: boolean;
}

const text = (type: string): TypeInfo => ({ type: `${type}; charset=utf-8`, compressible: true });
const packed = (type: string): TypeInfo => ({ type, compressible: false });
const unpacked = (type: string): TypeInfo => ({ type, compressible: true });

/** The one table of types, by lowercase extension. */
const TYPES: Record<string, TypeInfo> = Object.assign(Object.create(null), {
  // Text and text-like documents and code
  html: text("text/html"),
  htm: text("text/html"),
  txt: text("text/plain"),
  text: text("text/plain"),
  md: text("text/markdown"),
  markdown: text("text/markdown"),
  css: text("text/css"),
  js: text("text/javascript"),
  mjs: text("text/javascript"),
  cjs: text("text/javascript"),
  json: text("application/json"),
  map: text("application/json"),
  jsonld: text("application/ld+json"),
  webmanifest: text("application/manifest+json"),
  svg: text("image/svg+xml"),
  xml: text("application/xml"),
  xhtml: text("application/xhtml+xml"),
  rss: text("application/rss+xml"),
  atom: text("application/atom+xml"),
  csv: text("text/csv"),
  tsv: text("text/tab-separated-values"),
  ics: text("text/calendar"),
  vtt: text("text/vtt"),
  yaml: text("application/yaml"),
  yml: text("application/yaml"),
  toml: text("application/toml"),
  // Images
  png: packed("image/png"),
  apng: packed("image/apng"),
  jpg: packed("image/jpeg"),
  jpeg: packed("image/jpeg"),
  gif: packed("image/gif"),
  webp: packed("image/webp"),
  avif: packed("image/avif"),
  ico: unpacked("image/x-icon"),
  bmp: unpacked("image/bmp"),
  // Fonts: TrueType and OpenType shrink well, WOFF is already compressed
  woff: packed("font/woff"),
  woff2: packed("font/woff2"),
  ttf: unpacked("font/ttf"),
  otf: unpacked("font/otf"),
  // Applications
  wasm: unpacked("application/wasm"),
  pdf: packed("application/pdf"),
  // Audio and video
  mp3: packed("audio/mpeg"),
  m4a: packed("audio/mp4"),
  aac: packed("audio/aac"),
  flac: packed("audio/flac"),
  ogg: packed("audio/ogg"),
  oga: packed("audio/ogg"),
  opus: packed("audio/ogg"),
  wav: packed("audio/wav"),
  mp4: packed("video/mp4"),
  m4v: packed("video/mp4"),
  webm: packed("video/webm"),
  ogv: packed("video/ogg"),
  // Archives
  zip: packed("application/zip"),
  gz: packed("application/gzip"),
  tgz: packed("application/gzip"),
  br: packed("application/x-brotli"),
  zst: packed("application/zstd"),
  tar: unpacked("application/x-tar"),
  "7z": packed("application/x-7z-compressed"),
});

const UNKNOWN_TYPE: TypeInfo = packed("application/octet-stream");

/** The lowercase extension of a path, or the whole name when it has no dot. */
function extensionOf(pathOrExtension: string): string {
  const name = pathOrExtension.slice(
    Math.max(pathOrExtension.lastIndexOf("/"), pathOrExtension.lastIndexOf("\\")) + 1,
  );
  return name.slice(name.lastIndexOf(".") + 1).toLowerCase();
}

/** The type info serveDir uses for a file path. */
const typeOf = (path: string): TypeInfo => TYPES[extensionOf(path)] ?? UNKNOWN_TYPE;

// ─── 3. Request targets ─────────────────────────────────────────────────────

/** Options with their defaults filled in. */
interface FileSettings {
  compress: boolean;
  enableCors: boolean;
  headers: Headers | null;
}

interface DirSettings extends FileSettings {
  root: string;
  urlRoot: string[];
  showDirListing: boolean;
  showIndex: boolean;
  showDotfiles: boolean;
}

function fileSettings(options: ServeFileOptions): FileSettings {
  return {
    compress: options.compress ?? true,
    enableCors: options.enableCors ?? false,
    headers: options.headers === undefined ? null : new Headers(options.headers),
  };
}

function dirSettings(options: ServeDirOptions): DirSettings {
  return {
    ...fileSettings(options),
    root: options.root ?? ".",
    urlRoot: (options.urlRoot ?? "").split("/").filter((segment) => segment !== ""),
    showDirListing: options.showDirListing ?? true,
    showIndex: options.showIndex ?? true,
    showDotfiles: options.showDotfiles ?? false,
  };
}

/** A request target's path as decoded segments, and its query. */
interface Target {
  /** Decoded path segments; empty segments (`//`) are dropped. */
  segments: string[];
  /** The path ends in `/`. */
  trailingSlash: boolean;
  /** `"?…"` as received, or `""`. */
  query: string;
}

/**
 * Splits a request URL into decoded path segments, or returns null when a
 * segment could reach outside its folder.
 *
 * The URL is taken apart by hand rather than with `new URL()`: the URL parser
 * resolves `..`, `%2e%2e` and `\` itself, which would hide a hostile target
 * and quietly serve a different file. brick hands the handler the target as
 * the client sent it, so this is where it is checked.
 */
function parseTarget(url: string): Target | null {
  const schemeEnd = url.indexOf("://");
  if (schemeEnd < 0) return null;
  let pathStart = schemeEnd + 3;
  while (pathStart < url.length && !"/?#".includes(url[pathStart])) pathStart++;
  let pathEnd = pathStart;
  while (pathEnd < url.length && url[pathEnd] !== "?" && url[pathEnd] !== "#") pathEnd++;
  const fragment = url.indexOf("#", pathEnd);
  const path = url.slice(pathStart, pathEnd) || "/";
  const segments: string[] = [];
  for (const raw of path.split("/")) {
    if (raw === "") continue;
    const segment = decodeSegment(raw);
    if (segment === null) return null;
    segments.push(segment);
  }
  return {
    segments,
    trailingSlash: path.endsWith("/"),
    query: url.slice(pathEnd, fragment < 0 ? url.length : fragment),
  };
}

const onWindows = process.platform === "win32";

/**
 * Decodes one path segment, or returns null for a segment that is not a plain
 * name: invalid percent-encoding or UTF-8, `.` or `..`, or one that holds
 * `/`, `\` or NUL once decoded (and `:` on Windows, for drives and streams).
 */
function decodeSegment(raw: string): string | null {
  if (raw.includes("\\")) return null;
  let segment: string;
  try {
    segment = decodeURIComponent(raw);
  } catch {
    return null; // URIError: a bad %xx or bytes that are not UTF-8
  }
  if (segment === "." || segment === ".." || /[/\\\0]/.test(segment)) return null;
  if (onWindows && segment.includes(":")) return null;
  return segment;
}

/** The segments below `urlRoot`, or null when the path is not under it. */
function stripUrlRoot(segments: string[], urlRoot: string[]): string[] | null {
  if (segments.length < urlRoot.length) return null;
  for (let i = 0; i < urlRoot.length; i++) if (segments[i] !== urlRoot[i]) return null;
  return segments.slice(urlRoot.length);
}

const isDotName = (name: string) => name.startsWith(".");

/** Whether the real path `path` is `root` or lies below it. */
function isInside(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

// ─── 4. Responses and file system errors ────────────────────────────────────

const REASONS: Record<number, string> = {
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  416: "Range Not Satisfiable",
  500: "Internal Server Error",
};

/** CORS response fields a cross-origin script may read beyond the safelisted ones. */
const EXPOSED_FIELDS = "Accept-Ranges, Content-Encoding, Content-Range, ETag";

/** Builds a response: fields every answer carries, then the user's fields over them. */
function respond(
  status: number,
  headers: Headers,
  body: BodyInit | null,
  settings: FileSettings,
): Response {
  headers.set("x-content-type-options", "nosniff");
  if (settings.enableCors) {
    headers.set("access-control-allow-origin", "*");
    headers.set("access-control-expose-headers", EXPOSED_FIELDS);
  }
  settings.headers?.forEach((value, name) => headers.set(name, value));
  return new Response(body, { status, headers });
}

/** A short plain-text error response. */
function errorResponse(status: number, settings: FileSettings, headers = new Headers()) {
  headers.set("content-type", "text/plain; charset=utf-8");
  return respond(status, headers, `${REASONS[status]}\n`, settings);
}

/**
 * `405` for methods other than GET and HEAD, `204` for an OPTIONS preflight
 * when CORS is on, or null to go on and serve the request.
 */
function answerMethod(request: Request, settings: FileSettings): Response | null {
  const { method } = request;
  if (method === "GET" || method === "HEAD") return null;
  const allow = settings.enableCors ? "GET, HEAD, OPTIONS" : "GET, HEAD";
  if (method === "OPTIONS" && settings.enableCors) {
    const headers = new Headers({
      allow,
      "access-control-allow-methods": allow,
      "access-control-max-age": "86400",
    });
    const asked = request.headers.get("access-control-request-headers");
    if (asked !== null) headers.set("access-control-allow-headers", asked);
    return respond(204, headers, null, settings);
  }
  return errorResponse(405, settings, new Headers({ allow }));
}

/** Error codes that mean "there is no such file here". */
const NOT_FOUND_CODES = new Set(["ENOENT", "ENOTDIR", "ENAMETOOLONG"]);
/** Error codes that mean "the operating system will not let us read it". */
const FORBIDDEN_CODES = new Set(["EACCES", "EPERM"]);

/**
 * Maps a file system error to `404`, `403` or `500`. On Deno, a missing read
 * permission is a mistake in how the program was started, not an answer for
 * the client: it is thrown with the flag to add.
 */
function fileSystemErrorResponse(error: unknown, settings: FileSettings, what: string): Response {
  const { name, code } = (error ?? {}) as { name?: unknown; code?: unknown };
  if (name === "NotCapable" || (name === "PermissionDenied" && code === undefined)) {
    throw new Error(
      `Cannot read "${what}": read access is not allowed (run Deno with --allow-read)`,
      { cause: error },
    );
  }
  if (typeof code === "string" && NOT_FOUND_CODES.has(code)) return errorResponse(404, settings);
  if (typeof code === "string" && FORBIDDEN_CODES.has(code)) return errorResponse(403, settings);
  console.error(`Cannot serve a file from "${what}", answering 500:`, error);
  return errorResponse(500, settings);
}

// ─── 5. Files: validators, conditional requests and ranges ─────────────────

/** More ranges than this in one request get the whole file (see serveDir). */
const MAX_RANGES = 16;

/** A half-open byte range of a file: `start` included, `end` excluded. */
interface ByteRange {
  start: number;
  end: number;
}

/** `O_NONBLOCK`: a FIFO swapped in for a file must not block `open()`. */
const OPEN_FLAGS = fsConstants.O_RDONLY | (fsConstants.O_NONBLOCK ?? 0);

/**
 * Opens the file at `path` and answers `request` with it, or with `304`,
 * `206`, `416` or `404` (not a regular file). The handle is closed when the
 * body ends, fails or is cancelled, or at once when there is no body.
 */
async function fileResponse(
  request: Request,
  path: string,
  settings: FileSettings,
): Promise<Response> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) {
      await handle.close();
      return errorResponse(404, settings);
    }
    const { response, streams } = await answerWithFile(
      request,
      handle,
      stats,
      typeOf(path),
      settings,
    );
    if (!streams) await handle.close();
    return response;
  } catch (error) {
    await handle.close().catch(() => {});
    throw error;
  }
}

/**
 * The answer for an open regular file, and whether its body streams from
 * `handle` and so closes it; when it does not, the caller closes the handle.
 */
async function answerWithFile(
  request: Request,
  handle: FileHandle,
  stats: Stats,
  type: TypeInfo,
  settings: FileSettings,
): Promise<{ response: Response; streams: boolean }> {
  const whole = (response: Response) => ({ response, streams: false });
  const streaming = (response: Response) => ({ response, streams: true });
  const size = stats.size;
  const headers = new Headers({
    etag: weakEtag(stats),
    "last-modified": new Date(stats.mtimeMs).toUTCString(),
    "cache-control": "no-cache",
  });
  // A small range is read now and sent as bytes: less memory than one
  // streamed chunk, without the cost of a stream.
  const send = async (status: number, range: ByteRange) =>
    range.end - range.start <= SINGLE_READ_BYTES
      ? whole(respond(status, headers, await readRange(handle, range), settings))
      : streaming(respond(status, headers, fileBody(handle, [range]), settings));
  const compressible = settings.compress && type.compressible && size >= MIN_COMPRESS_BYTES;
  if (compressible) headers.set("vary", "Accept-Encoding");
  if (isNotModified(request.headers, headers.get("etag")!, stats.mtimeMs)) {
    return whole(respond(304, headers, null, settings));
  }
  headers.set("content-type", type.type);
  headers.set("accept-ranges", "bytes");

  const ranges = request.method === "GET" ? requestedRanges(request.headers, stats) : null;
  if (ranges === "unsatisfiable") {
    headers.set("content-range", `bytes */${size}`);
    return whole(errorResponse(416, settings, headers));
  }
  if (ranges !== null && ranges.length === 1) {
    const [{ start, end }] = ranges;
    headers.set("content-range", `bytes ${start}-${end - 1}/${size}`);
    headers.set("content-length", String(end - start));
    return await send(206, { start, end });
  }
  if (ranges !== null) {
    const { contentType, length, pieces } = multipartBody(ranges, type.type, size);
    headers.set("content-type", contentType);
    headers.set("content-length", String(length));
    return streaming(respond(206, headers, fileBody(handle, pieces), settings));
  }

  const encoding = compressible && !request.headers.has("range")
    ? negotiateEncoding(request.headers.get("accept-encoding"))
    : null;
  if (encoding !== null) {
    // HEAD too gets the compressed stream: the server drops the body unread,
    // and whatever it makes of a body of unknown length, HEAD and GET agree.
    headers.set("content-encoding", encoding);
    const body = compressedBody(fileBody(handle, [{ start: 0, end: size }]), encoding);
    return streaming(respond(200, headers, body, settings));
  }
  headers.set("content-length", String(size));
  if (request.method === "HEAD") return whole(respond(200, headers, null, settings));
  return await send(200, { start: 0, end: size });
}

/** `W/"<size hex>-<mtime in ms, hex>"`: changes whenever the file is written. */
function weakEtag(stats: Stats): string {
  return `W/"${stats.size.toString(16)}-${Math.floor(stats.mtimeMs).toString(16)}"`;
}

/** The modification time as HTTP dates carry it: whole seconds. */
const toSeconds = (ms: number) => Math.floor(ms / 1000) * 1000;

/**
 * RFC 9110 §13.2.2: If-None-Match decides when present (weak comparison, `*`
 * matches any file); only without it does If-Modified-Since count.
 */
function isNotModified(headers: Headers, etag: string, mtimeMs: number): boolean {
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) {
    if (ifNoneMatch.trim() === "*") return true;
    const opaque = etag.slice(2); // our tags are all weak: drop "W/"
    return (ifNoneMatch.match(/(?:W\/)?"[^"]*"/g) ?? [])
      .some((tag) => tag.replace(/^W\//, "") === opaque);
  }
  const since = headers.get("if-modified-since");
  if (since === null) return false;
  const date = Date.parse(since);
  return !Number.isNaN(date) && toSeconds(mtimeMs) <= date;
}

/**
 * The ranges to send: null for the whole file, "unsatisfiable" for `416`, or
 * one or more ranges in the order asked. Range applies to GET only.
 */
function requestedRanges(headers: Headers, stats: Stats): ByteRange[] | "unsatisfiable" | null {
  const range = headers.get("range");
  // An empty file has no byte to point at: send it whole, rather than 416.
  if (range === null || stats.size === 0 || !rangeStillValid(headers, stats)) return null;
  return parseRange(range, stats.size);
}

/**
 * If-Range (RFC 9110 §13.1.5): the range holds only if the file is unchanged.
 * A date must equal Last-Modified. An entity tag must match strongly, and the
 * ETags serveDir makes are weak, so a tag never matches: the client gets the
 * whole, current file, which is always correct.
 */
function rangeStillValid(headers: Headers, stats: Stats): boolean {
  const ifRange = headers.get("if-range")?.trim();
  if (ifRange === undefined) return true;
  if (ifRange.startsWith('"') || ifRange.startsWith("W/")) return false;
  const date = Date.parse(ifRange);
  return !Number.isNaN(date) && date === toSeconds(stats.mtimeMs);
}

/**
 * Parses `bytes=<range>, …` against a file of `size` bytes (RFC 9110 §14.1).
 * Malformed headers, other units, more than {@linkcode MAX_RANGES} ranges and
 * overlapping ranges give null (send the whole file). Ranges that start past
 * the end are dropped; if none is left, "unsatisfiable".
 */
function parseRange(header: string, size: number): ByteRange[] | "unsatisfiable" | null {
  const set = /^\s*bytes\s*=(.*)$/i.exec(header);
  if (set === null) return null;
  const specs = set[1].split(",").map((spec) => spec.trim()).filter((spec) => spec !== "");
  if (specs.length === 0 || specs.length > MAX_RANGES) return null;
  const ranges: ByteRange[] = [];
  for (const spec of specs) {
    const match = /^(\d*)-(\d*)$/.exec(spec);
    if (match === null || (match[1] === "" && match[2] === "")) return null;
    const [, first, last] = match;
    if (first === "") {
      const suffix = Number(last);
      if (suffix > 0) ranges.push({ start: Math.max(0, size - suffix), end: size });
      continue;
    }
    const start = Number(first);
    if (last !== "" && Number(last) < start) return null; // last-pos before first-pos: invalid
    const end = last === "" ? size : Math.min(Number(last) + 1, size);
    if (start < size) ranges.push({ start, end });
  }
  if (ranges.length === 0) return "unsatisfiable";
  return overlap(ranges) ? null : ranges;
}

function overlap(ranges: ByteRange[]): boolean {
  const sorted = [...ranges].sort((a, b) => a.start - b.start);
  return sorted.some((range, i) => i > 0 && range.start < sorted[i - 1].end);
}

const encoder = new TextEncoder();

/** The pieces and exact length of a `multipart/byteranges` body (RFC 9110 §14.6). */
function multipartBody(ranges: ByteRange[], type: string, size: number) {
  const boundary = randomBoundary();
  const pieces: BodyPiece[] = [];
  let length = 0;
  ranges.forEach(({ start, end }, i) => {
    const partHead = encoder.encode(
      `${i === 0 ? "" : "\r\n"}--${boundary}\r\nContent-Type: ${type}\r\n` +
        `Content-Range: bytes ${start}-${end - 1}/${size}\r\n\r\n`,
    );
    pieces.push(partHead, { start, end });
    length += partHead.length + end - start;
  });
  const close = encoder.encode(`\r\n--${boundary}--\r\n`);
  pieces.push(close);
  length += close.length;
  return { contentType: `multipart/byteranges; boundary=${boundary}`, length, pieces };
}

function randomBoundary(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return "brick-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// ─── 6. Compression ─────────────────────────────────────────────────────────

/** Smaller bodies are sent as they are: compression would save next to nothing. */
const MIN_COMPRESS_BYTES = 1024;
/** Brotli's quality 5: about as fast as gzip, far smaller than it on text. */
const BROTLI_QUALITY = 5;

type Encoding = "br" | "gzip";

/**
 * The codings this runtime can produce, best first. Both come from node:zlib.
 * For brotli, that is where quality can be set: CompressionStream has no
 * standard brotli, and Bun's non-standard one runs at quality 11, about
 * 1 MB/s. For gzip, CompressionStream on Node 20 and Bun 1.3 takes in its
 * whole input while nobody reads its output, so a slow client would make the
 * server hold the whole compressed file.
 */
const ENCODINGS: readonly Encoding[] = [
  ...(typeof zlib.createBrotliCompress === "function" ? ["br" as const] : []),
  ...(typeof zlib.createGzip === "function" ? ["gzip" as const] : []),
];

/**
 * The coding to use for an `Accept-Encoding` value (RFC 9110 §12.5.3): the
 * one with the highest weight, brotli on a tie, or null for none. `q=0` means
 * "not acceptable"; `*` stands for every coding not listed.
 */
function negotiateEncoding(accept: string | null): Encoding | null {
  if (accept === null) return null;
  const weights = new Map<string, number>();
  for (const item of accept.split(",")) {
    const [name, ...params] = item.split(";");
    const coding = name.trim().toLowerCase();
    if (coding === "") continue;
    let weight = 1;
    for (const param of params) {
      const [key, value = ""] = param.split("=").map((part) => part.trim());
      if (key.toLowerCase() !== "q") continue;
      weight = /^(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/.test(value) ? Number(value) : 0;
    }
    weights.set(coding === "x-gzip" ? "gzip" : coding, weight);
  }
  let best: Encoding | null = null;
  let bestWeight = 0;
  for (const coding of ENCODINGS) {
    const weight = weights.get(coding) ?? weights.get("*") ?? 0;
    if (weight > bestWeight) [best, bestWeight] = [coding, weight];
  }
  return best;
}

/**
 * `source` compressed with `encoding`. The source is pumped into the
 * compressor only as fast as the compressor's output is read. Cancelling the
 * result cancels the source itself (closing its file) rather than relying on
 * `pipeThrough` to pass the cancel along: Bun does not while the pipe waits
 * on backpressure. A failing source errors the result.
 */
function compressedBody(
  source: ReadableStream<Uint8Array>,
  encoding: Encoding,
): ReadableStream<Uint8Array> {
  const { readable, writable } = compressorStream(encoding);
  const input = source.getReader();
  const writer = writable.getWriter();
  const output = readable.getReader();
  const pump = async () => {
    for (;;) {
      await writer.ready;
      const { done, value } = await input.read();
      if (done) return await writer.close();
      writer.write(value).catch(() => {}); // a failure shows in `ready` and in `output`
    }
  };
  pump().catch((error) => {
    writer.abort(error).catch(() => {});
    input.cancel(error).catch(() => {});
  });
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await output.read();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel(reason) {
      await Promise.allSettled([input.cancel(reason), output.cancel(reason)]);
    },
  }, { highWaterMark: 0 });
}

/**
 * A node:zlib compressor as a web TransformStream. Its output is enqueued as
 * it comes, and the TransformStream takes no more input while output waits
 * to be read: at most about one input chunk's output is held in memory.
 */
function compressorStream(encoding: Encoding): TransformStream<Uint8Array, Uint8Array> {
  const compressor = encoding === "br"
    ? zlib.createBrotliCompress({
      params: { [zlib.constants.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY },
    })
    : zlib.createGzip();
  return new TransformStream<Uint8Array, Uint8Array>({
    start(controller) {
      compressor.on("data", (chunk: Uint8Array) => {
        try {
          controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        } catch {
          compressor.destroy(); // the reader is gone: output still on its way has nowhere to go
        }
      });
      compressor.on("error", (error) => {
        try {
          controller.error(error);
        } catch { /* already closed */ }
      });
    },
    transform(chunk) {
      return new Promise((resolve) => compressor.write(chunk, () => resolve()));
    },
    flush() {
      return new Promise((resolve, reject) => {
        compressor.once("end", resolve);
        compressor.once("error", reject);
        compressor.end();
      });
    },
    // Called by runtimes that support it when the stream is cancelled or aborted.
    cancel() {
      compressor.destroy();
    },
  } as Transformer<Uint8Array, Uint8Array>);
}

// ─── 7. Streaming from disk ─────────────────────────────────────────────────

/** A range of at most this many bytes is read in one go and sent as bytes. */
const SINGLE_READ_BYTES = 64 * 1024;

/**
 * How much a file stream reads from disk per pull for a default reader. Each
 * read and each socket write costs a fixed amount on top of its bytes, so
 * large reads send a file with less CPU: measured on 100 MiB files, 512 KiB
 * reads take about 40% less CPU per byte than 64 KiB ones, on Deno and on
 * Node. With one read ahead, a response holds at most two chunks, 1 MiB,
 * whatever its client's speed.
 */
const STREAM_CHUNK_BYTES = 512 * 1024;

/**
 * A buffer for a read to fill, not zeroed first where the runtime can skip
 * that (`Buffer.allocUnsafeSlow` on Node and Bun), which saves a pass over
 * every chunk. It is never a slice of a shared pool: its ArrayBuffer is its
 * own, and a short read copies out the bytes it filled (see
 * {@linkcode filledPart}), so no chunk's buffer holds stale memory.
 */
function readBuffer(length: number): Uint8Array<ArrayBuffer> {
  const unzeroed = Buffer.allocUnsafeSlow(length);
  const { buffer, byteOffset } = unzeroed;
  if (!(buffer instanceof ArrayBuffer) || byteOffset !== 0 || buffer.byteLength !== length) {
    return new Uint8Array(length);
  }
  return new Uint8Array(buffer, 0, length);
}

/** The bytes a read put in `buffer`: the buffer itself, or a copy of its filled start. */
function filledPart(buffer: Uint8Array<ArrayBuffer>, bytesRead: number): Uint8Array<ArrayBuffer> {
  return bytesRead === buffer.length ? buffer : buffer.slice(0, bytesRead);
}

/** A piece of a body: bytes as they are, or a range of the file. */
type BodyPiece = Uint8Array | ByteRange;

/** Reads a small range of the file, up to {@linkcode SINGLE_READ_BYTES}, into memory. */
async function readRange(
  handle: FileHandle,
  { start, end }: ByteRange,
): Promise<Uint8Array<ArrayBuffer>> {
  const buffer = readBuffer(end - start); // filled whole, or dropped with the error
  for (let filled = 0; filled < buffer.length;) {
    const left = buffer.length - filled;
    const { bytesRead } = await handle.read(buffer, filled, left, start + filled);
    if (bytesRead === 0) {
      throw new Error(`The file ended ${left} bytes early: it changed while read`);
    }
    filled += bytesRead;
  }
  return buffer;
}

/**
 * A byte stream of `pieces`, reading the file ranges among them from
 * `handle`. A reader in BYOB mode has each read go straight into its own
 * buffer, so a writer that reuses one buffer allocates nothing per chunk.
 * Any other reader gets chunks of up to {@linkcode STREAM_CHUNK_BYTES}, the
 * next one read while it handles the last. Either way the file is read only
 * as fast as the body is, so a slow client holds the file back instead of
 * filling memory. The handle is closed once the last byte is read, on cancel,
 * and on a read error, which errors the stream. A file that got shorter while
 * it was sent is such an error.
 */
function fileBody(handle: FileHandle, pieces: BodyPiece[]): ReadableStream<Uint8Array> {
  let index = 0;
  let position = -1;
  let reading: Promise<unknown> = Promise.resolve();
  let closing: Promise<void> | null = null;
  // Waits for a read in flight first: Bun 1.3 resolves a close() made during
  // a read but leaves the descriptor open.
  const close = () =>
    closing ??= reading.catch(() => {}).then(() => handle.close()).catch(() => {});
  /** The chunk being read ahead for a default reader. */
  let ahead: Promise<Uint8Array | null> | null = null;

  /** The next piece to send: bytes, the rest of a file range, or null at the end. */
  function nextPiece(): Uint8Array | ByteRange | null {
    while (index < pieces.length) {
      const piece = pieces[index];
      if (piece instanceof Uint8Array) {
        index++;
        return piece.slice(); // enqueue() takes over the buffer of what it is given
      }
      if (position < 0) position = piece.start;
      if (position < piece.end) return { start: position, end: piece.end };
      index++;
      position = -1;
    }
    return null;
  }

  /** Fills `into` from the current position of the range that ends at `end`. */
  async function readInto(into: Uint8Array, end: number): Promise<number> {
    const read = handle.read(into, 0, into.length, position);
    reading = read;
    const { bytesRead } = await read;
    if (bytesRead === 0) {
      throw new Error(`The file ended ${end - position} bytes early: it changed while sent`);
    }
    position += bytesRead;
    return bytesRead;
  }

  async function nextChunk(): Promise<Uint8Array | null> {
    const next = nextPiece();
    if (next === null || next instanceof Uint8Array) return next;
    const buffer = readBuffer(Math.min(STREAM_CHUNK_BYTES, next.end - next.start));
    return filledPart(buffer, await readInto(buffer, next.end));
  }

  /** Answers a default read with the chunk read ahead, then reads the one after. */
  async function sendChunk(controller: ReadableByteStreamController): Promise<boolean> {
    const chunk = await (ahead ?? nextChunk());
    ahead = null;
    if (chunk === null) return false;
    controller.enqueue(chunk);
    ahead = nextChunk();
    // Past the last byte the file is closed at once; a failure shows at the next pull.
    ahead.then((next) => {
      if (next === null) close();
    }, close);
    return true;
  }

  /** Answers a BYOB read: file bytes go straight into the reader's buffer. */
  async function fillRequest(
    controller: ReadableByteStreamController,
    request: ReadableStreamBYOBRequest,
  ): Promise<boolean> {
    const next = nextPiece();
    if (next === null) return false;
    if (next instanceof Uint8Array) {
      controller.enqueue(next);
      return true;
    }
    const view = request.view!;
    const length = Math.min(view.byteLength, next.end - next.start);
    const into = new Uint8Array(view.buffer, view.byteOffset, length);
    request.respond(await readInto(into, next.end));
    return true;
  }

  return new ReadableStream({
    type: "bytes",
    async pull(controller) {
      try {
        const request = controller.byobRequest ?? null; // Bun 1.3 gives undefined for none
        const sent = ahead !== null || request === null
          ? await sendChunk(controller)
          : await fillRequest(controller, request);
        if (sent) return;
        await close();
        controller.close();
        controller.byobRequest?.respond(0); // a pending BYOB read resolves as done
      } catch (error) {
        await close();
        controller.error(error);
      }
    },
    cancel: close,
  }) as ReadableStream<Uint8Array>;
}

// ─── 8. Directories ─────────────────────────────────────────────────────────

/** Where a directory request points. */
interface DirectoryTarget {
  /** The real path of the root. */
  root: string;
  /** The real path of the directory. */
  path: string;
  /** The decoded segments below the root. */
  inside: string[];
  target: Target;
}

/** Stats of this many entries are read at once for a listing. */
const LISTING_BATCH = 64;

/** The answer for a directory: a redirect to add the slash, index.html, a listing or `404`. */
async function directoryResponse(
  request: Request,
  dir: DirectoryTarget,
  settings: DirSettings,
): Promise<Response> {
  const urlPath = "/" + [...settings.urlRoot, ...dir.inside].map(encodeURIComponent).join("/");
  if (!dir.target.trailingSlash) {
    // Rebuilt from the decoded segments, so `//host` can never come out of it.
    const location = (urlPath === "/" ? "/" : urlPath + "/") + dir.target.query;
    return respond(301, new Headers({ location }), null, settings);
  }
  if (settings.showIndex) {
    const index = await indexFile(dir);
    if (index !== null) return await fileResponse(request, index, settings);
  }
  if (!settings.showDirListing) return errorResponse(404, settings);
  const entries = await listEntries(dir, settings.showDotfiles);
  const title = "/" + [...settings.urlRoot, ...dir.inside].map((s) => s + "/").join("");
  const html = listingHtml(title, entries, dir.inside.length > 0);
  return listingResponse(request, html, settings);
}

/** The directory's `index.html`, if it is a regular file inside the root. */
async function indexFile(dir: DirectoryTarget): Promise<string | null> {
  try {
    const path = await realpath(join(dir.path, "index.html"));
    if (!isInside(path, dir.root) || !(await stat(path)).isFile()) return null;
    return path;
  } catch (error) {
    const code = (error as { code?: unknown })?.code;
    if (typeof code === "string" && NOT_FOUND_CODES.has(code)) return null;
    throw error;
  }
}

/** One line of a listing. */
interface Entry {
  name: string;
  isDirectory: boolean;
  size: number;
  mtime: Date;
}

/**
 * The directory's entries, directories first, then by name. Dotfiles are left
 * out unless shown, and so are entries that cannot be served: symlinks that
 * are broken or lead out of the root, and what cannot be read.
 */
async function listEntries(dir: DirectoryTarget, showDotfiles: boolean): Promise<Entry[]> {
  const dirents = (await readdir(dir.path, { withFileTypes: true }))
    .filter((dirent) => showDotfiles || !isDotName(dirent.name));
  const entries: Entry[] = [];
  for (let i = 0; i < dirents.length; i += LISTING_BATCH) {
    const batch = dirents.slice(i, i + LISTING_BATCH).map(async (dirent) => {
      const path = join(dir.path, dirent.name);
      try {
        if (dirent.isSymbolicLink() && !isInside(await realpath(path), dir.root)) return null;
        const stats = await stat(path);
        if (!stats.isFile() && !stats.isDirectory()) return null;
        return {
          name: dirent.name,
          isDirectory: stats.isDirectory(),
          size: stats.size,
          mtime: stats.mtime,
        };
      } catch {
        return null; // gone, a loop, or unreadable: nothing to link to
      }
    });
    for (const entry of await Promise.all(batch)) if (entry !== null) entries.push(entry);
  }
  return entries.sort((a, b) =>
    a.isDirectory !== b.isDirectory ? (a.isDirectory ? -1 : 1) : a.name < b.name ? -1 : 1
  );
}

const HTML_ESCAPES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};
const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);

/** A size for people: `512 B`, `1.5 KiB`, `12.0 MiB`. */
function formatSize(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  let value = bytes;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** `2026-11-21 10:00` in UTC. */
const formatDate = (date: Date) => date.toISOString().slice(0, 16).replace("T", " ");

/** The listing page: names escaped for HTML, hrefs percent-encoded. */
function listingHtml(title: string, entries: Entry[], withParent: boolean): string {
  const rows = entries.map(({ name, isDirectory, size, mtime }) => {
    const href = encodeURIComponent(name) + (isDirectory ? "/" : "");
    const shown = escapeHtml(name) + (isDirectory ? "/" : "");
    const sizeCell = isDirectory ? "-" : formatSize(size);
    return `<tr><td><a href="${href}">${shown}</a></td>` +
      `<td class="size" title="${isDirectory ? "" : size + " bytes"}">${sizeCell}</td>` +
      `<td><time datetime="${mtime.toISOString()}">${formatDate(mtime)} UTC</time></td></tr>`;
  });
  if (withParent) rows.unshift(`<tr><td><a href="../">../</a></td><td></td><td></td></tr>`);
  const heading = `Index of ${escapeHtml(title)}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${heading}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem; }
table { border-collapse: collapse; }
th, td { padding: 0.2rem 1.5rem 0.2rem 0; text-align: left; }
td.size { text-align: right; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<h1>${heading}</h1>
<table>
<thead><tr><th>Name</th><th>Size</th><th>Modified</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>
</body>
</html>
`;
}

/** The listing as a response, compressed like a file would be. */
function listingResponse(request: Request, html: string, settings: FileSettings): Response {
  const bytes = encoder.encode(html);
  const headers = new Headers({
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-cache",
  });
  const compressible = settings.compress && bytes.length >= MIN_COMPRESS_BYTES;
  if (compressible) headers.set("vary", "Accept-Encoding");
  const encoding = compressible ? negotiateEncoding(request.headers.get("accept-encoding")) : null;
  if (encoding === null) {
    headers.set("content-length", String(bytes.length));
    return respond(200, headers, request.method === "HEAD" ? null : bytes, settings);
  }
  headers.set("content-encoding", encoding);
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(bytes);
      controller.close();
    },
  });
  return respond(200, headers, compressedBody(body, encoding), settings);
}
