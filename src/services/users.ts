/**
 * Accounts: creation, login and the first admin.
 */
import { createHmac, randomBytes, randomUUID } from 'node:crypto';

import type { Logger } from 'pino';

import { LoginRateLimitedError, type LoginRateLimiter } from '../auth/rate-limit.js';
import { MAX_PASSWORD_BYTES, hashPassword, needsRehash, verifyDummyPassword, verifyPassword } from '../auth/password.js';
import { invalidTokenError, type TokenService } from '../auth/tokens.js';
import { ConfigError } from '../config/errors.js';
import type { Viewer } from '../auth/viewer.js';
import { DomainError, badInput } from '../domain/errors.js';
import { firstCharacters, UNPAIRED_SURROGATE } from '../domain/storable.js';
import type { PrismaClient } from '../storage/postgres/generated/client.js';
import { PREPARED, type SqlClient } from '../storage/postgres/sql.js';
import type { Role, UserRecord } from '../storage/postgres/records.js';
import { USER_ID_HINT, isUuid } from '../domain/user-id.js';
import { usernameProblem } from '../domain/username.js';
import { ConcurrencyLimit } from './concurrency.js';

export { USERNAME_PATTERN } from '../domain/username.js';
export const PASSWORD_MIN_LENGTH = 8;
/**
 * Key of the digests that failed logins log for unknown usernames, new per
 * process. Equal digests within one process mark repeated attempts, and
 * without the key a dictionary of likely passwords cannot be checked
 * against them.
 */
const USERNAME_DIGEST_KEY = randomBytes(32);
/** Maximum length of a password in UTF-8 bytes, after NFC normalisation. */
export const PASSWORD_MAX_LENGTH = MAX_PASSWORD_BYTES;

/**
 * Returns the reason a new password is rejected, or null. Length counts
 * characters (code points) towards the minimum and UTF-8 bytes towards the
 * maximum, as the hash does. An unpaired surrogate would be hashed as U+FFFD,
 * so another password would log in too.
 */
function newPasswordProblem(password: string): string | null {
  if (UNPAIRED_SURROGATE.test(password)) {
    return 'password contains an unpaired UTF-16 surrogate, which is not valid Unicode';
  }
  const characters = [...password].length;
  if (characters < PASSWORD_MIN_LENGTH) {
    return `password has ${characters} ${characters === 1 ? 'character' : 'characters'}; it must have at least ${PASSWORD_MIN_LENGTH}`;
  }
  if (password.trim() === '') {
    return 'password has only white space; it must have other characters too';
  }
  const bytes = Buffer.byteLength(password.normalize('NFC'), 'utf8');
  if (bytes > PASSWORD_MAX_LENGTH) {
    return `password is ${bytes} bytes long in UTF-8; it must be at most ${PASSWORD_MAX_LENGTH} bytes`;
  }
  return null;
}
const ROLES: readonly Role[] = ['MEMBER', 'ANALYST', 'ADMIN'];

/** Returns every reason that a new account with these values is rejected, or an empty list. */
function newUserProblems(input: { username: string; password: string; role: string }): string[] {
  const problems: string[] = [];
  const nameProblem = usernameProblem(input.username);
  if (nameProblem !== null) {
    problems.push(nameProblem);
  }
  const passwordProblem = newPasswordProblem(input.password);
  if (passwordProblem !== null) {
    problems.push(passwordProblem);
  }
  if (!ROLES.includes(input.role as Role)) {
    problems.push(`role ${JSON.stringify(input.role)} is invalid: use one of ${ROLES.join(', ')}`);
  }
  return problems;
}

/** The stored columns of an account that a login reads, password hash included. */
interface StoredAccount {
  id: string;
  username: string;
  role: string;
  passwordHash: string;
  createdAt: Date;
  disabledAt: Date | null;
  tokenVersion: number;
}

export interface LoginResult {
  token: string;
  expiresAt: Date;
  user: UserRecord;
}

