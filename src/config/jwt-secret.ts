import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';

import type { Logger } from 'pino';

import { ConfigError, dataDirError } from './errors.js';
import type { Config } from './types.js';

/** Name of the file under DATA_DIR that stores the generated JWT secret. */
export const JWT_SECRET_FILE_NAME = 'jwt-secret';

/** Minimum length of a JWT signing secret: 256 bits, the HS256 key size. */
export const MIN_JWT_SECRET_BYTES = 32;

const GENERATED_SECRET_BYTES = 32;

/**
 * Returns JWT_SECRET when it is set. Otherwise reads `DATA_DIR/jwt-secret`, or
 * creates it with 32 random bytes (base64url, file mode 0600) on the first
 * start, and logs a warning that a generated secret is in use. The secret
 * itself is never logged.
 *
 * Concurrent first starts are safe: the file appears atomically through a hard
 * link, and a process that loses the race reads the winner's secret.
 *
 * @throws ConfigError when the file exists but contains fewer than 32 bytes,
 * or when DATA_DIR or the file cannot be read or written.
 */
export async function resolveJwtSecret(
  config: Pick<Config, 'dataDir' | 'auth'>,
  logger: Logger,
): Promise<string> {
  if (config.auth.jwtSecret !== null) {
    return config.auth.jwtSecret;
  }

  const file = path.join(config.dataDir, JWT_SECRET_FILE_NAME);
  let secret: string | null;
  let created = false;
  try {
    secret = await readSecretFile(file);
    if (secret === null) {
      secret = await createSecretFile(config.dataDir, file);
      created = true;
    }
  } catch (error) {
    // A file system error, such as ENOTDIR or EACCES, means DATA_DIR is
    // unusable. The message names DATA_DIR, and JWT_SECRET avoids the file.
    if (isErrnoException(error)) {
      throw dataDirError(config.dataDir, file, error);
    }
    throw error;
  }

  logger.warn(
    { file, created },
    'JWT_SECRET is not set, so tokens are signed with the generated secret in this file. ' +
      'Set JWT_SECRET when several processes must accept the same tokens.',
  );
  await warnIfReadableByOthers(file, logger);
  return secret;
}

/** Reads and validates the secret file, or returns null when it does not exist. */
async function readSecretFile(file: string): Promise<string | null> {
  let content: string;
  try {
    content = await fs.readFile(file, 'utf8');
  } catch (error) {
    if (isErrnoException(error) && error.code === 'ENOENT') {
      return null;
    }
    throw error;
  }

  const secret = content.trim();
  const bytes = Buffer.byteLength(secret, 'utf8');
  if (bytes < MIN_JWT_SECRET_BYTES) {
    throw new ConfigError([
      {
        variable: 'JWT_SECRET',
        message:
          `JWT_SECRET is not set and the generated secret in ${file} is ${bytes} bytes long, ` +
          `but it must be at least ${MIN_JWT_SECRET_BYTES} bytes. Delete the file to generate a new one, or set JWT_SECRET.`,
      },
    ]);
  }
  return secret;
}

async function createSecretFile(dataDir: string, file: string): Promise<string> {
  await fs.mkdir(dataDir, { recursive: true, mode: 0o700 });

  const secret = randomBytes(GENERATED_SECRET_BYTES).toString('base64url');
  const temporaryFile = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;

  try {
    await fs.writeFile(temporaryFile, `${secret}\n`, { mode: 0o600, flag: 'wx' });

    // link() fails with EEXIST instead of replacing the target, so a secret
    // that another process created first is never overwritten.
    try {
      await fs.link(temporaryFile, file);
      return secret;
    } catch (error) {
      if (!(isErrnoException(error) && error.code === 'EEXIST')) {
        throw error;
      }
    }
  } finally {
    await fs.rm(temporaryFile, { force: true });
  }

  const winner = await readSecretFile(file);
  if (winner === null) {
    throw new Error(`Internal error: ${file} existed during link() but could not be read afterwards.`);
  }
  return winner;
}

async function warnIfReadableByOthers(file: string, logger: Logger): Promise<void> {
  const { mode } = await fs.stat(file);
  if ((mode & 0o077) !== 0) {
    logger.warn(
      { file, mode: `0${(mode & 0o777).toString(8)}` },
      'The generated JWT secret file is accessible to other users. Restrict it with: chmod 600',
    );
  }
}

function isErrnoException(error: unknown): error is NodeJS.ErrnoException {
  return error instanceof Error && 'code' in error;
}
