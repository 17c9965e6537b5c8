-- event-master:no-transaction
-- The `flags` and `rules` filters of event listings. Flagged client events
-- (ORPHAN_END, or a flag set at receipt) and corrections are rare, so
-- without these indexes a listing read the whole listing index, or all of a
-- user's events, to fill a page of them. Each pair holds only those rows, in
-- the listing order, across users and per user.
--
-- The planner uses a partial index only when the query's conditions imply
-- its predicate. The flags filter repeats the predicate of the flagged
-- indexes as a condition of its own, because `intake_flags && $1` does not
-- prove `intake_flags <> '{}'`. The rules filter compares `rule` with a
-- strict operator, which proves `rule IS NOT NULL`.
--
-- `orphan` appears in a predicate, so the updates that set or clear it are
-- no longer HOT updates. They touch only the events that are or were ORPHAN_END.
--
-- The builds run CONCURRENTLY, outside a transaction (see the first line),
-- because a plain CREATE INDEX blocks every insert into `events` until it has
-- read the whole table. A failed concurrent build leaves an INVALID index of
-- its name, and a failure leaves the earlier indexes built while the
-- migration stays pending, so each build first drops an index of its name.
DROP INDEX CONCURRENTLY IF EXISTS "events_flagged_listing_idx";
CREATE INDEX CONCURRENTLY "events_flagged_listing_idx" ON "events" ("occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "origin" = 'CLIENT' AND ("orphan" OR "intake_flags" <> '{}');
DROP INDEX CONCURRENTLY IF EXISTS "events_user_id_flagged_listing_idx";
CREATE INDEX CONCURRENTLY "events_user_id_flagged_listing_idx" ON "events" ("user_id", "occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "origin" = 'CLIENT' AND ("orphan" OR "intake_flags" <> '{}');
DROP INDEX CONCURRENTLY IF EXISTS "events_correction_listing_idx";
CREATE INDEX CONCURRENTLY "events_correction_listing_idx" ON "events" ("occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "rule" IS NOT NULL;
DROP INDEX CONCURRENTLY IF EXISTS "events_user_id_correction_listing_idx";
CREATE INDEX CONCURRENTLY "events_user_id_correction_listing_idx" ON "events" ("user_id", "occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "rule" IS NOT NULL;
