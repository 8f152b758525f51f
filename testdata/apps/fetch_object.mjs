// An app in the `deno serve` shape: an object with a fetch method, which is
// called with the object as `this`.

export default {
  greeting: "Hello from an object",
  fetch(request) {
    return new Response(`${this.greeting} at ${new URL(request.url).pathname}\n`, {
      headers: { "content-type": "text/plain; charset=utf-8", "x-app": "fetch-object" },
    });
  },
};
