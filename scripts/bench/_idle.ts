/**
 * The idle scenario: many keep-alive connections opened, then held, while the server's memory is
 * read.
 *
 * @module
 */

import type { Measurement } from "./_report.ts";
import {
  CLIENT_CPU,
  HOSTNAME,
  IDLE_CLIENT_GRACE_MS,
  IDLE_OPEN_TIMEOUT_MS,
  IDLE_SETTLE_MS,
  type Options,
  RSS_SAMPLE_MS,
  STARTUP_TIMEOUT_MS,
} from "./_config.ts";
import { withServer } from "./_measure.ts";
import type { Preparation } from "./_prepare.ts";
import { delay, pinned, spawnTracked, stopProcess } from "./_processes.ts";
import { assertAlive, drain, readMemory, type RunningServer, teeStderr } from "./_running.ts";
import type { Scenario } from "./_scenarios.ts";
import type { ReadyServer } from "./_servers.ts";

// ─── The idle scenario ──────────────────────────────────────────────────────

/**
 * Sends one `GET /` on a connection of its own, with `Connection: close`, and checks that the
 * answer is a 200: the warm-up of the idle scenario.
 */
async function warmUpRequest(port: number): Promise<void> {
  const connection = await Deno.connect({ hostname: HOSTNAME, port });
  const timer = setTimeout(() => connection.close(), STARTUP_TIMEOUT_MS);
  try {
    const request = `GET / HTTP/1.1\r\nHost: ${HOSTNAME}\r\nConnection: close\r\n\r\n`;
    await connection.write(new TextEncoder().encode(request));
    const buffer = new Uint8Array(4096);
    const read = await connection.read(buffer);
    const line = new TextDecoder().decode(buffer.subarray(0, read ?? 0)).split("\r\n")[0];
    if (!line.startsWith("HTTP/1.1 200")) {
      throw new Error(`the warm-up request got "${line}" instead of a 200 response`);
    }
  } finally {
    clearTimeout(timer);
    try {
      connection.close();
    } catch {
      // Closed by the timer.
    }
  }
}

/** Reads a child's stdout line by line. */
class LineReader {
  #reader: ReadableStreamDefaultReader<string>;
  #buffered = "";

  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }

  /**
   * The next line matching `pattern` (other lines are skipped); throws if the stream ends first
   * or no such line comes within `timeoutMs`.
   */
  async match(pattern: RegExp, timeoutMs: number, what: string): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    while (true) {
      const newline = this.#buffered.indexOf("\n");
      if (newline !== -1) {
        const line = this.#buffered.slice(0, newline).trim();
        this.#buffered = this.#buffered.slice(newline + 1);
        const match = line.match(pattern);
        if (match) return match;
        continue;
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
      });
      const read = await Promise.race([this.#reader.read(), timeout]).finally(() =>
        clearTimeout(timer)
      );
      if (read === "timeout") throw new Error(`${what} did not come within ${timeoutMs} ms`);
      if (read.done) throw new Error(`the idle client ended before ${what}`);
      this.#buffered += read.value;
    }
  }

  /** Discards the rest of the stream. */
  drain(): void {
    drain(this.#reader);
  }
}

/**
 * Starts a fresh server, sends a warm-up request, reads its memory, has the idle client open
 * the connections and hold them, reads the memory while they are held, and stops both.
 */
export function measureIdle(
  server: ReadyServer,
  scenario: Scenario,
  options: Options,
  preparation: Preparation,
): Promise<Measurement> {
  return withServer(server, scenario, preparation, (running) => {
    return holdIdleConnections(running, options, preparation);
  });
}

/** The idle scenario against a running server; stops the idle client, not the server. */
async function holdIdleConnections(
  running: RunningServer,
  options: Options,
  preparation: Preparation,
): Promise<Measurement> {
  let client: Deno.ChildProcess | undefined;
  try {
    await warmUpRequest(running.port);
    await delay(IDLE_SETTLE_MS);
    const before = await readMemory(running);
    const holdMs = Math.round(options.idleHold * 1000);
    const clientArgs = [
      "--port",
      String(running.port),
      "--connections",
      String(options.idleConnections),
      "--hold",
      String(holdMs),
      "--timeout",
      String(IDLE_OPEN_TIMEOUT_MS),
    ];
    client = spawnTracked(
      pinned(CLIENT_CPU, preparation.files, [...preparation.idleClient, ...clientArgs]),
      { stdin: "null", stdout: "piped", stderr: "piped" },
    );
    teeStderr(client.stderr);
    const lines = new LineReader(client.stdout);
    const opened = await lines.match(
      /^OPENED (\d+) (\d+) (\d+)$/,
      IDLE_OPEN_TIMEOUT_MS + IDLE_CLIENT_GRACE_MS,
      "the OPENED line",
    );
    const held = lines.match(/^HELD (\d+) (\d+)$/, holdMs + IDLE_CLIENT_GRACE_MS, "the HELD line");
    let holding = true;
    held.then(() => holding = false, () => holding = false);
    let rssHeldKiB = (await readMemory(running)).rssKiB;
    while (holding) {
      await Promise.race([delay(RSS_SAMPLE_MS), held.catch(() => {})]);
      if (holding) rssHeldKiB = Math.max(rssHeldKiB, (await readMemory(running)).rssKiB);
    }
    const [, keptOpen, closed] = (await held).map(Number);
    lines.drain();
    const { peakKiB } = await readMemory(running);
    await assertAlive(running, "idle hold");
    const [, open, failed, openingMs] = opened.map(Number);
    console.error(`idle client: ${open} opened in ${openingMs} ms, ${failed} failed`);
    return {
      requestsPerSec: NaN,
      mibPerSec: NaN,
      p99Ms: NaN,
      errors: failed + closed,
      peakRssKiB: peakKiB,
      idle: {
        connections: options.idleConnections,
        opened: open,
        keptOpen,
        rssBeforeKiB: before.rssKiB,
        rssHeldKiB,
      },
    };
  } finally {
    if (client !== undefined) await stopProcess(client);
  }
}
