/**
 * A lean GraphQL client over node:http with keep-alive connections, so that
 * the load generator spends little CPU per request on the shared cores.
 */
import { Agent, request } from 'node:http';

export interface GraphQLError {
  message: string;
  extensions?: { code?: string; reason?: string };
}

export interface GraphQLReply<T> {
  status: number;
  data: T | null;
  errors: GraphQLError[];
  /** Wall time from sending the request to the last byte of the response, in ms. */
  ms: number;
  /** Size of the response body in bytes. */
  bytes: number;
}

export class GraphQLClient {
  private readonly agent: Agent;
  private readonly endpoint: URL;

  constructor(baseUrl: string, maxSockets: number) {
    this.endpoint = new URL('/graphql', baseUrl);
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  /** Posts an operation and parses the reply. HTTP errors become a reply with `errors`, not an exception. */
  async send<T>(query: string, variables: Record<string, unknown>, token?: string): Promise<GraphQLReply<T>> {
    const body = Buffer.from(JSON.stringify({ query, variables }));
    const headers: Record<string, string | number> = {
      'content-type': 'application/json',
      'content-length': body.length,
    };
    if (token !== undefined) {
      headers.authorization = `Bearer ${token}`;
    }

    const started = performance.now();
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const outgoing = request(
        this.endpoint,
        { method: 'POST', agent: this.agent, headers },
        (response) => {
          const chunks: Buffer[] = [];
          response.on('data', (chunk: Buffer) => chunks.push(chunk));
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          response.on('error', reject);
        },
      );
      outgoing.on('error', reject);
      outgoing.end(body);
    });
    const ms = performance.now() - started;

    let parsed: { data?: T | null; errors?: GraphQLError[] };
    try {
      parsed = JSON.parse(text) as typeof parsed;
    } catch {
      parsed = { errors: [{ message: `HTTP ${status} with a body that is not JSON: ${text.slice(0, 200)}` }] };
    }
    return { status, data: parsed.data ?? null, errors: parsed.errors ?? [], ms, bytes: Buffer.byteLength(text) };
  }

  /** Like `send`, but throws when the reply has errors or no data. */
  async require<T>(query: string, variables: Record<string, unknown>, token?: string): Promise<GraphQLReply<T> & { data: T }> {
    const reply = await this.send<T>(query, variables, token);
    if (reply.errors.length > 0 || reply.data === null) {
      const first = reply.errors[0];
      throw new Error(
        `GraphQL request failed with HTTP ${reply.status}: ${first?.message ?? 'no data'} (${first?.extensions?.code ?? 'no code'}, ${first?.extensions?.reason ?? 'no reason'}).`,
      );
    }
    return reply as GraphQLReply<T> & { data: T };
  }

  async login(username: string, password: string): Promise<string> {
    const reply = await this.require<{ login: { token: string } }>(
      'mutation Login($username: String!, $password: String!) { login(username: $username, password: $password) { token } }',
      { username, password },
    );
    return reply.data.login.token;
  }

  close(): void {
    this.agent.destroy();
  }
}
