/**
 * The media type of a GraphQL reply, chosen from the request's Accept header
 * as Apollo Server 5 chooses it, so that errors that the HTTP layer sends on
 * `/graphql` carry the same Content-Type as Apollo Server's own replies.
 * The type matters to clients: Apollo Client 4.3 reads a non-2xx reply as a
 * GraphQL result only when it is `application/graphql-response+json`, and
 * throws a `ServerError` for one in `application/json`.
 */
export const GRAPHQL_RESPONSE_JSON = 'application/graphql-response+json; charset=utf-8';

/** A media range of an Accept header that matches a media type: its quality, specificity and place in the header. */
interface RangeMatch {
  quality: number;
  specificity: number;
  index: number;
}

/**
 * Returns the most specific range of `accept` that matches `type`, and of
 * those the one of highest quality, or null when none matches. Specificity
 * is 2 for `type/subtype`, 1 for `type/*` and 0 for `*\/*`, and the quality
 * is the range's `q`, 1 by default. Parameters other than `q` are ignored.
 */
function bestRange(accept: string, type: string): RangeMatch | null {
  const [mainType, subType] = type.split('/');
  let best: RangeMatch | null = null;
  accept.split(',').forEach((entry, index) => {
    const [range = '', ...parameters] = entry.split(';').map((part) => part.trim().toLowerCase());
    const [rangeMain, rangeSub] = range.split('/');
    let specificity: number;
    if (rangeMain === mainType && rangeSub === subType) {
      specificity = 2;
    } else if (rangeMain === mainType && rangeSub === '*') {
      specificity = 1;
    } else if (rangeMain === '*' && rangeSub === '*') {
      specificity = 0;
    } else {
      return;
    }
    const qualityText = parameters.find((parameter) => parameter.startsWith('q='))?.slice(2);
    const quality = qualityText === undefined ? 1 : Number(qualityText);
    if (!Number.isFinite(quality)) {
      return;
    }
    if (best === null || specificity > best.specificity || (specificity === best.specificity && quality > best.quality)) {
      best = { quality, specificity, index };
    }
  });
  return best;
}

/**
 * Returns whether a request with this Accept header gets its GraphQL replies
 * as `application/graphql-response+json` rather than `application/json`.
 * As in Apollo Server, the higher quality wins, then the more specific
 * range, then the range earlier in the header, and on a full tie, or without
 * an Accept header, `application/json`.
 */
export function prefersGraphQLResponseJson(accept: string | undefined): boolean {
  if (accept === undefined || accept.trim() === '') {
    return false;
  }
  const graphql = bestRange(accept, 'application/graphql-response+json');
  if (graphql === null || graphql.quality <= 0) {
    return false;
  }
  const json = bestRange(accept, 'application/json');
  if (json === null || json.quality <= 0) {
    return true;
  }
  if (graphql.quality !== json.quality) {
    return graphql.quality > json.quality;
  }
  if (graphql.specificity !== json.specificity) {
    return graphql.specificity > json.specificity;
  }
  return graphql.index < json.index;
}

/** Returns the Content-Type of a GraphQL reply to a request with this Accept header. */
export function graphqlReplyType(accept: string | undefined): string {
  return prefersGraphQLResponseJson(accept) ? GRAPHQL_RESPONSE_JSON : 'application/json; charset=utf-8';
}
