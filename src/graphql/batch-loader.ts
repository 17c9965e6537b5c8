/**
 * Collects the keys requested during one tick and loads them with one call,
 * so that resolving `user` on a page of a thousand events costs one query.
 */
export interface BatchLoader<K, V> {
  load(key: K): Promise<V>;
}

export function createBatchLoader<K, V>(
  loadMany: (keys: readonly K[]) => Promise<readonly V[]>,
): BatchLoader<K, V> {
  const cache = new Map<K, Promise<V>>();
  let pending: Array<{ key: K; resolve: (value: V) => void; reject: (error: unknown) => void }> = [];

  const flush = (): void => {
    const batch = pending;
    pending = [];
    loadMany(batch.map((entry) => entry.key)).then(
      (values) => {
        batch.forEach((entry, index) => entry.resolve(values[index] as V));
      },
      (error: unknown) => {
        for (const entry of batch) {
          entry.reject(error);
        }
      },
    );
  };

  return {
    load(key: K): Promise<V> {
      const cached = cache.get(key);
      if (cached !== undefined) {
        return cached;
      }
      const promise = new Promise<V>((resolve, reject) => {
        if (pending.length === 0) {
          process.nextTick(flush);
        }
        pending.push({ key, resolve, reject });
      });
      cache.set(key, promise);
      return promise;
    },
  };
}