export interface UserServiceOptions {
  prisma: PrismaClient;
  tokens: TokenService;
  rateLimiter: LoginRateLimiter;
  passwordScryptLog2N: number;
  logger: Logger;
  /** Optional SQL client for the read on every authenticated request. */
  sql?: SqlClient;
  /** JWT_MAX_SESSION_SECONDS: how long after a password login `renew` still issues tokens. */
  maxSessionSeconds?: number;
  /** Current time in ms since the epoch, the token service's clock. */
  now?: () => number;
}

export function toUserRecord(row: {
  id: string;
  username: string;
  role: string;
  createdAt: Date;
  disabledAt?: Date | null;
  tokenVersion?: number;
}): UserRecord {
  return {
    id: row.id,
    username: row.username,
    role: row.role as Role,
    createdAt: row.createdAt,
    disabledAt: row.disabledAt ?? null,
    tokenVersion: row.tokenVersion ?? 0,
  };
}

/**
 * Maximum number of password hashes running at once. Each scrypt call at
 * N=2^17 uses 128 MiB and one of libuv's four default threads, so unbounded
 * concurrent logins would starve file and DNS work that shares those threads.
 */
export const MAX_CONCURRENT_PASSWORD_HASHES = 2;

/**
 * Tells whether a token that carries `tokenVersion` still acts for `user`:
 * the account exists and is enabled, and no password change or disabling
 * has revoked the token since it was issued.
 */
export function acceptsToken(user: UserRecord | null, tokenVersion: number): user is UserRecord {
  return user !== null && user.disabledAt === null && user.tokenVersion === tokenVersion;
}

/** Key of the advisory lock that serialises account updates made by admins through the API. */
const ADMIN_UPDATE_LOCK_KEY = 72707370;

/** Key of the advisory lock under which a starting process checks that no users exist and creates the first admin. */
const ADMIN_BOOTSTRAP_LOCK_KEY = 72707372;

type UserUpdateData = { role?: Role; passwordHash?: string; disabledAt?: Date | null; tokenVersion?: { increment: number } };

/**
 * Checks, under the admin update lock, that the viewer is still an enabled
 * admin. Its role was read when the request began, but another
 * admin's update may have demoted or disabled it since. Since an admin may
 * not demote or disable itself, every committed update that removes an
 * admin was made by another enabled admin, so one always remains.
 */
async function checkStillAdmin(tx: Pick<PrismaClient, 'user'>, viewerId: string): Promise<void> {
  const viewer = await tx.user.findUnique({ where: { id: viewerId }, select: { role: true, disabledAt: true } });
  if (viewer === null || viewer.role !== 'ADMIN' || viewer.disabledAt !== null) {
    throw new DomainError(
      'FORBIDDEN',
      'ROLE_REQUIRED',
      'Updating users requires an enabled account with the role ADMIN, and another admin has just demoted or disabled this one.',
      { requiredRoles: ['ADMIN'], role: viewer?.role ?? null },
    );
  }
}

export class UserService {
  private readonly hashing = new ConcurrencyLimit(MAX_CONCURRENT_PASSWORD_HASHES);

  constructor(private readonly options: UserServiceOptions) {}

