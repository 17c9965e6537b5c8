/**
 * REST routes kept for existing clients: `POST /auth/login` and
 * `POST /api/events` (snake_case fields, one event or an array). They go
 * through the same services as the GraphQL mutations.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';

import type { TokenService } from '../auth/tokens.js';
import { DomainError, badInput } from '../domain/errors.js';
import { describeValue } from '../domain/report/shape.js';
import { describeInstantRange, isLeapSecondText, LEAP_SECOND_PROBLEM, quoteText } from '../domain/storable.js';
import type { Services } from '../services/index.js';
import { invalidEventsMessage, type EventFieldNames, type EventInput, type SendOutcome } from '../services/intake.js';
import { arrivalOf, type EventRecord, type SegmentRecord } from '../storage/postgres/records.js';
import { authenticate } from './app.js';
import { parseInstant } from './instant.js';

/** The snake_case name of each `EventInput` field that this route takes, which the intake's messages use too. */
const REST_EVENT_FIELD_NAMES: EventFieldNames = {
  id: 'id',
  type: 'type',
  isPair: 'is_pair',
  pairType: 'pair_type',
  pairKey: 'pair_key',
  occurredAt: 'occurred_at',
  meta: 'meta',
  userId: 'user_id',
};

const EVENT_FIELDS = new Set(Object.values(REST_EVENT_FIELD_NAMES));

/**
 * Rejects a body that is not sent as JSON. Fastify also parses text/plain,
 * into a string, which would otherwise be reported as a malformed event.
 */
function requireJsonBody(request: FastifyRequest): void {
  const contentType = request.headers['content-type'];
  if (typeof contentType === 'string' && /^application\/json\s*(;|$)/i.test(contentType)) {
    return;
  }
  throw badInput(
    'UNSUPPORTED_CONTENT_TYPE',
    `The body must be JSON sent with Content-Type: application/json, but the Content-Type is ${contentType === undefined ? 'missing' : JSON.stringify(String(contentType).slice(0, 100))}.`,
    { contentType: contentType === undefined ? null : String(contentType).slice(0, 100) },
  );
}

/** Describes a value of the wrong JSON type for a message, quoting it when it is a string, number or boolean. */
function describeReceived(value: unknown): string {
  if (typeof value === 'string') {
    return `the string ${quoteText(value, 64)}`;
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    return `the ${typeof value} ${String(value)}`;
  }
  return describeValue(value);
}

/** Converts one snake_case event body into an `EventInput`, listing every problem. */
export function parseRestEvent(raw: unknown): { input: EventInput | null; problems: string[] } {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    return { input: null, problems: [`the event must be a JSON object, got ${describeReceived(raw)}`] };
  }
  const body = raw as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of Object.keys(body)) {
    if (!EVENT_FIELDS.has(key)) {
      // A client used to GraphQL may send the camelCase name of a field.
      const snake = key.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
      problems.push(
        EVENT_FIELDS.has(snake) && snake !== key
          ? `unknown field ${JSON.stringify(key.slice(0, 64))}; this route takes snake_case names, so use ${JSON.stringify(snake)}`
          : `unknown field ${JSON.stringify(key.slice(0, 64))}`,
      );
    }
  }

  const optionalString = (key: string): string | null => {
    const value = body[key];
    if (value === undefined || value === null) {
      return null;
    }
    if (typeof value !== 'string') {
      problems.push(`${key} must be a string, got ${describeReceived(value)}`);
      return null;
    }
    return value;
  };

  const type = body.type;
  if (type === undefined) {
    problems.push('type is missing: send the event type as a string, such as "session_started"');
  } else if (typeof type !== 'string') {
    problems.push(`type must be a string, got ${describeReceived(type)}`);
  }
  let isPair: boolean | null = null;
  if (body.is_pair !== undefined && body.is_pair !== null) {
    if (typeof body.is_pair !== 'boolean') {
      problems.push(`is_pair must be true or false, got ${describeReceived(body.is_pair)}`);
    } else {
      isPair = body.is_pair;
    }
  }
  let occurredAt: Date | null = null;
  const occurredAtText = optionalString('occurred_at');
  if (occurredAtText !== null) {
    occurredAt = parseInstant(occurredAtText);
    if (occurredAt === null) {
      const quoted = JSON.stringify(occurredAtText.slice(0, 64));
      problems.push(
        isLeapSecondText(occurredAtText, (text) => parseInstant(text) !== null)
          ? `occurred_at ${quoted} ${LEAP_SECOND_PROBLEM}`
          : `occurred_at ${quoted} is not an RFC 3339 instant with an offset (for example 2026-01-31T09:00:00Z) ${describeInstantRange()}`,
      );
    }
  }
  let meta: Record<string, unknown> | null = null;
  if (body.meta !== undefined && body.meta !== null) {
    if (typeof body.meta !== 'object' || Array.isArray(body.meta)) {
      problems.push(`meta must be a JSON object, got ${describeReceived(body.meta)}`);
    } else {
      meta = body.meta as Record<string, unknown>;
    }
  }
  const input: EventInput = {
    id: optionalString('id'),
    type: typeof type === 'string' ? type : '',
    isPair,
    pairType: optionalString('pair_type'),
    pairKey: optionalString('pair_key'),
    occurredAt,
    meta,
    userId: optionalString('user_id'),
  };
  return { input: problems.length === 0 ? input : null, problems };
}

