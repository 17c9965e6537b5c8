-- A rebuild used to lock its stale rows for its whole transaction, while it
-- read the chunks' segments and merged them, and every writer that marked one
-- of those chunks waited for it. Now a rebuild claims its rows for a lease,
-- reads and merges without locks, and then deletes only the rows that still
-- carry its claim, in the statement that writes the rollups.
ALTER TABLE "segment_rollup_stale"
  ADD COLUMN "claim" UUID,
  ADD COLUMN "claimed_until" TIMESTAMPTZ(3);

-- Marks the chunks of the closed segments in the statement's transition
-- tables. On a row that a rebuild has claimed, the mark clears the claim and
-- restarts the delay, so that rebuild keeps the row, as it missed this change.
-- On an unclaimed row, ON CONFLICT DO UPDATE ... WHERE writes nothing but locks
-- the row until this transaction ends, so no rebuild can claim it and read
-- segments without this change.
CREATE OR REPLACE FUNCTION "segment_rollups_mark_stale"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' OR TG_OP = 'UPDATE' THEN
    INSERT INTO "segment_rollup_stale" ("user_id", "pair_type", "all_keys", "pair_key", "chunk")
    SELECT DISTINCT n."user_id", n."pair_type", scope.all_keys, scope.pair_key, c
    FROM new_rows AS n
    CROSS JOIN LATERAL (VALUES (true, ''), (false, n."pair_key")) AS scope (all_keys, pair_key)
    CROSS JOIN LATERAL generate_series(
      floor(date_part('epoch', n."start_at") / 2592000)::int,
      floor(date_part('epoch', n."end_at") / 2592000)::int
    ) AS c
    WHERE n."end_at" IS NOT NULL
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ("user_id", "pair_type", "all_keys", "pair_key", "chunk")
    DO UPDATE SET "claim" = NULL, "claimed_until" = NULL, "marked_at" = now()
    WHERE "segment_rollup_stale"."claim" IS NOT NULL;
  END IF;
  IF TG_OP = 'DELETE' OR TG_OP = 'UPDATE' THEN
    INSERT INTO "segment_rollup_stale" ("user_id", "pair_type", "all_keys", "pair_key", "chunk")
    SELECT DISTINCT o."user_id", o."pair_type", scope.all_keys, scope.pair_key, c
    FROM old_rows AS o
    CROSS JOIN LATERAL (VALUES (true, ''), (false, o."pair_key")) AS scope (all_keys, pair_key)
    CROSS JOIN LATERAL generate_series(
      floor(date_part('epoch', o."start_at") / 2592000)::int,
      floor(date_part('epoch', o."end_at") / 2592000)::int
    ) AS c
    WHERE o."end_at" IS NOT NULL
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ("user_id", "pair_type", "all_keys", "pair_key", "chunk")
    DO UPDATE SET "claim" = NULL, "claimed_until" = NULL, "marked_at" = now()
    WHERE "segment_rollup_stale"."claim" IS NOT NULL;
  END IF;
  RETURN NULL;
END
$$;
