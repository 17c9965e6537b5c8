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
