-- Segments that start at one position come in the order the fold opened
-- them, which is the order of their depth: a task that starts with no
-- session open, under a pair type whose parent is task, opens a session, a
-- task and its own segment at one position. The previous listing index only
-- put a segment without a parent first, so a task and its child came in id
-- order. depth counts the segment's ancestors (0 for one without a parent).
ALTER TABLE "segments" ADD COLUMN "depth" SMALLINT NOT NULL DEFAULT 0;

-- Filled before the new index exists, so the updates need not maintain it.
WITH RECURSIVE "nested" ("id", "depth") AS (
  SELECT "id", 1 FROM "segments"
  WHERE "parent_segment_id" IS NOT NULL
    AND "parent_segment_id" IN (SELECT "id" FROM "segments" WHERE "parent_segment_id" IS NULL)
  UNION ALL
  SELECT "child"."id", "nested"."depth" + 1
  FROM "segments" AS "child" JOIN "nested" ON "child"."parent_segment_id" = "nested"."id"
)
UPDATE "segments" SET "depth" = "nested"."depth" FROM "nested" WHERE "segments"."id" = "nested"."id";

DROP INDEX "segments_listing_idx";
CREATE INDEX "segments_listing_idx" ON "segments" ("start_at", "start_seq", "depth", "id");