  /**
   * Changes another user's role or password, or disables or enables the
   * account, for an admin. A disabled account's tokens stop working at its
   * next request and its logins fail as a wrong password does. An admin may
   * not disable itself or change its own role, so that the last admin cannot
   * lock everyone out. A null `viewer` is an operator on the command line,
   * who may change any account, as recovery from a lost admin password needs.
   */
  async update(
    viewer: Viewer | null,
    input: { id: string; role?: string | null; password?: string | null; disabled?: boolean | null },
  ): Promise<UserRecord> {
    const id = input.id.toLowerCase();
    const problems: string[] = [];
    if (input.role !== undefined && input.role !== null && !ROLES.includes(input.role as Role)) {
      problems.push(`role ${JSON.stringify(input.role)} is invalid: use one of ${ROLES.join(', ')}`);
    }
    const passwordProblem = input.password === undefined || input.password === null ? null : newPasswordProblem(input.password);
    if (passwordProblem !== null) {
      problems.push(passwordProblem);
    }
    if (
      viewer !== null &&
      id === viewer.userId.toLowerCase() &&
      ((input.disabled ?? false) || (input.role != null && input.role !== viewer.role))
    ) {
      problems.push('an admin may not disable itself or change its own role; ask another admin');
    }
    if (problems.length > 0) {
      throw badInput('INVALID_USER', `Invalid user update: ${problems.join('; ')}.`, { problems });
    }
    const current = isUuid(id) ? await this.findById(id) : null;
    if (current === null) {
      const hint = isUuid(id) ? '' : ` ${USER_ID_HINT}`;
      throw badInput('USER_NOT_FOUND', `User id ${JSON.stringify(firstCharacters(input.id, 64))} not found.${hint}`, { userId: firstCharacters(input.id, 64) });
    }

    const data: UserUpdateData = {};
    if (input.role !== undefined && input.role !== null) {
      data.role = input.role as Role;
    }
    if (input.password !== undefined && input.password !== null) {
      const password = input.password;
      data.passwordHash = await this.hashing.run(() => hashPassword(password, { log2N: this.options.passwordScryptLog2N }));
    }
    if (input.disabled !== undefined && input.disabled !== null) {
      data.disabledAt = input.disabled ? (current.disabledAt ?? new Date(this.options.now?.() ?? Date.now())) : null;
    }
    // A new password or disabling ends every session: tokens issued before
    // carry the old version, so enabling the account again does not revive
    // them. Disabling increments it even when `current` shows the account
    // disabled, because an enable may have committed since that read.
    if (data.passwordHash !== undefined || input.disabled === true) {
      data.tokenVersion = { increment: 1 };
    }
    const row =
      viewer === null
        ? await this.options.prisma.user.update({ where: { id }, data })
        : await this.options.prisma.$transaction(async (tx) => {
            // Admin updates take turns, so two admins who demote or disable
            // each other at once cannot both pass the check below.
            await tx.$executeRaw`SELECT pg_advisory_xact_lock(${ADMIN_UPDATE_LOCK_KEY}::bigint)`;
            await checkStillAdmin(tx, viewer.userId.toLowerCase());
            return tx.user.update({ where: { id }, data });
          });
    this.options.logger.info(
      {
        userId: id,
        by: viewer === null ? 'command line' : viewer.userId,
        role: data.role,
        passwordChanged: data.passwordHash !== undefined,
        disabled: row.disabledAt !== null,
      },
      'user updated',
    );
    return toUserRecord(row);
  }

  /**
   * Changes the viewer's own password after checking the current one. It
   * counts against the login limits like a login, because it also reveals
   * whether a password is right.
   */
  async changePassword(viewer: Viewer, currentPassword: string, newPassword: string, clientAddress: string): Promise<boolean> {
    const user = await this.options.prisma.user.findUnique({ where: { id: viewer.userId } });
    if (user === null || user.disabledAt !== null) {
      throw invalidTokenError();
    }
    const problem = newPasswordProblem(newPassword);
    if (problem !== null) {
      throw badInput('INVALID_PASSWORD', `The new password is invalid: ${problem}.`);
    }
    const valid = await this.checkUnderLimits(
      user.username,
      clientAddress,
      () => this.hashing.run(() => this.verifyStored(currentPassword, user.id, user.passwordHash)),
      { operation: 'changePassword', account: user },
    ).catch((error: unknown) => {
      // The limiter's error is UNAUTHENTICATED, on which clients drop their
      // token, and this caller's token is valid.
      if (error instanceof DomainError && error.reason === 'RATE_LIMITED') {
        throw new DomainError(
          'BAD_USER_INPUT',
          'RATE_LIMITED',
          `Too many password checks for this account or from this address, as with logins: ` +
            `try again in ${String(error.details.retryAfterSeconds)} seconds. The password was not changed.`,
          error.details,
        );
      }
      throw error;
    });
    if (!valid) {
      // An input error, not UNAUTHENTICATED: the token is valid, and clients
      // drop their token on a 401.
      throw badInput('INVALID_CREDENTIALS', 'The current password is wrong; the password was not changed.');
    }
    const passwordHash = await this.hashing.run(() => hashPassword(newPassword, { log2N: this.options.passwordScryptLog2N }));
    // Every token issued before, the caller's too, stops working.
    await this.options.prisma.user.update({ where: { id: user.id }, data: { passwordHash, tokenVersion: { increment: 1 } } });
    this.options.logger.info({ userId: user.id }, 'password changed; earlier tokens revoked');
    return true;
  }

