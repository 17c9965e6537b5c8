-- The segments of one user, pair type and pair key in time order, for the
-- rollups and stale chunks of one pair key. Without it, rebuilding the chunk
-- of one key, or reading it in a report while it is stale, scanned every
-- segment of the pair type in the chunk's time range, which is all of them
-- when each task has a key of its own.
CREATE INDEX "segments_user_id_pair_type_pair_key_start_at_idx" ON "segments" ("user_id", "pair_type", "pair_key", "start_at") INCLUDE ("end_at");
