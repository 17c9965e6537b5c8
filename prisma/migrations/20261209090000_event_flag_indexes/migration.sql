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
CREATE INDEX "events_flagged_listing_idx" ON "events" ("occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "origin" = 'CLIENT' AND ("orphan" OR "intake_flags" <> '{}');
CREATE INDEX "events_user_id_flagged_listing_idx" ON "events" ("user_id", "occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "origin" = 'CLIENT' AND ("orphan" OR "intake_flags" <> '{}');
CREATE INDEX "events_correction_listing_idx" ON "events" ("occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "rule" IS NOT NULL;
CREATE INDEX "events_user_id_correction_listing_idx" ON "events" ("user_id", "occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id")
  WHERE "rule" IS NOT NULL;
