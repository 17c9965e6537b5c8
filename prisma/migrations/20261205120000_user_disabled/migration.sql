-- An admin can disable an account. Its tokens stop working at once, because
-- every authenticated request reads the user, and its logins fail as a wrong
-- password does. NULL means the account is enabled.
ALTER TABLE "users" ADD COLUMN "disabled_at" TIMESTAMPTZ(3);
