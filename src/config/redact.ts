/**
 * Query parameters that carry a password: `pg` 8 reads `password` and
 * `sslpassword` from a PostgreSQL URL's query, and ioredis 6 reads `password`
 * from a Redis URL's query, as they read the user-info part.
 */
const PASSWORD_PARAMETER = /^(ssl)?password$/i;

/**
 * Replaces the password in a connection URL with `***`, so the URL can go into
 * logs and error messages: the one in the user-info part and the values of
 * `password` and `sslpassword` query parameters. It also handles strings that
 * `URL` cannot parse.
 */
export function redactUrlPassword(url: string): string {
  const masked = redactQueryPasswords(url);
  try {
    const parsed = new URL(masked);
    if (parsed.password !== '') {
      parsed.password = '***';
      return parsed.toString();
    }
  } catch {
    // Not a parsable URL: masked below.
  }
  // Mask everything between "//user:" and the last "@", because a password
  // may itself contain "@" or "/". A "/" in the password also makes URL read
  // "user:pass" as host and port, with no password, so this runs then too.
  return masked.replace(/\/\/(.*)@/s, (match, userInfo: string) => {
    const colon = userInfo.indexOf(':');
    return colon < 0 ? match : `//${userInfo.slice(0, colon)}:***@`;
  });
}

/**
 * Masks the values of password query parameters in the raw string, without
 * reserializing the rest. Keys are compared after percent-decoding, as the
 * clients decode them.
 */
function redactQueryPasswords(url: string): string {
  const queryStart = url.indexOf('?');
  if (queryStart < 0) {
    return url;
  }
  const fragmentStart = url.indexOf('#', queryStart);
  const queryEnd = fragmentStart < 0 ? url.length : fragmentStart;
  const parameters = url.slice(queryStart + 1, queryEnd).split('&');
  const maskedParameters = parameters.map((parameter) => {
    const equals = parameter.indexOf('=');
    const key = equals < 0 ? parameter : parameter.slice(0, equals);
    return PASSWORD_PARAMETER.test(decodeQueryKey(key)) ? `${key}=***` : parameter;
  });
  return url.slice(0, queryStart + 1) + maskedParameters.join('&') + url.slice(queryEnd);
}

function decodeQueryKey(key: string): string {
  try {
    return decodeURIComponent(key.replace(/\+/g, ' '));
  } catch {
    return key;
  }
}
