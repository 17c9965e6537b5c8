/**
 * The import summary: counters filled while the import runs, printed as text
 * or JSON at the end.
 */

import type { DeliveryResult } from './deliver.js';
import { escapeControlCharacters } from './escape.js';

/**
 * Something the import reports and skips or flags, with the line it concerns
 * when there is one. An `unsentEvent` issue covers all events of one user
 * and gives the line of the first.
 */
export interface ImportIssue {
  kind: 'badLine' | 'rejectedEvent' | 'unsentEvent' | 'pairTypeConflict' | 'rejectedPairType';
  file: string;
  /** 1-based line number, or null when the issue concerns no single line. */
  line: number | null;
  message: string;
}

export interface ImportSummary {
  files: number;
  /** Non-blank lines read from the files. */
  linesRead: number;
  /** Lines skipped because they were not valid JSON or not a valid record. */
  badLines: number;
  /** Valid event lines. */
  eventsRead: number;
  /**
   * Events sent to the server, each counted once however often it was resent:
   * `stored + duplicates + rejected` once the import has finished.
   */
  eventsSent: number;
  /** Sum of `storedCount`. */
  stored: number;
  /** Sum of `duplicateCount`: events the server already had. */
  duplicates: number;
  /** Events the server rejected as invalid. */
  rejected: number;
  /** Events not sent because their user could not be created. */
  notSent: number;
  /**
   * Corrections stored for the imported users once every event was sent,
   * counted by `CorrectionRule`, whichever import caused them. Corrections
   * that a later batch undid are not counted. Null when the import stopped
   * before it counted them.
   */
  correctionsByRule: Record<string, number> | null;
  /**
   * Client events stored with a flag for the imported users once every
   * event was sent, counted by flag, whichever import stored them. An event
   * with two flags counts under each. LATE_BEYOND_HORIZON events, for
   * example, change no segment. Null when the import stopped before it
   * counted them.
   */
  flaggedByRule: Record<string, number> | null;
  pairTypesDefined: string[];
  /** Pair types that already existed with the same definition. */
  pairTypesExisting: string[];
  /**
   * Pair types that exist with other start or end types, another parent or
   * another auto-close policy, or that the input gives twice differently.
   */
  pairTypeConflicts: string[];
  /** Pair types whose definition the server rejected, for example for an invalid name. */
  pairTypesRejected: string[];
  usersCreated: string[];
  /** `sendEvents` requests, rejected ones included. */
  requests: number;
  /** Retries after network errors or `SERVICE_UNAVAILABLE`. */
  retries: number;
  /** The first `MAX_LISTED_ISSUES` issues. The counters above count all of them. */
  issues: ImportIssue[];
  /** Issues left out of `issues` because the list was full. */
  issuesOmitted: number;
  elapsedSeconds: number;
}

export const MAX_LISTED_ISSUES = 1000;

/**
 * Issues of one kind reported one by one as messages while the import runs.
 * The rest are counted in one message, and the summary lists them up to
 * `MAX_LISTED_ISSUES`.
 */
export const MAX_REPORTED_ISSUES_PER_KIND = 20;

/** Plural nouns of the issue kinds, for the message that counts unreported issues. */
const ISSUE_NOUNS: Readonly<Record<ImportIssue['kind'], string>> = {
  badLine: 'skipped lines',
  rejectedEvent: 'rejected events',
  unsentEvent: 'users whose events were not sent',
  pairTypeConflict: 'pair type conflicts',
  rejectedPairType: 'rejected pair types',
};

export function createSummary(files: number): ImportSummary {
  return {
    files,
    linesRead: 0,
    badLines: 0,
    eventsRead: 0,
    eventsSent: 0,
    stored: 0,
    duplicates: 0,
    rejected: 0,
    notSent: 0,
    correctionsByRule: null,
    flaggedByRule: null,
    pairTypesDefined: [],
    pairTypesExisting: [],
    pairTypeConflicts: [],
    pairTypesRejected: [],
    usersCreated: [],
    requests: 0,
    retries: 0,
    issues: [],
    issuesOmitted: 0,
    elapsedSeconds: 0,
  };
}

/** Adds an issue to the list, or counts it as omitted once the list is full. */
export function addIssue(summary: ImportSummary, issue: ImportIssue): void {
  if (summary.issues.length < MAX_LISTED_ISSUES) {
    summary.issues.push(issue);
  } else {
    summary.issuesOmitted += 1;
  }
}

/**
 * Adds issues to the summary and reports each as a message, up to
 * `MAX_REPORTED_ISSUES_PER_KIND` of each kind, so that a file of thousands
 * of bad lines does not bury the other messages.
 */
