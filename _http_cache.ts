// placeholder, replaced below
export interface CacheOptions {
  maxBytes?: number;
}
export class HttpCache {
  constructor(readonly options: CacheOptions = {}) {}
  handle(request: Request, fetchUpstream: (request: Request) => Promise<Response>): Promise<Response> {
    return fetchUpstream(request);
  }
}
