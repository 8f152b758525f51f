// A Hono app as users write one, unchanged: routes, path parameters, JSON,
// middleware and a streamed response. main_test.ts serves it with the brick
// CLI on Deno, Node and Bun; hono_app.ts is the same app in TypeScript.

import { Hono } from "hono";
import { stream } from "hono/streaming";

const app = new Hono();

// Middleware: runs around every route and marks the response.
app.use("*", async (c, next) => {
  await next();
  c.header("x-middleware", "hono");
});

app.get("/", (c) => c.text("Hello from Hono"));

app.get("/users/:id", (c) => c.json({ id: c.req.param("id"), lang: c.req.query("lang") ?? "en" }));

app.post("/echo", async (c) => c.json({ received: await c.req.json() }, 201));

// The stream sends "first", then waits until /release is requested, so a
// test can see the first part arrive while the response is still open.
let release = () => {};
const released = new Promise((resolve) => release = resolve);

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
