// An app whose default export is a plain fetch handler: (request, info) => Response.

export default async function handler(request, info) {
  const body = request.method === "POST" ? await request.text() : null;
  return Response.json({
    method: request.method,
    path: new URL(request.url).pathname,
    body,
    client: info.remoteAddr.hostname,
  });
}
