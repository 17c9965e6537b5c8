/**
 * The report expressions of the benchmark, written as GraphQL variables over
 * the dataset's users.
 */


export interface ReportCase {
  label: string;
  title: string;
  expression: Record<string, unknown>;
  /** Set for (d): one group per user, DAY buckets in a zone with daylight saving time. */
  grouped: { timeZone: string } | null;
}

export const BUCKET_TIME_ZONE = 'Europe/Prague';

const leaf = (fields: Record<string, unknown>) => ({ segments: { includeOpen: true, ...fields } });

export function reportCases(userIds: readonly string[]): ReportCase[] {
  const all = leaf({ pairTypes: ['session', 'task'] });

  // Ten leaves over ten disjoint groups of users, tasks and sessions alternating.
  const groupSize = Math.max(1, Math.floor(userIds.length / 10));
  const tenLeaves = Array.from({ length: 10 }, (_, index) =>
    leaf({
      users: userIds.slice(index * groupSize, (index + 1) * groupSize),
      pairTypes: [index % 2 === 0 ? 'task' : 'session'],
    }),
  );

  // Depth 5: the deepest leaves sit under difference > intersect > complement > difference.
  const nested = {
    difference: {
      from: {
        intersect: [
          { union: [leaf({ pairTypes: ['session'] }), { complement: leaf({ pairTypes: ['task'], pairKeys: ['k0'] }) }] },
          {
            complement: {
              difference: {
                from: leaf({ pairTypes: ['task'], pairKeys: ['k1'] }),
                subtract: leaf({ pairTypes: ['task'], meta: { project: 'p1' } }),
              },
            },
          },
        ],
      },
      subtract: {
        complement: {
          intersect: [leaf({ pairTypes: ['task'], pairKeys: ['k2'] }), leaf({ pairTypes: ['session'], includeOpen: false })],
        },
      },
    },
  };

  return [
    { label: 'a', title: 'one leaf (sessions and tasks of all users)', expression: all, grouped: null },
    { label: 'b', title: 'union of ten leaves (user groups, alternating pair types)', expression: { union: tenLeaves }, grouped: null },
    { label: 'c', title: 'depth 5: intersect, difference, complement', expression: nested, grouped: null },
    {
      label: 'd',
      title: `(a) with groupBy USER and DAY buckets in ${BUCKET_TIME_ZONE}`,
      expression: all,
      grouped: { timeZone: BUCKET_TIME_ZONE },
    },
  ];
}

export const REPORT_QUERY = `query Report($expression: SetExpression!, $window: WindowInput!) {
  report(expression: $expression, window: $window) {
    count
    totalSeconds
    truncated
    intervals { start end seconds }
  }
}`;

export const GROUPED_REPORT_QUERY = `query ReportByUser($expression: SetExpression!, $window: WindowInput!, $bucket: BucketInput) {
  report(expression: $expression, window: $window, groupBy: USER, bucket: $bucket) {
    count
    totalSeconds
    buckets { start seconds }
    groups { user { id } count totalSeconds buckets { start end seconds } }
  }
}`;

export interface ReportReply {
  report: {
    count: number;
    totalSeconds: number;
    groups?: Array<{
      user: { id: string };
      count: number;
      totalSeconds: number;
      buckets: Array<{ start: string; end: string; seconds: number }> | null;
    }> | null;
  };
}
