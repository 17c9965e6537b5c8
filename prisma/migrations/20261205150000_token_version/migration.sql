-- Tokens carry the account's token version when they are issued. A password
-- change or disabling the account increments it, so every token issued
-- before stops working at its next request, and enabling the account again
-- does not bring them back. Tokens without the claim count as version 0.
ALTER TABLE "users" ADD COLUMN "token_version" INTEGER NOT NULL DEFAULT 0;
