/**
 * The benches of brick's other protocols, each a script of its own in this
 * folder that `deno task bench` runs as a child and whose markdown table it
 * adds to the report: WebSocket echo with and without permessage-deflate
 * (`ws_echo.ts`), HTTP/2 hello under h2load (`h2.ts`), and the reverse proxy
 * with its cache against nginx (`proxy.ts`). Each also runs alone.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** One protocol bench: a script beside this file and how to size its run. */
export interface ProtocolBench {
  /** Its name for `--scenario`. */
  name: string;
  /** The heading of its section in the report. */
  title: string;
  /** The script, beside this file. */
  script: string;
  /** The script's flags for `seconds` of measuring per run. */
  args(seconds: number): string[];
}

export const PROTOCOL_BENCHES: ProtocolBench[] = [
  {
    name: "websocket",
    title: "WebSocket echo: messages/s and bytes on the wire, compression off and on, against ws",
    script: "ws_echo.ts",
    args: (seconds) => ["--seconds", String(seconds)],
  },
  {
    name: "http2",
    title: "HTTP/2 hello (h2load -m 32) over h2c and TLS, against Deno.serve and node:http2",
    script: "h2.ts",
    args: (seconds) => ["--seconds", String(seconds)],
  },
  {
    name: "proxy",
    title: "Reverse proxy: cached hello, uncached hello and 1 MiB through brick and nginx",
    script: "proxy.ts",
    args: (seconds) => ["--duration", String(seconds)],
  },
];

/**
 * Runs one protocol bench and returns its report section (markdown). A bench
 * that fails says so in its section instead of a table.
 */
export async function runProtocolBench(bench: ProtocolBench, seconds: number): Promise<string> {
  console.error(`\n=== ${bench.name}: ${bench.script}`);
  const script = fileURLToPath(new URL(bench.script, import.meta.url));
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...bench.args(seconds)],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const text = new TextDecoder().decode(stdout).trim();
  const body = code === 0 ? text : `The bench failed (exit code ${code}); its output:\n\n${text}`;
  return `## ${bench.title}\n\n${body}\n`;
}
