/**
 * Request-wide totals of the size limits of report expressions. Each
 * `report` field checks its own expression, but aliases run one expression
 * many times: one variable with 10,000 leaf entries in 20 aliased reports
 * made the server load 200,000 leaf entries. So the leaf entries, nodes and
 * literal intervals of every report that an operation runs count together
 * against REPORT_SIZE_FACTOR times REPORT_MAX_LEAF_ENTRIES, REPORT_MAX_NODES
 * and REPORT_MAX_LITERAL_INTERVALS. The factor leaves room for a dashboard
 * of several large reports in one query. Depth does not add up, and the
 * window of each report is bounded on its own.
 */
import { valueFromASTUntyped, type FieldNode, type OperationDefinitionNode } from 'graphql';

import { DomainError, badInput } from '../domain/errors.js';
import { scanExpression } from '../domain/report/measure.js';
import type { ExpressionLimits, ExpressionMeasurement } from '../domain/report/types.js';

/**
 * Returns the request's variables with the default value of each variable
 * that the request leaves out, as GraphQL coerces them.
 */
function variablesWithDefaults(operation: OperationDefinitionNode, variables: Record<string, unknown>): Record<string, unknown> {
  const values: Record<string, unknown> = { ...variables };
  for (const definition of operation.variableDefinitions ?? []) {
    const name = definition.variable.name.value;
    if (!Object.hasOwn(values, name) && definition.defaultValue !== undefined) {
      values[name] = valueFromASTUntyped(definition.defaultValue);
    }
  }
  return values;
}

/**
 * Returns the value of a field's `expression` argument as the request gives
 * it, or undefined when it is missing. Variables inside an inline
 * expression, such as `{ union: [$a] }`, take their defaults too.
 */
function expressionValue(field: FieldNode, variables: Record<string, unknown>): unknown {
  const node = field.arguments?.find((argument) => argument.name.value === 'expression')?.value;
  return node === undefined ? undefined : valueFromASTUntyped(node, variables);
}

/** Returns the measurement of an expression, or null when it exceeds a limit of one expression. */
function measureOrNull(value: unknown, limits: ExpressionLimits): ExpressionMeasurement | null {
  try {
    return scanExpression(value, limits).measurement;
  } catch (error) {
    if (error instanceof DomainError) {
      return null;
    }
    throw error;
  }
}

/** Multiple of each size limit of one expression that all reports of one request may have together. */
export const REPORT_SIZE_FACTOR = 4;

interface TotalLimit {
  key: 'leafEntries' | 'nodes' | 'literalIntervals';
  maxKey: keyof ExpressionLimits;
  limit: string;
  unit: string;
}

const TOTAL_LIMITS: readonly TotalLimit[] = [
  { key: 'leafEntries', maxKey: 'maxLeafEntries', limit: 'REPORT_MAX_LEAF_ENTRIES', unit: 'leaf entries' },
  { key: 'nodes', maxKey: 'maxNodes', limit: 'REPORT_MAX_NODES', unit: 'expression nodes' },
  { key: 'literalIntervals', maxKey: 'maxLiteralIntervals', limit: 'REPORT_MAX_LITERAL_INTERVALS', unit: 'literal intervals' },
];

/**
 * Rejects an operation whose `report` fields together exceed
 * REPORT_SIZE_FACTOR times a size limit of report expressions. `fields` are
 * the operation's top-level fields that run, by response key, so fields that
 * GraphQL merges count once. A report whose own expression is above a limit
 * is left out, because it fails on its own when it runs, with the error for
 * its expression.
 */
export function checkReportTotals(
  fields: Iterable<FieldNode>,
  operation: OperationDefinitionNode,
  variables: Record<string, unknown>,
  limits: ExpressionLimits,
): void {
  const values = variablesWithDefaults(operation, variables);
  const totals = { leafEntries: 0, nodes: 0, literalIntervals: 0 };
  // Aliases of one variable share its value, which is scanned once.
  const measured = new Map<unknown, ExpressionMeasurement | null>();
  let reports = 0;
  for (const field of fields) {
    if (field.name.value !== 'report') {
      continue;
    }
    const value = expressionValue(field, values);
    if (value === undefined || value === null) {
      continue;
    }
    if (!measured.has(value)) {
      measured.set(value, measureOrNull(value, limits));
    }
    const measurement = measured.get(value);
    if (measurement === null || measurement === undefined) {
      continue;
    }
    reports += 1;
    totals.leafEntries += measurement.leafEntries;
    totals.nodes += measurement.nodes;
    totals.literalIntervals += measurement.literalIntervals;
  }
  if (reports < 2) {
    return;
  }
  for (const { key, maxKey, limit, unit } of TOTAL_LIMITS) {
    const max = REPORT_SIZE_FACTOR * limits[maxKey];
    if (totals[key] > max) {
      throw badInput(
        'LIMIT_EXCEEDED',
        `The ${reports} reports of this request have ${totals[key]} ${unit} in all, above the maximum of ${max} for all reports of one request, ${REPORT_SIZE_FACTOR} times ${limit}. Send smaller expressions, or the reports in separate requests.`,
        { limit, value: totals[key], max, reports },
      );
    }
  }
}
