-- Users whose derived rows must be recomputed because an admin changed the
-- parent or the default auto-close policy of a pair type they have segments
-- of. Each server's replay worker claims a row for a while (claimed_until),
-- replays the user and deletes the row unless a newer change arrived
-- meanwhile, which increments version.
CREATE TABLE "pending_replays" (
    "user_id" UUID NOT NULL,
    "pair_types" TEXT[] NOT NULL,
    "requested_at" TIMESTAMPTZ(3) NOT NULL,
    "version" INTEGER NOT NULL DEFAULT 1,
    "claimed_until" TIMESTAMPTZ(3),
    "attempts" INTEGER NOT NULL DEFAULT 0,

    CONSTRAINT "pending_replays_pkey" PRIMARY KEY ("user_id")
);

CREATE INDEX "pending_replays_requested_at_idx" ON "pending_replays"("requested_at");

ALTER TABLE "pending_replays" ADD CONSTRAINT "pending_replays_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
