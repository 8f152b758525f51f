// The Hono app of hono_app.mjs in TypeScript, for runtimes that import
// TypeScript (Deno, Bun): typed path parameters and JSON bodies.

import { Hono } from "hono";
import { stream } from "hono/streaming";

interface Echo {
  received: unknown;
}

const app = new Hono();

app.use("*", async (c, next) => {
  await next();
  c.header("x-middleware", "hono");
});

app.get("/", (c) => c.text("Hello from Hono"));

app.get("/users/:id", (c) => {
  const id: string = c.req.param("id");
  return c.json({ id, lang: c.req.query("lang") ?? "en" });
});

app.post("/echo", async (c) => c.json<Echo>({ received: await c.req.json() }, 201));

let release: () => void = () => {};
const released = new Promise<void>((resolve) => release = resolve);

app.get("/stream", (c) =>
  stream(c, async (out) => {
    await out.write("first\n");
    await released;
    await out.write("second\n");
  }));

app.get("/release", (c) => {
  release();
  return c.text("released");
});

export default app;
