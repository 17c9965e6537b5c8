-- Pair type changes whose users are not queued yet. A replay worker queues
-- them once every server's pair type cache has expired, so that it also
-- queues the users whose rows a server folded with the old definition in
-- the meantime, and then deletes the change.
CREATE TABLE "pair_type_changes" (
    "id" BIGSERIAL NOT NULL,
    "pair_type" TEXT NOT NULL,
    "skip_overrides" BOOLEAN NOT NULL,
    "changed_at" TIMESTAMPTZ(3) NOT NULL DEFAULT clock_timestamp(),

    CONSTRAINT "pair_type_changes_pkey" PRIMARY KEY ("id")
);
