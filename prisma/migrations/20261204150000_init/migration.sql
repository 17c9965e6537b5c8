-- Event Master: initial schema.

CREATE TYPE "Role" AS ENUM ('MEMBER', 'ANALYST', 'ADMIN');
CREATE TYPE "EventOrigin" AS ENUM ('CLIENT', 'CORRECTION');
CREATE TYPE "EventRole" AS ENUM ('START', 'END', 'POINT');
CREATE TYPE "CorrectionRule" AS ENUM (
  'MISSING_PARENT_START', 'CHILD_CLOSED_WITH_PARENT', 'DUPLICATE_START', 'ORPHAN_END',
  'AUTO_CLOSE', 'LATE_EVENT', 'LATE_BEYOND_HORIZON', 'FUTURE_TIMESTAMP'
);
CREATE TYPE "EndReason" AS ENUM ('CLIENT', 'PARENT_CLOSED', 'DUPLICATE_START', 'AUTO_CLOSE');
CREATE TYPE "AutoCloseEndAt" AS ENUM ('LAST_ACTIVITY', 'DEADLINE');

CREATE TABLE "users" (
  "id" UUID NOT NULL,
  "username" TEXT NOT NULL,
  "role" "Role" NOT NULL,
  "password_hash" TEXT NOT NULL,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "last_event_seq" INTEGER NOT NULL DEFAULT 0,
  "max_occurred_at" TIMESTAMPTZ(3),
  "applied_seq" INTEGER NOT NULL DEFAULT 0,
  "applied_at" TIMESTAMPTZ(3),
  "applied_pos_seq" INTEGER,
  "last_activity_at" TIMESTAMPTZ(3),
  "derived_version" INTEGER NOT NULL DEFAULT 0,
  "fence" BIGINT NOT NULL DEFAULT 0,
  CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);
CREATE UNIQUE INDEX "users_username_key" ON "users" ("username");

CREATE TABLE "pair_types" (
  "name" TEXT NOT NULL,
  "start_type" TEXT NOT NULL,
  "end_type" TEXT NOT NULL,
  "parent" TEXT,
  "timeout_seconds" INTEGER NOT NULL,
  "end_at" "AutoCloseEndAt" NOT NULL,
  "built_in" BOOLEAN NOT NULL DEFAULT false,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  CONSTRAINT "pair_types_pkey" PRIMARY KEY ("name"),
  CONSTRAINT "pair_types_timeout_positive" CHECK ("timeout_seconds" > 0)
);
CREATE UNIQUE INDEX "pair_types_start_type_key" ON "pair_types" ("start_type");
CREATE UNIQUE INDEX "pair_types_end_type_key" ON "pair_types" ("end_type");

INSERT INTO "pair_types" ("name", "start_type", "end_type", "parent", "timeout_seconds", "end_at", "built_in")
VALUES
  ('session', 'session_started', 'session_ended', NULL, 1800, 'LAST_ACTIVITY', true),
  ('task', 'task_started', 'task_ended', 'session', 1800, 'LAST_ACTIVITY', true);

CREATE TABLE "auto_close_preferences" (
  "user_id" UUID NOT NULL,
  "pair_type" TEXT NOT NULL,
  "timeout_seconds" INTEGER NOT NULL,
  "end_at" "AutoCloseEndAt" NOT NULL,
  CONSTRAINT "auto_close_preferences_pkey" PRIMARY KEY ("user_id", "pair_type"),
  CONSTRAINT "auto_close_preferences_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT "auto_close_preferences_timeout_positive" CHECK ("timeout_seconds" > 0)
);

