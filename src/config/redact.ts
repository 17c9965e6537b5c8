/**
 * Replaces the password in a connection URL with `***`, so the URL can go into
 * logs and error messages. It also handles strings that `URL` cannot parse.
 */
export function redactUrlPassword(url: string): string {
  try {
    const parsed = new URL(url);
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
  return url.replace(/\/\/(.*)@/s, (match, userInfo: string) => {
    const colon = userInfo.indexOf(':');
    return colon < 0 ? match : `//${userInfo.slice(0, colon)}:***@`;
  });
}
