/**
 * Redis key layout. With the default prefix `em:`:
 *
 *     em:{u:<userId>}:lock    string, the lock holder's token, with a TTL
 *     em:{u:<userId>}:fence   integer, the user's fencing counter, with an idle TTL
 *     em:{u:<userId>}:state   string, the user's serialized engine state, with an idle TTL
 *     em:deadlines            sorted set, member userId, score = next deadline in ms,
 *                             or -(t + 1) while a sweeper's claim made at time t is in force,
 *                             and the member `complete:<run_id>` at +inf once the set was
 *                             seeded while the Redis server with that INFO run_id ran,
 *                             or `complete` alone where INFO has no run_id or is denied
 *     em:counter:<key>        integer, a rate-limit window counter, with a TTL
 *
 * Every lock acquisition of the user resets the idle TTL of its fence and
 * state (USER_STATE_IDLE_TTL_SECONDS), and every save of the state resets
 * that of the state. Neither key is needed after it expires, because a
 * missing state is rebuilt from PostgreSQL and a new fence starts at the
 * Redis time in ms (see acquireUserLockScript in scripts.ts).
 *
 * `{u:<userId>}` is a Redis Cluster hash tag: the cluster hashes only the text
 * between the braces, so all keys of one user share a slot and one Lua script
 * may touch several of them. A user id that itself contains `}` ends the tag
 * early, but at the same place in each of that user's keys, so they still
 * share a slot. Every script touches keys of one slot only: one user's keys,
 * the deadline set alone, or one counter alone.
 */

/** Maximum length of a caller-supplied counter key. */
export const MAX_COUNTER_KEY_LENGTH = 512;

export interface StoreKeys {
  userLock(userId: string): string;
  userFence(userId: string): string;
  userState(userId: string): string;
  deadlines(): string;
  counter(key: string): string;
  /** SCAN pattern that matches every key under the prefix and nothing else. */
  scanPattern(): string;
}

/** Builds the key names for `prefix`, which must be non-empty and free of braces. */
export function createStoreKeys(prefix: string): StoreKeys {
  if (prefix === '') {
    throw new RangeError('The Redis key prefix is empty. Give a non-empty prefix such as "em:".');
  }
  if (/[{}]/.test(prefix)) {
    throw new RangeError(
      `The Redis key prefix is "${prefix}", but it must not contain "{" or "}" because they change Redis Cluster hash slots.`,
    );
  }

  const userTag = (userId: string): string => {
    checkUserId(userId);
    return `${prefix}{u:${userId}}`;
  };

  return {
    userLock: (userId) => `${userTag(userId)}:lock`,
    userFence: (userId) => `${userTag(userId)}:fence`,
    userState: (userId) => `${userTag(userId)}:state`,
    deadlines: () => `${prefix}deadlines`,
    counter: (key) => {
      checkCounterKey(key);
      return `${prefix}counter:${key}`;
    },
    scanPattern: () => `${escapeGlob(prefix)}*`,
  };
}

export function checkUserId(userId: string): void {
  if (typeof userId !== 'string' || userId === '') {
    throw new TypeError('The user id must be a non-empty string.');
  }
}

export function checkCounterKey(key: string): void {
  if (typeof key !== 'string' || key === '' || key.length > MAX_COUNTER_KEY_LENGTH) {
    throw new TypeError(
      `The counter key must be a string of 1 to ${MAX_COUNTER_KEY_LENGTH} characters. Hash user input before using it as a key.`,
    );
  }
}

/** Escapes the characters that Redis glob patterns treat specially. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\^]/g, (character) => `\\${character}`);
}