CREATE TABLE "events" (
  "id" UUID NOT NULL,
  "user_id" UUID NOT NULL,
  "seq" INTEGER NOT NULL,
  "client_id" TEXT,
  "type" TEXT NOT NULL,
  "role" "EventRole" NOT NULL,
  "pair_type" TEXT,
  "pair_key" TEXT,
  "occurred_at" TIMESTAMPTZ(3) NOT NULL,
  "client_occurred_at" TIMESTAMPTZ(3),
  "received_at" TIMESTAMPTZ(3) NOT NULL,
  "meta" JSONB,
  "origin" "EventOrigin" NOT NULL,
  "rule" "CorrectionRule",
  "cause_event_id" UUID,
  "intake_flags" "CorrectionRule"[] NOT NULL DEFAULT ARRAY[]::"CorrectionRule"[],
  "orphan" BOOLEAN NOT NULL DEFAULT false,
  "ignored" BOOLEAN NOT NULL DEFAULT false,
  "pos_at" TIMESTAMPTZ(3) NOT NULL,
  "pos_seq" INTEGER NOT NULL,
  "ordinal" INTEGER NOT NULL DEFAULT 0,
  CONSTRAINT "events_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "events_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE UNIQUE INDEX "events_user_id_client_id_key" ON "events" ("user_id", "client_id");
CREATE INDEX "events_user_id_pos_at_pos_seq_idx" ON "events" ("user_id", "pos_at", "pos_seq");
-- One arrival counter value per client event.
CREATE UNIQUE INDEX "events_user_id_seq_client_key" ON "events" ("user_id", "seq") WHERE "origin" = 'CLIENT';
-- Intake replies list the corrections each event caused.
CREATE INDEX "events_cause_event_id_idx" ON "events" ("cause_event_id") WHERE "cause_event_id" IS NOT NULL;
-- Event listings page by (occurred_at, id), for one user or across users.
CREATE INDEX "events_user_id_occurred_at_id_idx" ON "events" ("user_id", "occurred_at", "id");
CREATE INDEX "events_occurred_at_id_idx" ON "events" ("occurred_at", "id");

CREATE TABLE "segments" (
  "id" UUID NOT NULL,
  "user_id" UUID NOT NULL,
  "pair_type" TEXT NOT NULL,
  "pair_key" TEXT NOT NULL,
  "start_at" TIMESTAMPTZ(3) NOT NULL,
  "start_seq" INTEGER NOT NULL,
  "start_event_id" UUID NOT NULL,
  "parent_segment_id" UUID,
  "end_at" TIMESTAMPTZ(3),
  "end_event_id" UUID,
  "end_reason" "EndReason",
  "decided_at" TIMESTAMPTZ(3),
  "decided_seq" INTEGER,
  "meta" JSONB,
  CONSTRAINT "segments_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "segments_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE,
  CONSTRAINT "segments_end_not_before_start" CHECK ("end_at" IS NULL OR "end_at" >= "start_at")
);
-- Report leaves scan this index by (user, pair type, start range) and read
-- end_at from it without visiting the table.
CREATE INDEX "segments_user_id_pair_type_start_at_idx" ON "segments" ("user_id", "pair_type", "start_at") INCLUDE ("end_at", "pair_key");
CREATE INDEX "segments_open_idx" ON "segments" ("user_id", "pair_type", "start_at") WHERE "end_at" IS NULL;
CREATE INDEX "segments_user_id_start_idx" ON "segments" ("user_id", "start_at", "start_seq");
CREATE INDEX "segments_user_id_decided_idx" ON "segments" ("user_id", "decided_at", "decided_seq");
CREATE INDEX "segments_start_at_id_idx" ON "segments" ("start_at", "id");
CREATE INDEX "segments_end_event_id_idx" ON "segments" ("end_event_id") WHERE "end_event_id" IS NOT NULL;

CREATE TABLE "segment_length_bounds" (
  "user_id" UUID NOT NULL,
  "pair_type" TEXT NOT NULL,
  "max_ms" BIGINT NOT NULL,
  CONSTRAINT "segment_length_bounds_pkey" PRIMARY KEY ("user_id", "pair_type"),
  CONSTRAINT "segment_length_bounds_user_id_fkey" FOREIGN KEY ("user_id") REFERENCES "users" ("id") ON DELETE CASCADE ON UPDATE CASCADE
);
