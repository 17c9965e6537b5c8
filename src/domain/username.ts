/**
 * Account names: 1 to 64 ASCII letters, digits or `_ . @ -`, starting with a
 * letter or digit. Logins match them without regard to case.
 */
export const USERNAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$/;

/** Returns why `username` is not a valid account name, or null when it is. */
export function usernameProblem(username: string): string | null {
  if (USERNAME_PATTERN.test(username)) {
    return null;
  }
  return `username ${JSON.stringify(username.slice(0, 80))} is invalid: use 1 to 64 ASCII letters, digits or _ . @ -, starting with a letter or digit`;
}
