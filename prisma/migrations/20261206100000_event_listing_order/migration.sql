-- Event listings order events of one instant as the fold applied them:
-- by position, a correction before the event that caused it (they share its
-- position), corrections by ordinal, and the id last. Ordered by id alone,
-- a synthesised session_started could follow the task_started that caused
-- it, and an auto-close end the start it closed.
DROP INDEX "events_user_id_occurred_at_id_idx";
DROP INDEX "events_occurred_at_id_idx";
CREATE INDEX "events_user_id_listing_idx" ON "events" ("user_id", "occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id");
CREATE INDEX "events_listing_idx" ON "events" ("occurred_at", "pos_at", "pos_seq", ("origin" = 'CLIENT'), "ordinal", "id");
