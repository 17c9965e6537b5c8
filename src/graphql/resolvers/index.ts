import { GraphQLError, GraphQLScalarType } from 'graphql';
import { DateTimeResolver, JSONObjectResolver } from 'graphql-scalars';

import { describeInstantRange, isStorableInstant } from '../../domain/storable.js';
import type { Resolvers } from '../generated/types.js';
import { Mutation } from './mutation.js';
import { Query } from './query.js';
import { Event, ReportGroup, Segment, User } from './types.js';

function checkStorable(date: Date): Date {
  if (!isStorableInstant(date.getTime())) {
    throw new GraphQLError(
      `DateTime ${date.toISOString()} is outside the supported range ${describeInstantRange()}.`,
      { extensions: { code: 'BAD_USER_INPUT', reason: 'INSTANT_OUT_OF_RANGE' } },
    );
  }
  return date;
}

/** graphql-scalars' DateTime, limited to the instants that storage supports. */
const DateTime = new GraphQLScalarType<Date, unknown>({
  ...DateTimeResolver.toConfig(),
  parseValue: (value) => checkStorable(DateTimeResolver.parseValue(value) as Date),
  parseLiteral: (ast, variables) => checkStorable(DateTimeResolver.parseLiteral(ast, variables) as Date),
});

export const resolvers: Resolvers = {
  DateTime,
  JSONObject: JSONObjectResolver,
  Query,
  Mutation,
  User,
  Event,
  Segment,
  ReportGroup,
};
