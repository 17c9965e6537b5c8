import { GraphQLError, GraphQLScalarType, Kind, type ValueNode } from 'graphql';
import { DateTimeResolver, JSONObjectResolver } from 'graphql-scalars';

import { describeInstantRange, isStorableInstant } from '../../domain/storable.js';
import type { Resolvers } from '../generated/types.js';
import { Mutation } from './mutation.js';
import { Query } from './query.js';
import { Event, EventConnection, PairType, ReportGroup, Segment, SegmentConnection, User } from './types.js';

function checkStorable(date: Date): Date {
  if (!isStorableInstant(date.getTime())) {
    throw new GraphQLError(
      `DateTime ${date.toISOString()} is outside the supported range ${describeInstantRange()}.`,
      { extensions: { code: 'BAD_USER_INPUT', reason: 'INSTANT_OUT_OF_RANGE' } },
    );
  }
  return date;
}

const EXPECTED_DATE_TIME = 'Expected an RFC 3339 date-time with a time zone offset, such as 2026-03-02T09:00:00Z.';

/** Runs a parse of graphql-scalars' DateTime, adding the expected format to its error. */
function parseDateTime(parse: () => unknown): Date {
  let date: Date;
  try {
    date = parse() as Date;
  } catch (error) {
    throw new GraphQLError(`${(error as Error).message.replace(/\.?$/, '.')} ${EXPECTED_DATE_TIME}`, {
      extensions: { code: 'BAD_USER_INPUT', reason: 'INVALID_DATE_TIME' },
    });
  }
  return checkStorable(date);
}

/** graphql-scalars' DateTime, limited to the instants that storage supports. */
const DateTime = new GraphQLScalarType<Date, unknown>({
  ...DateTimeResolver.toConfig(),
  parseValue: (value) => parseDateTime(() => DateTimeResolver.parseValue(value)),
  parseLiteral: (ast, variables) => parseDateTime(() => DateTimeResolver.parseLiteral(ast, variables)),
});

/** Runs a parse of graphql-scalars' JSONObject, giving its error a reason as DateTime's errors have. */
function parseJsonObject(parse: () => unknown): Record<string, unknown> {
  try {
    return parse() as Record<string, unknown>;
  } catch (error) {
    throw new GraphQLError(`${(error as Error).message.replace(/\.?$/, '.')} Expected a JSON object, such as { "project": "alpha" }.`, {
      extensions: { code: 'BAD_USER_INPUT', reason: 'INVALID_JSON_OBJECT' },
    });
  }
}

/**
 * Rejects enum values such as `{ status: ACTIVE }` in a JSON literal. JSON has
 * no enum values, and graphql-scalars 2.0 turns each one into undefined, so the
 * key would vanish from the stored object and a list item would become null.
 */
function rejectEnumValues(node: ValueNode, path: string): void {
  if (node.kind === Kind.ENUM) {
    throw new GraphQLError(
      `JSONObject cannot represent the enum value ${node.value} at ${path}, because JSON has no enum values. Write it as the string "${node.value}".`,
      { nodes: node, extensions: { code: 'BAD_USER_INPUT', reason: 'INVALID_JSON_OBJECT' } },
    );
  }
  if (node.kind === Kind.OBJECT) {
    for (const field of node.fields) {
      rejectEnumValues(field.value, path === '' ? field.name.value : `${path}.${field.name.value}`);
    }
  } else if (node.kind === Kind.LIST) {
    node.values.forEach((value, index) => rejectEnumValues(value, `${path}[${index}]`));
  }
}

/** graphql-scalars' JSONObject, with a reason on its errors and no enum values in literals. */
const JSONObject = new GraphQLScalarType<Record<string, unknown>, unknown>({
  ...JSONObjectResolver.toConfig(),
  parseValue: (value) => parseJsonObject(() => JSONObjectResolver.parseValue(value)),
  parseLiteral: (ast, variables) => {
    if (ast.kind === Kind.OBJECT) {
      rejectEnumValues(ast, '');
    }
    return parseJsonObject(() => JSONObjectResolver.parseLiteral(ast, variables));
  },
});

export const resolvers: Resolvers = {
  DateTime,
  JSONObject,
  Query,
  Mutation,
  User,
  Event,
  EventConnection,
  Segment,
  SegmentConnection,
  PairType,
  ReportGroup,
};
