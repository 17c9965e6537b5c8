import { DateTimeResolver, JSONObjectResolver } from 'graphql-scalars';

import type { Resolvers } from '../generated/types.js';
import { Mutation } from './mutation.js';
import { Query } from './query.js';
import { Event, ReportGroup, Segment, User } from './types.js';

export const resolvers: Resolvers = {
  DateTime: DateTimeResolver,
  JSONObject: JSONObjectResolver,
  Query,
  Mutation,
  User,
  Event,
  Segment,
  ReportGroup,
};