  /** Validates and stores a new account. */
  async create(input: { username: string; password: string; role: string }): Promise<UserRecord> {
    const problems = newUserProblems(input);
    if (problems.length > 0) {
      throw badInput('INVALID_USER', `Invalid user: ${problems.join('; ')}.`, { problems });
    }

    // Names that differ only in case name the same account.
    const existing = await this.options.prisma.$queryRaw<Array<{ username: string }>>`
      SELECT username FROM users WHERE lower(username) = lower(${input.username}) LIMIT 1`;
    if (existing[0] !== undefined) {
      const existingName = existing[0].username;
      const detail =
        existingName === input.username
          ? ''
          : ` as ${JSON.stringify(existingName)}, and usernames that differ only in case name the same account`;
      throw badInput('USERNAME_TAKEN', `Username ${JSON.stringify(input.username)} is already taken${detail}.`, {
        username: input.username,
      });
    }

    const passwordHash = await this.hashNewPassword(input.password);
    try {
      const row = await this.options.prisma.user.create({
        data: { id: randomUUID(), username: input.username, role: input.role as Role, passwordHash },
      });
      this.options.logger.info({ userId: row.id, username: row.username, role: row.role }, 'user created');
      return toUserRecord(row);
    } catch (error) {
      if ((error as { code?: string }).code === 'P2002') {
        throw badInput('USERNAME_TAKEN', `Username ${JSON.stringify(input.username)} is already taken.`, {
          username: input.username,
        });
      }
      throw error;
    }
  }

  /**
   * Checks a username and password and issues a token. Unknown users and
   * wrong passwords get the same error after the same amount of hashing work.
   */
  async login(username: string, password: string, clientAddress: string): Promise<LoginResult> {
    const { tokens, logger } = this.options;
    // Filled by the check, which runs inside the limits.
    const attempt: { row: StoredAccount | null; valid: boolean } = { row: null, valid: false };
    const passed = await this.checkUnderLimits(username, clientAddress, async () => {
      // Names that no account can have are not looked up. PostgreSQL rejects a
      // NUL character in a query. Its lower() also maps some non-ASCII
      // letters, such as U+0130, to ASCII ones, so such a name would reach a
      // real account under login limits that count it apart.
      const found = usernameProblem(username) === null ? await this.findAccountByUsername(username) : null;
      attempt.row = found;
      attempt.valid = await this.hashing.run(() =>
        found === null
          ? verifyDummyPassword(password, { log2N: this.options.passwordScryptLog2N })
          : this.verifyStored(password, found.id, found.passwordHash),
      );
      return found !== null && attempt.valid && found.disabledAt === null;
    }, { operation: 'login' });

    const { row, valid } = attempt;
    if (!passed || row === null) {
      const identity = loginIdentity(username, row);
      logger.warn({ ...identity, clientAddress, reason: row === null ? 'unknown user' : valid ? 'disabled account' : 'wrong password' }, 'login failed');
      throw new DomainError('UNAUTHENTICATED', 'INVALID_CREDENTIALS', 'Invalid username or password.');
    }

    await this.upgradeHash(row.id, row.passwordHash, password);
    const user = toUserRecord(row);
    // With JWT_TTL_SECONDS above JWT_MAX_SESSION_SECONDS, the login's token ends with the session, as renewed ones do.
    const loginSeconds = Math.floor((this.options.now?.() ?? Date.now()) / 1000);
    const sessionEndsAt = (loginSeconds + (this.options.maxSessionSeconds ?? 7 * 86_400)) * 1000;
    const issued = await tokens.issue({ id: user.id, role: user.role, tokenVersion: user.tokenVersion }, { notAfter: sessionEndsAt });
    return { token: issued.token, expiresAt: issued.expiresAt, user };
  }