function eventJson(event: EventRecord) {
  return {
    id: event.id,
    client_id: event.clientId,
    user_id: event.userId,
    type: event.type,
    role: event.role,
    pair_type: event.pairType,
    pair_key: event.pairKey,
    occurred_at: event.occurredAt.toISOString(),
    client_occurred_at: event.clientOccurredAt?.toISOString() ?? null,
    received_at: event.receivedAt.toISOString(),
    arrival: arrivalOf(event),
    meta: event.meta,
    origin: event.origin,
    rule: event.rule,
    cause_event_id: event.causeEventId,
    flags: [...event.intakeFlags, ...(event.orphan ? ['ORPHAN_END'] : [])],
  };
}

function segmentJson(segment: SegmentRecord) {
  return {
    id: segment.id,
    user_id: segment.userId,
    pair_type: segment.pairType,
    pair_key: segment.pairKey,
    start: segment.startAt.toISOString(),
    end: segment.endAt?.toISOString() ?? null,
    end_reason: segment.endReason,
  };
}

export function sendOutcomeJson(outcome: SendOutcome) {
  return {
    results: outcome.results.map((result) => ({
      event: eventJson(result.event),
      duplicate: result.duplicate,
      corrections: result.corrections.map(eventJson),
      closed_segments: result.closedSegments.map(segmentJson),
      recomputed_from: result.recomputedFrom?.toISOString() ?? null,
    })),
    stored_count: outcome.storedCount,
    duplicate_count: outcome.duplicateCount,
  };
}

/** Returns the JSON type of `value` with its article, such as "an array" or "null". */
function jsonTypeOf(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (Array.isArray(value)) {
    return 'an array';
  }
  return typeof value === 'object' ? 'an object' : `a ${typeof value}`;
}

/** Describes what a rejected login body contains, naming its fields but never a value, which may be a password. */
function describeLoginBody(body: unknown): string {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return `it is ${jsonTypeOf(body)}`;
  }
  const problems: string[] = [];
  for (const field of ['username', 'password']) {
    const value = (body as Record<string, unknown>)[field];
    if (value === undefined) {
      problems.push(`"${field}" is missing`);
    } else if (typeof value !== 'string') {
      problems.push(`"${field}" is ${jsonTypeOf(value)}`);
    }
  }
  return problems.join(' and ');
}

export function registerRestRoutes(
  fastify: FastifyInstance,
  deps: { services: Services; tokens: TokenService },
): void {
  fastify.post('/auth/login', async (request) => {
    requireJsonBody(request);
    const body = request.body as Record<string, unknown> | null;
    const username = body?.username;
    const password = body?.password;
    if (typeof username !== 'string' || typeof password !== 'string') {
      throw badInput(
        'INVALID_LOGIN_BODY',
        `The body must be a JSON object with string fields "username" and "password", but ${describeLoginBody(request.body)}.`,
      );
    }
    const result = await deps.services.users.login(username, password, request.ip);
    return {
      token: result.token,
      expires_at: result.expiresAt.toISOString(),
      user: { id: result.user.id, username: result.user.username, role: result.user.role },
    };
  });

  fastify.post('/api/events', async (request) => {
    const { viewer, authError } = await authenticate(request, deps.tokens, deps.services);
    if (authError !== null) {
      throw authError;
    }
    if (viewer === null) {
      throw new DomainError('UNAUTHENTICATED', 'MISSING_TOKEN', 'Authentication required: send a bearer token from POST /auth/login.');
    }

    requireJsonBody(request);
    const body = request.body;
    const items = Array.isArray(body) ? body : [body];
    // Checked before parsing the items, so the response to an oversized batch does not list a problem per item.
    deps.services.intake.checkBatchSize(items.length);
    const inputs: EventInput[] = [];
    /** The index in the request of each item of `inputs`. */
    const inputIndexes: number[] = [];
    const invalidItems: Array<{ index: number; reason: string; message: string }> = [];
    items.forEach((item, index) => {
      const parsed = parseRestEvent(item);
      if (parsed.input === null) {
        invalidItems.push({ index, reason: 'INVALID_EVENT', message: parsed.problems.join('; ') });
      } else {
        inputs.push(parsed.input);
        inputIndexes.push(index);
      }
    });
    if (invalidItems.length > 0) {
      // The items that parsed get the intake's checks too, so that one reply
      // lists every problem of the batch.
      try {
        await deps.services.intake.check(viewer, inputs, { positions: inputIndexes, fieldNames: REST_EVENT_FIELD_NAMES });
      } catch (error) {
        const checked = error instanceof DomainError ? error.details.invalidItems : undefined;
        if (!Array.isArray(checked)) {
          throw error;
        }
        invalidItems.push(...(checked as typeof invalidItems));
        invalidItems.sort((first, second) => first.index - second.index);
        if (error instanceof DomainError && error.kind === 'FORBIDDEN') {
          throw new DomainError(
            'FORBIDDEN',
            error.reason,
            `Only admins may send events on behalf of another user, but the batch names another user in ${REST_EVENT_FIELD_NAMES.userId}; nothing was stored.`,
            { invalidItems },
          );
        }
      }
      // One event can have several problems, so count the events, not the problems.
      const invalidCount = new Set(invalidItems.map((item) => item.index)).size;
      throw badInput('INVALID_EVENTS', invalidEventsMessage(invalidCount, items.length, invalidItems), { invalidItems });
    }
    const outcome = await deps.services.intake.send(viewer, inputs, { requestId: request.id, fieldNames: REST_EVENT_FIELD_NAMES });
    return sendOutcomeJson(outcome);
  });
}
