-- One call of service::ops::messages::list_messages(limit 10, no `before`): the two statements
-- the service sends, byte for byte as service::observe captured them (mercado-bench checks
-- this on every run), placeholders replaced by pgbench variables.
--
-- Run by mercado-bench (and scripts/pgbench/run) with -D cid_min/cid_max (the seeded
-- conversations' id range) and -D uid_min/uid_max (the seeded users'). pgbench cannot look up a
-- participant of the drawn conversation without a third statement, so the caller is a random
-- user: the participant check is the same primary-key probe of conversation_participants
-- whether or not it finds the row (a miss skips one heap fetch), and pgbench runs the page
-- query regardless, where the service would have answered "not found". The page query's
-- LIMIT is 11: the service fetches one row more than asked to learn whether an older page exists.
\set cid random(:cid_min, :cid_max)
\set uid random(:uid_min, :uid_max)
\set one 1
\set fetch 11
SELECT "conversation_participants"."conversation_id", "conversation_participants"."user_id", "conversation_participants"."joined_at" FROM "conversation_participants" WHERE "conversation_participants"."conversation_id" = :cid AND "conversation_participants"."user_id" = :uid LIMIT :one;
SELECT "messages"."id" AS "A_id", "messages"."conversation_id" AS "A_conversation_id", "messages"."sender_id" AS "A_sender_id", "messages"."reply_to_id" AS "A_reply_to_id", "messages"."body" AS "A_body", "messages"."created_at" AS "A_created_at", "users"."id" AS "B_id", "users"."username" AS "B_username", "users"."username_canonical" AS "B_username_canonical", "users"."email" AS "B_email", "users"."email_canonical" AS "B_email_canonical", "users"."created_at" AS "B_created_at", "users"."display_name" AS "B_display_name" FROM "messages" INNER JOIN "users" ON "messages"."sender_id" = "users"."id" WHERE "messages"."conversation_id" = :cid ORDER BY "messages"."id" DESC LIMIT :fetch;
