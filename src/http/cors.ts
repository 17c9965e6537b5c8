/**
 * Cross-origin requests from browsers (CORS), so that a web front end served
 * from another origin, such as an Apollo Client app on a development server,
 * can call the API. Tokens travel in the Authorization header, never in
 * cookies, so no response allows credentials and a page of another origin
 * cannot act with a token it does not hold.
 */
import type { FastifyInstance } from 'fastify';

/** How long a browser may cache a preflight response, in seconds. */
export const CORS_MAX_AGE_SECONDS = 600;

const ALLOWED_METHODS = 'GET, POST, OPTIONS';
/** Response headers a page may read besides the CORS-safelisted ones. */
const EXPOSED_HEADERS = 'retry-after, www-authenticate, x-request-id';
/** A comma-separated list of HTTP header names (RFC 9110 tokens). */
const HEADER_NAME_LIST = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ \t]*,[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$/;

/**
 * Registers a hook that replies to preflight requests and adds CORS headers
 * to the responses for allowed origins. `origins` is '*' for any origin, a
 * list of exact origins, or an empty list to send no CORS headers at all.
 * A preflight from an origin outside the list gets 403 with a JSON error
 * naming the origin. Other requests from such an origin are served without
 * CORS headers, so the browser keeps their responses from the page. Only
 * origins listed by name get the Private Network Access permission.
 * Same-origin pages, such as the Apollo Sandbox this server serves, need no
 * CORS headers and keep working.
 */
export function registerCors(fastify: FastifyInstance, origins: '*' | readonly string[]): void {
  if (origins !== '*' && origins.length === 0) {
    return;
  }
  const allowed = origins === '*' ? null : new Set(origins);

  fastify.addHook('onRequest', async (request, reply) => {
    if (allowed !== null) {
      // The response depends on the Origin header, so caches must key on it.
      reply.header('vary', 'Origin');
    }
    const origin = request.headers.origin;
    if (typeof origin !== 'string') {
      return;
    }
    const preflight = request.method === 'OPTIONS' && request.headers['access-control-request-method'] !== undefined;
    if (allowed !== null && !allowed.has(origin)) {
      if (!preflight) {
        return;
      }
      request.log.info({ origin }, 'CORS preflight rejected: origin not in CORS_ORIGINS');
      return reply.code(403).send({
        error: {
          code: 'FORBIDDEN',
          reason: 'ORIGIN_NOT_ALLOWED',
          message: `The origin ${origin} is not in CORS_ORIGINS (${[...allowed].join(', ')}), so its pages may not call this API. Add it to CORS_ORIGINS to allow it.`,
          origin,
        },
      });
    }

    reply.header('access-control-allow-origin', allowed === null ? '*' : origin);
    if (!preflight) {
      reply.header('access-control-expose-headers', EXPOSED_HEADERS);
      return;
    }
    reply.header('access-control-allow-methods', ALLOWED_METHODS);
    const requested = request.headers['access-control-request-headers'];
    if (typeof requested === 'string' && HEADER_NAME_LIST.test(requested.trim())) {
      // Every requested header is allowed, because the bearer token is the only
      // credential and a page must hold it to send it.
      reply.header('access-control-allow-headers', requested.trim());
    }
    // Chrome's Private Network Access sends this header in the preflight of a
    // request from a page on a public address to a server on a private or
    // local one, and blocks the request unless the reply allows it. With '*'
    // the permission would let every public site reach a server on a LAN
    // through its visitors' browsers, so only listed origins get it.
    if (allowed !== null && request.headers['access-control-request-private-network'] === 'true') {
      reply.header('access-control-allow-private-network', 'true');
    }
    reply.header('access-control-max-age', String(CORS_MAX_AGE_SECONDS));
    return reply.code(204).send();
  });
}
