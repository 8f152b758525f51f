// An app that can be made to crash: GET /crash answers, then throws from a
// timer, outside any request, where nothing catches the error. That ends the
// process (Node, Bun) or the worker thread (Deno) that serves it.

export default (request) => {
  if (new URL(request.url).pathname === "/crash") {
    setTimeout(() => {
      throw new Error("crash requested by GET /crash");
    }, 20);
    return new Response("crashing\n");
  }
  return new Response("alive\n");
};
