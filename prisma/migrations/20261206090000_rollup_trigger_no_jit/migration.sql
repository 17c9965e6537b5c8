-- The rollup trigger's statements get no JIT compilation. PostgreSQL
-- estimates 1000 rows for each generate_series call, so a write of a few
-- hundred segments looked costly enough to compile, and compiling took
-- longer than running: EXPLAIN ANALYZE of a derived write of 2,000 segments
-- on PostgreSQL 15 spent 286 ms in JIT of the trigger's 295 ms. The
-- statements only group a few rows per chunk, which needs no compiled code.
ALTER FUNCTION "segment_rollups_mark_stale"() SET jit = off;