  /**
   * Returns the stored row, password hash included, of the account whose
   * username equals `username` without regard to case, as `findByUsername`
   * compares. The login limits count usernames without regard to case too.
   */
  private async findAccountByUsername(username: string): Promise<StoredAccount | null> {
    // One query, whether or not the account exists, so that the time of a
    // failed login does not tell known usernames from unknown ones. Comparing
    // lower() values keeps `_` and `%` plain characters, which LIKE and
    // ILIKE would treat as wildcards.
    const rows = await this.options.prisma.$queryRaw<StoredAccount[]>`
      SELECT id::text, username, role::text, password_hash AS "passwordHash", created_at AS "createdAt",
             disabled_at AS "disabledAt", token_version AS "tokenVersion"
      FROM users WHERE lower(username) = lower(${username}) ORDER BY username = ${username} DESC LIMIT 1`;
    return rows[0] ?? null;
  }

  /**
   * Runs a password check under the login limits. The attempt counts before
   * `check` runs, a false result counts as a failed login, and a true one
   * clears the username's failures. An error in `check` takes the attempt
   * back, because the credentials were not checked. A rejection by the
   * limits is logged for `operation`, once per limit and window. `account`
   * names the account when the caller has read it.
   */
  private async checkUnderLimits(
    username: string,
    clientAddress: string,
    check: () => Promise<boolean>,
    rejection: { operation: 'login' | 'changePassword'; account?: { id: string; username: string } },
  ): Promise<boolean> {
    const { rateLimiter, logger } = this.options;
    try {
      await rateLimiter.beginAttempt(username, clientAddress);
    } catch (error) {
      if (error instanceof LoginRateLimitedError && error.firstInWindow) {
        await this.logRateLimited(username, clientAddress, error, rejection);
      }
      throw error;
    }
    let passed: boolean;
    try {
      passed = await check();
    } catch (error) {
      await rateLimiter.cancelAttempt(username, clientAddress).catch((cancelError: unknown) => {
        logger.warn({ err: cancelError, clientAddress }, 'failed to take back the count of a login attempt whose credentials were not checked');
      });
      throw error;
    }
    if (passed) {
      await rateLimiter.recordSuccess(username, clientAddress);
    } else {
      await rateLimiter.recordFailure(username, clientAddress);
    }
    return passed;
  }

  /**
   * Logs an attempt that the login limits rejected, naming the account as
   * `login failed` does. Only the first rejection by a limit in its window
   * comes here, so the account lookup runs at most once per window of each
   * username or address limit, and once a second for the limit on running
   * attempts. When the lookup fails, the line names a digest instead.
   */
  private async logRateLimited(
    username: string,
    clientAddress: string,
    error: LoginRateLimitedError,
    { operation, account }: { operation: 'login' | 'changePassword'; account?: { id: string; username: string } },
  ): Promise<void> {
    const { logger } = this.options;
    let found: { id: string; username: string } | null = account ?? null;
    if (account === undefined && usernameProblem(username) === null) {
      found = await this.findAccountByUsername(username).catch((lookupError: unknown) => {
        logger.warn({ err: lookupError, clientAddress }, 'looking up the account of a rate-limited login failed');
        return null;
      });
    }
    logger.warn(
      { ...loginIdentity(username, found), clientAddress, operation, limit: error.limit, retryAfterSeconds: error.retryAfterSeconds },
      'login rejected by the rate limit (logged once per limit and window)',
    );
  }

