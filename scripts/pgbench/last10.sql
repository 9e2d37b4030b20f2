-- One call of service::ops::messages::list_messages(limit 10, no `before`): the one statement
-- the service sends (the page, with the participant check inside it as an EXISTS), byte for
-- byte as sql_observe captured it (mercado-bench checks this on every run), placeholders
-- replaced by pgbench variables.
--
-- :cid and :uid are a conversation and one of its participants. pgbench cannot look a
-- participant up without a statement of its own, so mercado-bench (and scripts/pgbench/run)
-- write one copy of this script per sampled (conversation, participant) pair, each starting
-- with its own `\set cid …` and `\set uid …`, and run them all with equal weights: every
-- transaction reads a real page for a real participant, as the service does. The LIMIT is 11:
-- the service fetches one row more than asked to learn whether an older page exists.
\set fetch 11
SELECT "messages"."id", "messages"."conversation_id", "messages"."sender_id", "users"."username" AS "sender_username", "users"."display_name" AS "sender_display_name", "messages"."body", "messages"."reply_to_id", "messages"."created_at" FROM "messages" INNER JOIN "users" ON "messages"."sender_id" = "users"."id" WHERE "messages"."conversation_id" = :cid AND EXISTS(SELECT 1 FROM "conversation_participants" WHERE "conversation_participants"."conversation_id" = :cid AND "conversation_participants"."user_id" = :uid) ORDER BY "messages"."id" DESC LIMIT :fetch;
