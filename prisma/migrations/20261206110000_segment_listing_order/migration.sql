-- Segment listings order segments that start at one instant as the fold
-- opened them: by start position, then a segment without a parent before
-- those with one, and the id last. A task that starts without a session
-- opens a session at the task's own position, and ordered by id alone the
-- session could follow its task.
DROP INDEX "segments_start_at_id_idx";
CREATE INDEX "segments_listing_idx" ON "segments" ("start_at", "start_seq", ("parent_segment_id" IS NOT NULL), "id");
