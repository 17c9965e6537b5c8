-- Rollups: the union of each user's closed segments of one pair type, cut
-- into 30-day chunks (chunk n covers epoch seconds [n * 2592000,
-- (n + 1) * 2592000)). Each chunk has one rollup over all pair keys
-- (all_keys, with pair_key '') and one per pair key. A report leaf that
-- filters by users, pair types and pair keys, but not by meta, reads a few
-- merged chunks instead of every segment.
--
-- Triggers on segments mark the chunks a statement touched as stale, in the
-- same transaction as the change, and a background builder recomputes stale
-- chunks. A reader takes a chunk only while no stale row names it and reads
-- the segments themselves otherwise, so every snapshot gives the same answer
-- as the segments alone.
--
-- Neither table has a foreign key: deleting a user deletes its segments, and
-- the trigger then marks chunks of a user row that is already gone. The
-- builder removes the rollups of chunks whose segments are gone.

CREATE TABLE "segment_rollups" (
  "user_id" UUID NOT NULL,
  "pair_type" TEXT NOT NULL,
  "all_keys" BOOLEAN NOT NULL,
  "pair_key" TEXT NOT NULL,
  "chunk" INTEGER NOT NULL,
  -- Little-endian float8 milliseconds [s0, e0, s1, e1, ...]: sorted, disjoint,
  -- not touching, clipped to the chunk.
  "bounds" BYTEA NOT NULL,
  "built_at" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
  CONSTRAINT "segment_rollups_pkey" PRIMARY KEY ("user_id", "pair_type", "all_keys", "pair_key", "chunk")
);

CREATE TABLE "segment_rollup_stale" (
  "user_id" UUID NOT NULL,
  "pair_type" TEXT NOT NULL,
  "all_keys" BOOLEAN NOT NULL,
  "pair_key" TEXT NOT NULL,
  "chunk" INTEGER NOT NULL,
  -- When the chunk was first marked since its last rebuild. Later marks keep
  -- it, so the builder can wait until a busy chunk has been stale for a while
  -- and rebuild it once for many changes.
  "marked_at" TIMESTAMPTZ(3) NOT NULL DEFAULT now(),
  CONSTRAINT "segment_rollup_stale_pkey" PRIMARY KEY ("user_id", "pair_type", "all_keys", "pair_key", "chunk")
);

-- Marks the chunks of the closed segments in the statement's transition
-- tables. ON CONFLICT DO UPDATE ... WHERE false writes nothing but locks an
-- existing stale row until this transaction ends, so a builder cannot take
-- that row, rebuild from segments that do not yet show this change, and
-- delete the mark.
CREATE FUNCTION "segment_rollups_mark_stale"() RETURNS trigger LANGUAGE plpgsql AS $$
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
    ON CONFLICT ("user_id", "pair_type", "all_keys", "pair_key", "chunk") DO UPDATE SET "chunk" = EXCLUDED."chunk" WHERE false;
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
    ON CONFLICT ("user_id", "pair_type", "all_keys", "pair_key", "chunk") DO UPDATE SET "chunk" = EXCLUDED."chunk" WHERE false;
  END IF;
  RETURN NULL;
END
$$;

CREATE TRIGGER "segments_rollup_insert" AFTER INSERT ON "segments"
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION "segment_rollups_mark_stale"();
CREATE TRIGGER "segments_rollup_update" AFTER UPDATE ON "segments"
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION "segment_rollups_mark_stale"();
CREATE TRIGGER "segments_rollup_delete" AFTER DELETE ON "segments"
  REFERENCING OLD TABLE AS old_rows
  FOR EACH STATEMENT EXECUTE FUNCTION "segment_rollups_mark_stale"();

-- Segments stored before this migration: every chunk they touch is stale.
INSERT INTO "segment_rollup_stale" ("user_id", "pair_type", "all_keys", "pair_key", "chunk")
SELECT DISTINCT s."user_id", s."pair_type", scope.all_keys, scope.pair_key, c
FROM "segments" AS s
CROSS JOIN LATERAL (VALUES (true, ''), (false, s."pair_key")) AS scope (all_keys, pair_key)
CROSS JOIN LATERAL generate_series(
  floor(date_part('epoch', s."start_at") / 2592000)::int,
  floor(date_part('epoch', s."end_at") / 2592000)::int
) AS c
WHERE s."end_at" IS NOT NULL;