export class IssueReporter {
  private readonly reported = new Map<ImportIssue['kind'], number>();
  private readonly unreported = new Map<ImportIssue['kind'], number>();

  constructor(
    private readonly summary: ImportSummary,
    private readonly report: (message: string) => void,
  ) {}

  /**
   * Adds `issue` to the summary. Passes `text`, by default the issue's
   * location and message, to the report callback while fewer than
   * MAX_REPORTED_ISSUES_PER_KIND issues of its kind were passed.
   */
  add(issue: ImportIssue, text = formatIssue(issue)): void {
    addIssue(this.summary, issue);
    const count = this.reported.get(issue.kind) ?? 0;
    if (count < MAX_REPORTED_ISSUES_PER_KIND) {
      this.reported.set(issue.kind, count + 1);
      this.report(text);
    } else {
      this.unreported.set(issue.kind, (this.unreported.get(issue.kind) ?? 0) + 1);
    }
  }

  /** Reports how many issues of each kind were left unreported since the last call. */
  reportUnreported(): void {
    for (const [kind, count] of this.unreported) {
      this.report(
        `${count} more ${ISSUE_NOUNS[kind]} not shown; ` +
          `the --json summary lists the first ${MAX_LISTED_ISSUES} issues with their lines`,
      );
    }
    this.unreported.clear();
  }
}

/** Formats an issue as `FILE:LINE: MESSAGE`, or `FILE: MESSAGE` without a line. */
export function formatIssue(issue: ImportIssue): string {
  const where = issue.line === null ? issue.file : `${issue.file}:${issue.line}`;
  return `${where}: ${issue.message}`;
}

/** Adds the counters of one delivered batch. Its rejected events are issues for an `IssueReporter`. */
export function addDelivery(summary: ImportSummary, delivery: DeliveryResult): void {
  summary.eventsSent += delivery.sent;
  summary.stored += delivery.stored;
  summary.duplicates += delivery.duplicates;
  summary.rejected += delivery.rejected.length;
  summary.requests += delivery.requests;
}

export function formatRejection(eventId: string | null, reason: string, message: string): string {
  const subject = eventId === null ? 'event' : `event ${eventId}`;
  return `${subject} rejected by the server (${reason}): ${message}`;
}

/** Returns true when nothing was skipped, rejected, left unsent or in conflict, as `--strict` requires. */
export function isClean(summary: ImportSummary): boolean {
  return (
    summary.badLines === 0 &&
    summary.rejected === 0 &&
    summary.notSent === 0 &&
    summary.pairTypeConflicts.length === 0 &&
    summary.pairTypesRejected.length === 0
  );
}

/** Formats a count and the names, whose control characters are escaped because names such as rejected pair types come from the input. */
function formatList(names: readonly string[]): string {
  return names.length === 0 ? '0' : `${names.length} (${names.map(escapeControlCharacters).join(', ')})`;
}

/** Formats counts by rule as `RULE count` pairs in rule order, or `none`. */
function formatCounts(counts: Record<string, number>): string {
  const rules = Object.entries(counts).sort(([a], [b]) => a.localeCompare(b));
  return rules.length === 0 ? 'none' : rules.map(([rule, count]) => `${rule} ${count}`).join(', ');
}

/** Formats the summary as aligned text lines for a terminal. */
export function formatSummary(summary: ImportSummary): string {
  const corrections =
    summary.correctionsByRule === null ? 'not counted, because the import stopped' : formatCounts(summary.correctionsByRule);
  const flagged = summary.flaggedByRule === null ? 'not counted, because the import stopped' : formatCounts(summary.flaggedByRule);

  const rows: [string, string][] = [
    ['files', String(summary.files)],
    ['lines read', String(summary.linesRead)],
    ['bad lines', String(summary.badLines)],
    ['events read', String(summary.eventsRead)],
    ['events sent', String(summary.eventsSent)],
    ['stored', String(summary.stored)],
    ['duplicates', String(summary.duplicates)],
    ['rejected', String(summary.rejected)],
    ['not sent', String(summary.notSent)],
    ['corrections stored', corrections],
    ['flags stored', flagged],
    ['pair types defined', formatList(summary.pairTypesDefined)],
    ['pair types existing', formatList(summary.pairTypesExisting)],
    ['pair type conflicts', formatList(summary.pairTypeConflicts)],
    ['pair types rejected', formatList(summary.pairTypesRejected)],
    ['users created', formatList(summary.usersCreated)],
    ['requests', String(summary.requests)],
    ['retries', String(summary.retries)],
    ['elapsed', `${summary.elapsedSeconds.toFixed(1)} s`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${`${label}:`.padEnd(width + 2)}${value}`).join('\n') + '\n';
}
