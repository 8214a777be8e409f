"""`serve --socket-mode` against the emulator's Socket Mode endpoint: slash commands and
card buttons arrive over the socket, are acked there, and act (DESIGN.md: `--socket-mode` uses Socket
Mode instead of HTTP; the emulator "serves apps.connections.open and a plain-WebSocket Socket Mode
endpoint, so Socket Mode is tested too"). The existing Socket Mode test covers events and the shortcut."""

from __future__ import annotations

from sandbox.workspace import ALICE, TRIAGE
from store.models import Ticket
from tests.e2e.conftest import StartService, message_text


def test_desk_commands_and_card_buttons_work_over_the_socket(start_service: StartService) -> None:
    service = start_service(socket_mode=True)
    emulator = service.emulator
    interaction = emulator.user_command(
        ALICE, TRIAGE, "/desk", "new dan@globex.example Printer on fire"
    ).wait(10)
    answer = interaction.ack_payload or {}
    assert str(answer.get("text", "")).startswith("Opened #1 for dan@globex.example"), answer
    card = service.wait_for(service.card, "the card")
    emulator.user_block_action(ALICE, TRIAGE, card.ts, "ticket_priority", "urgent").wait(10)
    closed = emulator.user_command(ALICE, TRIAGE, "/desk", "close 1").wait(10)
    assert "#1" in str((closed.ack_payload or {}).get("text", "")), closed.ack_payload

    def ticket() -> Ticket:
        with service.db.transaction() as session:
            return session.query(Ticket).one()

    service.wait_for(
        lambda: ticket().priority == "urgent" and ticket().status == "closed", "the ticket to change"
    )
    service.wait_for(
        lambda: "Closed" in message_text(emulator.message(TRIAGE, card.ts)), "the card to say Closed"
    )
    assert all(delivery.via == "socket_mode" for delivery in emulator.deliveries)
    assert emulator.socket_acks
