// An app that loads, serves, and crashes 150 ms after it loaded: every
// worker that runs it ends soon after it starts, again and again.

setTimeout(() => {
  throw new Error("crashing 150 ms after loading");
}, 150);

export default () => new Response("short-lived\n");
