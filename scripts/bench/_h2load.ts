/**
 * h2load (nghttp2) as the second load generator of `deno task bench`: `h2load --h1`, HTTP/1.1
 * keep-alive like wrk's, from a client written in C on libev. wrk saturates near the fastest
 * servers' rate on a small machine; where both agree the figure is the server's, where h2load
 * reads higher wrk's was the client's.
 *
 * @module
 */

/** What the bench reads from one h2load run. */
export interface H2loadResult {
  /** Completed requests per second (`finished in …, <n> req/s`). */
  requestsPerSec: number;
  /** Requests that got a response (`requests: … <n> succeeded`). */
  succeeded: number;
  /** Failed, errored and timed-out requests, plus responses that are not 2xx or 3xx. */
  errors: number;
}

/**
 * Parses the summary h2load prints at the end of a run.
 *
 * @param output h2load's stdout
 * @returns the figures
 */
export function parseH2loadOutput(output: string): H2loadResult {
  const finished = output.match(/^finished in [\d.]+\w+, ([\d.]+) req\/s/m);
  const requests = output.match(
    /^requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/m,
  );
  const codes = output.match(/^status codes: \d+ 2xx, \d+ 3xx, (\d+) 4xx, (\d+) 5xx/m);
  if (!finished || !requests || !codes) throw new Error(`Unexpected h2load output:\n${output}`);
  const succeeded = Number(requests[1]);
  if (succeeded === 0) throw new Error(`h2load completed no request:\n${output}`);
  const sum = (values: string[]) => values.reduce((total, n) => total + Number(n), 0);
  return {
    requestsPerSec: Number(finished[1]),
    succeeded,
    errors: sum(requests.slice(2)) + sum(codes.slice(1)),
  };
}

/**
 * h2load's arguments for a keep-alive HTTP/1.1 run of `seconds` seconds.
 *
 * @param url the target
 * @param seconds measured duration
 * @param connections concurrent connections
 * @returns the arguments after `h2load`
 */
export function h2loadArgs(url: string, seconds: number, connections: number): string[] {
  return [
    "--h1",
    "--clients",
    String(connections),
    "--threads",
    "1",
    "--duration",
    String(seconds),
    url,
  ];
}
