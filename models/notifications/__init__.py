"""Notifications: WeChat subscription messages (订阅消息) as durable jobs, an outbox in PostgreSQL.

Owns the `notification_job` table and its two sides:

- `service.enqueue` / `service.cancel`, called by other areas inside *their* transaction, so a reminder
  exists if and only if the row it concerns was committed (a class reminder the day before, a waitlist
  promotion now). One job per (kind, user, subject): enqueuing again is a no-op.
- `worker.NotificationWorker`, run in every service process: claims due jobs with
  `FOR UPDATE SKIP LOCKED`, sends them through `infra.wechat.WechatGateway` outside any transaction,
  and records the outcome (sent, no_allowance for 43101, retried with backoff, failed).

A restart loses no job (they live in PostgreSQL) and a crash in the middle of a send is recovered when
the job's lease runs out; see `worker` for what that means for duplicates.
"""
