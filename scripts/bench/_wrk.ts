/**
 * wrk for `deno task bench`: the Lua scripts of its scenarios and the parser of its `--latency`
 * output.
 *
 * @module
 */

/** What one wrk run reported. */
export interface WrkResult {
  /** Completed requests per second (`Requests/sec`). */
  requestsPerSec: number;
  /** Completed requests (`<n> requests in …`). */
  requests: number;
  /**
   * Bytes read per second in MiB (`Transfer/sec`). wrk counts every byte it reads, those of
   * responses still in flight when the run ends included.
   */
  mibPerSec: number;
  /**
   * The 99th percentile latency in milliseconds; NaN for the `0.00us` wrk prints when its
   * percentiles are corrupted, as with pipelining (https://github.com/wg/wrk/issues/236).
   */
  p99Ms: number;
  /** Socket errors (connect, read, write, timeout) plus non-2xx/3xx responses. */
  errors: number;
}

const LATENCY_UNITS_MS: Record<string, number> = {
  us: 0.001,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/** wrk prints sizes with binary prefixes: `KB` is 1024 bytes. */
const SIZE_UNITS_MIB: Record<string, number> = {
  B: 1 / 1024 ** 2,
  KB: 1 / 1024,
  MB: 1,
  GB: 1024,
  TB: 1024 ** 2,
};

/**
 * Extracts rates, p99 latency and error counts from the output of `wrk --latency`.
 *
 * @param output wrk's stdout
 * @returns the parsed result
 * @throws {Error} if the output lacks a figure, or wrk completed no request and read nothing
 */
export function parseWrkOutput(output: string): WrkResult {
  const requests = output.match(/^\s*(\d+) requests in [\d.]+\w+, ([\d.]+)(B|KB|MB|GB|TB) read/m);
  const rate = output.match(/^Requests\/sec:\s+([\d.]+)/m);
  const transfer = output.match(/^Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB|TB)\s*$/m);
  const p99 = output.match(/^\s*99%\s+([\d.]+)(us|ms|s|m|h)\s*$/m);
  if (!requests || !rate || !transfer || !p99) {
    throw new Error(`Unexpected wrk output:\n${output}`);
  }
  if (Number(requests[1]) === 0 && Number(requests[2]) === 0) {
    throw new Error(`wrk completed no request and read nothing:\n${output}`);
  }
  const p99Ms = Number(p99[1]) * LATENCY_UNITS_MS[p99[2]];
  const socket = output.match(
    /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/,
  );
  const non2xx = output.match(/Non-2xx or 3xx responses: (\d+)/);
  const socketErrors = socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
  return {
    requestsPerSec: Number(rate[1]),
    requests: Number(requests[1]),
    mibPerSec: Number(transfer[1]) * SIZE_UNITS_MIB[transfer[2]],
    p99Ms: p99Ms > 0 ? p99Ms : NaN,
    errors: socketErrors + (non2xx ? Number(non2xx[1]) : 0),
  };
}

/**
 * wrk Lua script sending `depth` pipelined `GET /` per write.
 *
 * @param depth requests per batch
 * @returns the script's source
 */
export function pipelineLua(depth: number): string {
  return `-- ${depth} pipelined requests per connection write.
init = function(args)
  local requests = {}
  for i = 1, ${depth} do
    requests[i] = wrk.format(nil, "/")
  end
  pipelined = table.concat(requests)
end

request = function()
  return pipelined
end
`;
}

/**
 * wrk Lua script sending `POST /` with a body of `bytes` bytes; wrk adds its Content-Length.
 *
 * @param bytes body size
 * @returns the script's source
 */
export function postLua(bytes: number): string {
  return `-- POST / with a ${bytes}-byte body; wrk.format adds the Content-Length.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("x", ${bytes})
`;
}
