-- Usernames that differ only in case would let one account pass for another
-- in logs and lists ("Admin" next to "admin"), and the login rate limit
-- already counts them as one name. New usernames are compared without case.
--
-- A database that already holds such a pair keeps both accounts: the index is
-- then not created, the service still rejects new pairs when it creates a
-- user, and the migration raises a warning naming the count.
DO $$
DECLARE
  clashes integer;
BEGIN
  SELECT count(*) INTO clashes FROM (
    SELECT lower("username") FROM "users" GROUP BY lower("username") HAVING count(*) > 1
  ) AS c;
  IF clashes = 0 THEN
    CREATE UNIQUE INDEX "users_username_lower_key" ON "users" (lower("username"));
  ELSE
    RAISE WARNING '% usernames exist in more than one case; users_username_lower_key is not created', clashes;
  END IF;
END
$$;
