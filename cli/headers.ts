/**
 * Response header fields the command line adds to an app's responses:
 * `--header "Name: value"`, `--cors` (with an answer to CORS preflights the app
 * leaves unanswered), and `--debug-worker`'s `x-brick-worker`.
 *
 * @module
 */

import process from "node:process";
import type { Handler } from "../mod.ts";
import type { WorkerRole } from "./worker.ts";

/**
 * Wraps an app's handler for `--header` and `--cors`. Every response gets the
 * `--header` fields, replacing the app's own, and with `--cors`
 * `Access-Control-Allow-Origin: *` unless the app set the field itself. A
 * CORS preflight that the app does not answer with a 2xx status is answered
 * `204`, allowing the method and the fields that it asks for. Bodies are
 * passed on untouched, streams included.
 */
export function withResponseHeaders(
  handler: Handler,
  fields: [string, string][],
  cors: boolean,
): Handler {
  if (fields.length === 0 && !cors) return handler;
  const apply = (headers: Headers) => {
    if (cors && !headers.has("access-control-allow-origin")) {
      headers.set("access-control-allow-origin", "*");
    }
    for (const [name, value] of fields) headers.set(name, value);
  };
  const addTo = (response: Response, request: Request): Response => {
    // An interim answer such as a 101 for an upgrade is handed on as it is.
    if (response.status < 200) return response;
    if (cors && !response.ok && isPreflight(request)) {
      response.body?.cancel().catch(() => {});
      response = preflightResponse(request);
    }
    try {
      apply(response.headers);
      return response;
    } catch {
      // Immutable headers, as on a fetch() result or Response.redirect():
      // a copy shares the body stream without reading it.
      const copy = new Response(response.body, response);
      apply(copy.headers);
      return copy;
    }
  };
  return (request, info) => {
    const response = handler(request, info);
    return response instanceof Promise
      ? response.then((response) => addTo(response, request))
      : addTo(response, request);
  };
}

/** Whether `request` is a CORS preflight: an OPTIONS request naming the method to come. */
function isPreflight(request: Request): boolean {
  return request.method === "OPTIONS" && request.headers.has("access-control-request-method");
}

/** A `204` that allows what a CORS preflight asks for, for a day. */
function preflightResponse(request: Request): Response {
  const headers = new Headers({
    "access-control-allow-methods": request.headers.get("access-control-request-method")!,
    "access-control-max-age": "86400",
  });
  const fields = request.headers.get("access-control-request-headers");
  if (fields !== null) headers.set("access-control-allow-headers", fields);
  return new Response(null, { status: 204, headers });
}

/** Adds `x-brick-worker: <id>; pid=<pid>; start=<n>` to every response (`--debug-worker`). */
export function withWorkerHeader(handler: Handler, role: WorkerRole | undefined): Handler {
  const value = `${role?.id ?? 1}; pid=${process.pid}; start=${role?.start ?? 1}`;
  return withResponseHeaders(handler, [["x-brick-worker", value]], false);
}
