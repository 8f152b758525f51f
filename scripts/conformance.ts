/**
 * Runs the RFC 9112 conformance corpus in `../shared/conformance/` against
 * brick: serves the corpus's echo app on a loopback port and runs its runner.
 *
 * ```sh
 * deno task conformance                 # brick on Deno, every public case
 * deno task conformance --node          # brick's npm build (npm/) on Node
 * deno task conformance --only chunked  # other arguments go to run.py
 * ```
 *
 * The corpus sits beside the project in CI and on the developers' machines,
 * not on a user's: without it this script says so and exits 0.
 *
 * @module
 */

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";
import { serve } from "../mod.ts";

const corpus = fileURLToPath(new URL("../../shared/conformance/", import.meta.url));
const npmBuild = fileURLToPath(new URL("../npm/mod.js", import.meta.url));

if (import.meta.main) {
  if (!existsSync(corpus + "run.py")) {
    console.log(`Skipping conformance: no corpus at ${corpus}`);
    Deno.exit(0);
  }
  const onNode = Deno.args.includes("--node");
  const runnerArgs = Deno.args.filter((arg) => arg !== "--node");
  Deno.exit(await (onNode ? runOnNode(runnerArgs) : runOnDeno(runnerArgs)));
}

/** Serves the echo app with brick in this process and runs the corpus against it. */
async function runOnDeno(runnerArgs: string[]): Promise<number> {
  const { echo } = await import(corpus + "echo_app.ts");
  let server: ReturnType<typeof serve> | undefined;
  const port = await new Promise<number>((resolve) => {
    server = serve(
      { port: 0, hostname: "127.0.0.1", onListen: (addr) => resolve(addr.port) },
      echo,
    );
  });
  try {
    console.log("brick on Deno " + Deno.version.deno);
    return await runRunner(port, runnerArgs);
  } finally {
    await server?.shutdown();
  }
}

/**
 * Serves the echo app with the npm build on Node (the echo app is transpiled,
 * Node 20 cannot run TypeScript) and runs the corpus against it.
 */
async function runOnNode(runnerArgs: string[]): Promise<number> {
  if (!existsSync(npmBuild)) {
    console.error("No npm build: run `deno task build:npm` first");
    return 1;
  }
  const dir = await mkdtemp(join(tmpdir(), "brick-conformance-"));
  const echo = ts.transpileModule(await Deno.readTextFile(corpus + "echo_app.ts"), {
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext },
  });
  await writeFile(join(dir, "echo_app.mjs"), echo.outputText);
  await writeFile(
    join(dir, "serve.mjs"),
    `import { serve } from ${JSON.stringify(npmBuild)};\n` +
      `import { echo } from "./echo_app.mjs";\n` +
      `serve({ port: 0, hostname: "127.0.0.1", onListen: (a) => console.log("PORT " + a.port) }, echo);\n` +
      `process.on("SIGTERM", () => process.exit(0));\n`,
  );
  const node = spawn("node", [join(dir, "serve.mjs")], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const port = await portPrintedBy(node);
    console.log("brick on Node " + (await nodeVersion()));
    return await runRunner(port, runnerArgs);
  } finally {
    node.kill("SIGTERM");
    await rm(dir, { recursive: true, force: true });
  }
}

function portPrintedBy(child: ReturnType<typeof spawn>): Promise<number> {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout!.on("data", (chunk: Uint8Array) => {
      out += new TextDecoder().decode(chunk);
      const match = out.match(/PORT (\d+)/);
      if (match) resolve(Number(match[1]));
    });
    child.on(
      "exit",
      (code) => reject(new Error(`The Node server exited (${code}) before it listened`)),
    );
  });
}

function nodeVersion(): Promise<string> {
  return new Promise((resolve) => {
    const child = spawn("node", ["--version"], { stdio: ["ignore", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (chunk: Uint8Array) => out += new TextDecoder().decode(chunk));
    child.on("exit", () => resolve(out.trim()));
  });
}

function runRunner(port: number, extraArgs: string[]): Promise<number> {
  const args = [
    corpus + "run.py",
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--cases",
    corpus + "public",
    "--strict",
    ...extraArgs,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn("python3", args, { stdio: "inherit" });
    child.on(
      "error",
      (error) =>
        reject(new Error(`Cannot run python3 for the conformance runner: ${error.message}`)),
    );
    child.on("exit", (code) => resolve(code ?? 1));
  });
}