  /**
   * Rehashes the password of a successful login whose stored hash has other
   * parameters than PASSWORD_SCRYPT_LOG2_N sets. An unknown username is
   * checked against a hash of the configured cost, so an old cost would make
   * the login time tell existing accounts from unknown names. A failure is
   * logged and leaves the old hash in place.
   * NOTE: accounts that do not log in keep their old cost, and their login
   * time differs until they do.
   */
  private async upgradeHash(userId: string, stored: string, password: string): Promise<void> {
    const { prisma, logger, passwordScryptLog2N } = this.options;
    const options = { log2N: passwordScryptLog2N };
    if (!needsRehash(stored, options)) {
      return;
    }
    try {
      const passwordHash = await this.hashing.run(() => hashPassword(password, options));
      // Replaces only the hash just verified, so a password changed meanwhile stays.
      const updated = await prisma.user.updateMany({ where: { id: userId, passwordHash: stored }, data: { passwordHash } });
      if (updated.count === 1) {
        logger.info({ userId, log2N: passwordScryptLog2N }, 'password rehashed with the configured scrypt cost');
      }
    } catch (error) {
      logger.warn({ err: error, userId }, 'rehashing the password failed; the old hash stays');
    }
  }

  /**
   * Issues a new token for the viewer, with its current role, so a client
   * stays signed in without the password. Renewed tokens keep the time of
   * the password login, and none is valid past JWT_MAX_SESSION_SECONDS after it.
   *
   * @throws DomainError UNAUTHENTICATED with reason `SESSION_EXPIRED` once that
   *   time has passed, and `INVALID_TOKEN` for a user that no longer exists.
   */
  async renew(viewer: Viewer): Promise<LoginResult> {
    const now = this.options.now?.() ?? Date.now();
    const maxSessionSeconds = this.options.maxSessionSeconds ?? 7 * 86_400;
    const authTime = viewer.authTime ?? Math.floor(now / 1000);
    const sessionEndsAt = (authTime + maxSessionSeconds) * 1000;
    if (sessionEndsAt <= now) {
      throw new DomainError(
        'UNAUTHENTICATED',
        'SESSION_EXPIRED',
        `The session began with a login at ${new Date(authTime * 1000).toISOString()}, more than JWT_MAX_SESSION_SECONDS (${maxSessionSeconds} s) ago. Log in with the password again.`,
        { authTime: new Date(authTime * 1000).toISOString(), maxSessionSeconds },
      );
    }
    const user = await this.findById(viewer.userId);
    const tokenVersion = viewer.tokenVersion ?? 0;
    if (!acceptsToken(user, tokenVersion)) {
      throw invalidTokenError();
    }
    // The new token carries the presented token's version, not the one just
    // read: a revocation that commits after this read then revokes it too.
    const issued = await this.options.tokens.issue({ id: user.id, role: user.role, tokenVersion }, { authTime, notAfter: sessionEndsAt });
    return { token: issued.token, expiresAt: issued.expiresAt, user };
  }

  /** Verifies against a stored hash; a corrupt hash counts as a failed login and is logged. */
  private async verifyStored(password: string, userId: string, stored: string): Promise<boolean> {
    try {
      return await verifyPassword(password, stored);
    } catch (error) {
      this.options.logger.error({ err: error, userId }, 'stored password hash is unreadable; the user cannot log in until it is reset');
      return false;
    }
  }

  async findById(id: string): Promise<UserRecord | null> {
    const { sql } = this.options;
    if (!isUuid(id)) {
      return null;
    }
    if (sql !== undefined) {
      // Read on every authenticated request, so it skips Prisma's per-query overhead.
      const rows = await sql.query<{
        id: string;
        username: string;
        role: string;
        created_at: Date;
        disabled_at: Date | null;
        token_version: number;
      }>(
        `SELECT id, username, role, created_at, disabled_at, token_version FROM users WHERE id = $1::uuid`,
        [id],
        PREPARED,
      );
      const row = rows[0];
      return row === undefined
        ? null
        : toUserRecord({ ...row, createdAt: row.created_at, disabledAt: row.disabled_at, tokenVersion: row.token_version });
    }
    const row = await this.options.prisma.user.findUnique({ where: { id } });
    return row === null ? null : toUserRecord(row);
  }

  /** Returns the user with this username, compared without regard to case as new usernames are, or null. */
  async findByUsername(username: string): Promise<UserRecord | null> {
    const rows = await this.options.prisma.$queryRaw<Array<{ id: string }>>`
      SELECT id FROM users WHERE lower(username) = lower(${username}) ORDER BY username = ${username} DESC LIMIT 1`;
    return rows[0] === undefined ? null : this.findById(rows[0].id);
  }

