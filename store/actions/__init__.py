"""Store actions: each state change runs in one transaction and writes its events and outbox rows.

Callers open the transaction (`with db.transaction() as session:`) and call one action, or a few
that belong together (an inbound email: find the customer, open the ticket, add the message).
"""

from store.actions.common import DESK, Actor, DeskPolicy
from store.actions.customers import customer_for_email, customer_for_slack_user
from store.actions.messages import (
    NewAttachment,
    add_customer_message,
    add_note,
    add_staff_reply,
    delete_slack_message,
    edit_slack_message,
    message_by_email_id,
    message_by_slack_ts,
    record_bounce,
    settle_delivery,
)
from store.actions.tickets import (
    add_participant,
    assign,
    change_labels,
    create_label,
    follow_merges,
    label_names,
    link,
    links_of,
    merge,
    open_ticket,
    remove_participant,
    set_priority,
    set_status,
    ticket_by_email_ids,
    ticket_by_number,
    ticket_by_reply_key,
    ticket_by_slack_thread,
    ticket_owning_slack_thread,
    unlink,
)

__all__ = [
    "DESK",
    "Actor",
    "DeskPolicy",
    "NewAttachment",
    "add_customer_message",
    "add_note",
    "add_participant",
    "add_staff_reply",
    "assign",
    "change_labels",
    "create_label",
    "customer_for_email",
    "customer_for_slack_user",
    "delete_slack_message",
    "edit_slack_message",
    "follow_merges",
    "label_names",
    "link",
    "links_of",
    "merge",
    "message_by_email_id",
    "message_by_slack_ts",
    "open_ticket",
    "record_bounce",
    "remove_participant",
    "set_priority",
    "set_status",
    "settle_delivery",
    "ticket_by_email_ids",
    "ticket_by_number",
    "ticket_by_reply_key",
    "ticket_by_slack_thread",
    "ticket_owning_slack_thread",
    "unlink",
]
