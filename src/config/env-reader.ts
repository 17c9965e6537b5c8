import type { ConfigIssue } from './errors.js';
import { redactUrlPassword } from './redact.js';

export type Environment = Readonly<Record<string, string | undefined>>;

/**
 * Typed reads of environment variables. An invalid value is recorded as an
 * issue and the read returns the default, so one pass finds every problem.
 * A variable set to an empty or blank string counts as unset.
 */
export class EnvReader {
  readonly issues: ConfigIssue[] = [];
  private readonly env: Environment;

  constructor(env: Environment) {
    this.env = env;
  }

  /**
   * Returns the trimmed value, or undefined when the variable is unset or
   * blank. With `trim: false` the value keeps its surrounding spaces, as a
   * password must.
   */
  raw(variable: string, { trim = true } = {}): string | undefined {
    const value = this.env[variable];
    if (value === undefined || value.trim() === '') {
      return undefined;
    }
    return trim ? value.trim() : value;
  }

  fail(variable: string, message: string): void {
    this.issues.push({ variable, message });
  }

  string(variable: string, defaultValue: string, maxLength = 1024): string {
    const value = this.raw(variable);
    if (value === undefined) {
      return defaultValue;
    }
    if (value.length > maxLength) {
      this.fail(
        variable,
        `${variable} is ${value.length} characters long, but it must be at most ${maxLength} characters.`,
      );
      return defaultValue;
    }
    return value;
  }

  /** Reads a whole number in `[min, max]`. */
  integer(variable: string, defaultValue: number, min: number, max: number): number {
    const value = this.raw(variable);
    if (value === undefined) {
      return defaultValue;
    }

    const parsed = /^-?\d+$/.test(value) ? Number(value) : Number.NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      this.fail(
        variable,
        `${variable} is "${value}", but it must be an integer from ${min} to ${max} (default ${defaultValue}).`,
      );
      return defaultValue;
    }
    return parsed;
  }

  oneOf<T extends string>(variable: string, defaultValue: T, allowed: readonly T[]): T {
    const value = this.raw(variable);
    if (value === undefined) {
      return defaultValue;
    }

    const match = allowed.find((candidate) => candidate === value);
    if (match === undefined) {
      this.fail(
        variable,
        `${variable} is "${value}", but it must be one of: ${allowed.join(', ')} (default ${defaultValue}).`,
      );
      return defaultValue;
    }
    return match;
  }

  /** Reads `true`/`false` (also `1`/`0`, `yes`/`no`, any case). */
  boolean(variable: string, defaultValue: boolean): boolean {
    const value = this.raw(variable);
    if (value === undefined) {
      return defaultValue;
    }

    const lower = value.toLowerCase();
    if (lower === 'true' || lower === '1' || lower === 'yes') {
      return true;
    }
    if (lower === 'false' || lower === '0' || lower === 'no') {
      return false;
    }
    this.fail(variable, `${variable} is "${value}", but it must be true or false, also written 1 or 0 or yes or no (default ${defaultValue}).`);
    return defaultValue;
  }

  /**
   * Reads an optional URL whose scheme is one of `schemes` (without the colon).
   * Messages show the URL with its password masked.
   */
  url(variable: string, schemes: readonly string[]): string | null {
    const value = this.raw(variable);
    if (value === undefined) {
      return null;
    }

    let parsed: URL;
    try {
      parsed = new URL(value);
    } catch {
      this.fail(variable, `${variable} is "${redactUrlPassword(value)}", which is not a valid URL.`);
      return null;
    }

    const scheme = parsed.protocol.replace(/:$/, '');
    if (!schemes.includes(scheme)) {
      const accepted = schemes.map((name) => `${name}://`).join(' or ');
      this.fail(
        variable,
        `${variable} is "${redactUrlPassword(value)}", but it must start with ${accepted}.`,
      );
      return null;
    }
    return value;
  }

  /**
   * Reads an optional secret of at least `minBytes` bytes in UTF-8. Messages
   * give only its length, never the value.
   */
  secret(variable: string, minBytes: number): string | null {
    const value = this.raw(variable);
    if (value === undefined) {
      return null;
    }

    const bytes = Buffer.byteLength(value, 'utf8');
    if (bytes < minBytes) {
      this.fail(
        variable,
        `${variable} is ${bytes} bytes long, but it must be at least ${minBytes} bytes. ` +
          'Generate one with: openssl rand -base64 48',
      );
      return null;
    }
    return value;
  }
}
