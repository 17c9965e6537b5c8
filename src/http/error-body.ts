/**
 * Error bodies that the HTTP layer sends itself, outside Apollo Server and
 * the REST route handlers.
 */

/** Returns the path of a request URL without its query string, which may carry secrets. */
export function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query < 0 ? url : url.slice(0, query);
}

/**
 * Builds the body of an error that the HTTP layer sends itself, such as a
 * body over MAX_BODY_BYTES or with a `__proto__` key. The REST routes send
 * `{ error: fields }`. On /graphql the body has only GraphQL's `errors` list,
 * with the fields other than `message` as the error's `extensions`, because
 * the GraphQL specification (section 7, Response) allows no top-level
 * entries besides `data`, `errors` and `extensions`.
 */
export function errorReplyBody(url: string, fields: { code: string; message: string } & Record<string, unknown>): object {
  if (pathOf(url) !== '/graphql') {
    return { error: fields };
  }
  const { message, ...extensions } = fields;
  return { errors: [{ message, extensions }] };
}