  async findByIds(ids: readonly string[]): Promise<UserRecord[]> {
    const rows = await this.options.prisma.user.findMany({ where: { id: { in: [...ids] } } });
    return rows.map(toUserRecord);
  }

  /** Lists every user in username order without regard to case, as usernames are unique. */
  async list(): Promise<UserRecord[]> {
    const rows = await this.options.prisma.user.findMany();
    return rows.map(toUserRecord).sort((a, b) => compareUsernames(a.username, b.username));
  }

  /** Creates the first admin from the environment when the database has no users. */
  async bootstrapAdmin(admin: { username: string; password: string } | null): Promise<void> {
    const count = await this.options.prisma.user.count();
    if (count > 0) {
      if (admin !== null) {
        // Without this line a changed ADMIN_PASSWORD looks applied but is not.
        this.options.logger.info(
          { username: admin.username },
          'ADMIN_USERNAME and ADMIN_PASSWORD are ignored because users exist; they only create the first admin',
        );
      }
      return;
    }
    if (admin === null) {
      this.options.logger.warn(
        'no users exist: create an admin with `npm run user -- create NAME --role ADMIN` or set ADMIN_USERNAME and ADMIN_PASSWORD',
      );
      return;
    }
    const problems = newUserProblems({ ...admin, role: 'ADMIN' });
    if (problems.length > 0) {
      throw adminBootstrapError(problems);
    }

    const passwordHash = await this.hashNewPassword(admin.password);
    // Processes that start on an empty database at once all counted no users
    // above. They take turns under the lock, and each counts again, so only
    // the first one creates its admin, also when their usernames differ.
    const created = await this.options.prisma
      .$transaction(async (tx) => {
        await tx.$executeRaw`SELECT pg_advisory_xact_lock(${ADMIN_BOOTSTRAP_LOCK_KEY}::bigint)`;
        if ((await tx.user.count()) > 0) {
          return null;
        }
        return tx.user.create({ data: { id: randomUUID(), username: admin.username, role: 'ADMIN', passwordHash } });
      })
      .catch((error: unknown) => {
        // `npm run user -- create` does not take the lock, and may have
        // created an account of this name after the count.
        if ((error as { code?: string }).code === 'P2002') {
          return null;
        }
        throw error;
      });
    if (created === null) {
      this.options.logger.info(
        { username: admin.username },
        'ADMIN_USERNAME and ADMIN_PASSWORD are ignored because another process created the first user meanwhile',
      );
      return;
    }
    this.options.logger.info({ userId: created.id, username: created.username }, 'first admin created from ADMIN_USERNAME');
  }

  private async hashNewPassword(password: string): Promise<string> {
    return this.hashing.run(() => hashPassword(password, { log2N: this.options.passwordScryptLog2N }));
  }
}

/**
 * Returns the fields that name the account of a login in the log: the
 * username and id of a known account, and for an unknown username only a
 * digest, because it may be a password typed into the wrong field.
 */
function loginIdentity(
  username: string,
  account: { id: string; username: string } | null,
): { username: string; userId: string } | { usernameDigest: string } {
  if (account === null) {
    return { usernameDigest: createHmac('sha256', USERNAME_DIGEST_KEY).update(username).digest('hex').slice(0, 16) };
  }
  return { username: account.username, userId: account.id };
}

/** Converts the problems of the first admin into a configuration error that names ADMIN_USERNAME or ADMIN_PASSWORD. */
function adminBootstrapError(problems: readonly string[]): ConfigError {
  return new ConfigError(
    problems.map((problem) => {
      const variable = problem.startsWith('password') ? 'ADMIN_PASSWORD' : 'ADMIN_USERNAME';
      return { variable, message: `${variable}: ${problem}.` };
    }),
  );
}

/** Orders usernames without regard to case, which keeps `P149` among the names that start with p. */
export function compareUsernames(a: string, b: string): number {
  const left = a.toLowerCase();
  const right = b.toLowerCase();
  if (left < right) {
    return -1;
  }
  return left > right ? 1 : 0;
}
