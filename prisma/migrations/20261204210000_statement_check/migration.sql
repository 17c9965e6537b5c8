-- Intake writes several tables with one statement (data-modifying WITH
-- queries) instead of a transaction of several statements. Such a statement
-- ends with a call of this function: when a check fails, it raises an error
-- with SQLSTATE EM001 and the given message, and the whole statement,
-- with everything it wrote, is rolled back.
CREATE FUNCTION "event_master_check"(ok boolean, message text) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  IF ok IS NOT TRUE THEN
    RAISE EXCEPTION USING ERRCODE = 'EM001', MESSAGE = message;
  END IF;
  RETURN true;
END
$$;
