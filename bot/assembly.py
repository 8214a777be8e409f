"""Where the worker's collaborators are wired: the one place that knows every performer."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from bot.app import slack_client
from bot.delivery.slack import SlackDelivery
from bot.inbound import SlackEventHandler
from bot.worker import Worker, WorkerConfig
from mail.delivery import EmailDelivery
from mail.ingest import EmailIngest
from store.context import Desk
from store.outbox import Kind


def build_worker(
    desk: Desk,
    *,
    client: AsyncWebClient | None = None,
    worker_id: str | None = None,
    config: WorkerConfig | None = None,
) -> Worker:
    client = client or slack_client(desk)
    slack = SlackDelivery(desk, client)
    email = EmailDelivery(desk)
    performers = {**slack.performers(), Kind.EMAIL.value: email.perform}
    handlers = {
        "email": EmailIngest(desk).handle,
        "slack_event": SlackEventHandler(desk, client).handle,
    }
    return Worker(
        desk.db,
        performers,
        handlers,
        token_check=slack.token_works,
        on_workers=slack.calls.gate.share_among,
        on_stop=slack.calls.stop_waiting,
        worker_id=worker_id,
        config=config,
    )
