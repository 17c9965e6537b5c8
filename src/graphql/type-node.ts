/** Reading the type references of a GraphQL document. */
import { Kind, type TypeNode } from 'graphql';

/** Returns the named type inside a type reference such as `[EventInput!]!`, and whether a list wraps it. */
export function namedType(type: TypeNode): { name: string; list: boolean } {
  let list = false;
  let cursor = type;
  while (cursor.kind !== Kind.NAMED_TYPE) {
    if (cursor.kind === Kind.LIST_TYPE) {
      list = true;
    }
    cursor = cursor.type;
  }
  return { name: cursor.name.value, list };
}
