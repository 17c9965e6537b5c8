import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import { ConfigError } from './errors.js';

/**
 * Loads `.env` from the working directory into `process.env` when the file
 * exists. Variables already set in the environment win over the file
 * (Node's `process.loadEnvFile` does not overwrite them).
 *
 * @throws ConfigError when `.env` exists but cannot be read, such as a
 * directory or a file without read permission.
 */
export function loadDotEnvFile(directory = process.cwd()): void {
  const file = path.join(directory, '.env');
  if (!existsSync(file)) {
    return;
  }
  try {
    process.loadEnvFile(file);
  } catch (error) {
    // Node 20 reports a directory as "Contents of ... should be a valid
    // string" (a TypeError), which does not say what is wrong.
    const reason = statSync(file).isDirectory()
      ? 'it is a directory'
      : (error instanceof Error ? error.message : String(error)).replace(/\.$/, '');
    throw new ConfigError([
      {
        variable: '.env',
        message: `Reading ${file} failed: ${reason}. Make it a readable file of NAME=value lines, or remove it.`,
      },
    ]);
  }
}
