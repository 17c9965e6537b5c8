/** One invalid environment variable. */
export interface ConfigIssue {
  variable: string;
  /** Human-readable problem, including the value unless the variable is secret. */
  message: string;
}

/**
 * Invalid configuration found at start-up. It lists every invalid variable at
 * once, so one restart is enough to see them all. Messages never contain the
 * values of secret variables.
 */
export class ConfigError extends Error {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    const lines = issues.map((issue) => `- ${issue.message}`);
    super(`Invalid configuration:\n${lines.join('\n')}`);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/**
 * Returns the error for a DATA_DIR that this process cannot use, such as a
 * path that is a file or a directory without write permission. `error` is
 * the file system error met on `file` under it.
 */
export function dataDirError(dataDir: string, file: string, error: unknown): ConfigError {
  const reason = error instanceof Error ? error.message : String(error);
  return new ConfigError([
    {
      variable: 'DATA_DIR',
      message:
        `DATA_DIR is "${dataDir}", but ${file} could not be used: ${reason}. ` +
        'Set DATA_DIR to a directory that this process can create and write to.',
    },
  ]);
}
