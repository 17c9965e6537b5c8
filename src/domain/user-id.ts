/**
 * User ids are UUIDs. PostgreSQL accepts them in any letter case, so two
 * spellings of one id must compare equal wherever the service compares them.
 */
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Next step for an error on a value that is not a user id, such as a username. */
export const USER_ID_HINT = "Pass the user's id, which the users query and me return, not the username.";

/** Returns whether `value` is a UUID in its textual form, in any letter case. */
export function isUuid(value: string): boolean {
  return UUID_PATTERN.test(value);
}

/** Returns whether two user ids name the same user. */
export function sameUserId(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}
