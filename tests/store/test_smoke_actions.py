from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from store import actions, outbox
from store.actions import Actor, DeskPolicy
from store.actions.tickets import start_ticket
from store.models import Organization, Origin, Outbox, Participant, Status

POLICY = DeskPolicy(
    mail_domain="example.com",
    triage_channel="C0TRIAGE",
    reply_delay=timedelta(seconds=10),
    support_addresses=frozenset({"support@example.com"}),
)
ALICE = Actor("alice", slack_id="U0ALICE")


def test_email_ticket_flow_writes_events_and_outbox(db):
    with db.transaction() as s:
        customer = actions.customer_for_email(s, "Dan@Globex.example", "Dan")
        ticket = actions.open_ticket(
            s,
            POLICY,
            subject="Printer",
            requester=customer,
            origin=Origin.EMAIL,
            actor=Actor("Dan", email=customer.email),
        )
        actions.add_customer_message(
            s,
            POLICY,
            ticket,
            customer=customer,
            body_markdown="It **broke**",
            source="email",
            email_message_id="abc@globex.example",
        )
        number, ticket_id = ticket.number, ticket.id
    assert number == 1
    with db.transaction() as s:
        kinds = [row.kind for row in s.scalars(select(Outbox).order_by(Outbox.id))]
        assert kinds == ["slack.card", "slack.thread_post"]
        ticket = actions.ticket_by_email_ids(s, ["nope", "abc@globex.example"])
        assert ticket is not None and ticket.id == ticket_id
        reply = actions.add_staff_reply(
            s,
            POLICY,
            ticket,
            author=ALICE,
            body_markdown="Try *this*",
            slack_channel="C0TRIAGE",
            slack_ts="1.0001",
        )
        reply_id = reply.id
    with db.transaction() as s:
        emails = s.scalars(select(Outbox).where(Outbox.kind == "email.send")).all()
        assert [e.payload["to"] for e in emails] == ["dan@globex.example"]
        assert emails[0].payload["in_reply_to"] == "abc@globex.example"
        assert emails[0].message_id == reply_id
    # Not due before the undo window ends.
    claimed = outbox.claim_due(db, "w1", kinds=frozenset({"email.send"}))
    assert claimed == []


def test_ticket_numbers_count_up(db):
    with db.transaction() as s:
        customer = actions.customer_for_email(s, "a@b.example")
        numbers = [
            actions.open_ticket(
                s, POLICY, subject=f"t{i}", requester=customer, origin=Origin.EMAIL, actor=ALICE
            ).number
            for i in range(3)
        ]
    assert numbers == [1, 2, 3]


def test_reply_to_resolved_ticket_reopens(db):
    with db.transaction() as s:
        customer = actions.customer_for_email(s, "a@b.example")
        ticket = actions.open_ticket(
            s, POLICY, subject="x", requester=customer, origin=Origin.EMAIL, actor=ALICE
        )
        actions.set_status(s, POLICY, ticket, "resolved", ALICE)
        actions.add_customer_message(
            s, POLICY, ticket, customer=customer, body_markdown="still broken", source="email"
        )
        assert ticket.status == Status.OPEN
        lines = [
            row.payload.get("text")
            for row in s.scalars(select(Outbox).where(Outbox.kind == "slack.thread_line"))
        ]
    assert any("reopened" in (line or "") for line in lines)


def test_outbox_lane_order_and_lease(db):
    with db.transaction() as s:
        customer = actions.customer_for_email(s, "a@b.example")
        ticket = actions.open_ticket(
            s, POLICY, subject="x", requester=customer, origin=Origin.EMAIL, actor=ALICE
        )
        actions.set_priority(s, ticket, "high", ALICE)
    first = outbox.claim_due(db, "w1")
    # The card is first in its lane; the priority line waits behind it.
    assert [item.kind for item in first] == ["slack.card"]
    assert outbox.claim_due(db, "w2") == []
    with db.transaction() as s:
        assert outbox.mark_done(s, first[0].id, "w1", {"ts": "1.1"})
    second = outbox.claim_due(db, "w2")
    assert [item.kind for item in second] == ["slack.thread_line"]


def test_one_outbox_claim_statement_serves_any_kinds_and_limit(db):
    # The statement is built once and run with parameters: each call's kinds and limit must hold.
    with db.transaction() as s:
        for number in range(3):
            customer = actions.customer_for_email(s, f"c{number}@b.example")
            actions.open_ticket(s, POLICY, subject="x", requester=customer, origin=Origin.EMAIL, actor=ALICE)
    emails = outbox.claim_due(db, "w1", kinds=frozenset({"email.send"}))
    assert emails == []  # no acknowledgement rows from open_ticket alone
    cards = outbox.claim_due(db, "w1", kinds=frozenset({"slack.card", "email.send"}), limit=2)
    assert [item.kind for item in cards] == ["slack.card", "slack.card"]
    assert [item.ticket_number for item in outbox.claim_due(db, "w1", kinds=None, limit=5)] == [3]


def test_customers_by_address_share_their_domains_organization(db):
    # The customer and the domain's organization are looked up together: every combination of
    # known and new must come out as separate lookups would.
    with db.transaction() as s:
        dan = actions.customer_for_email(s, "Dan@Globex.example")
        erin = actions.customer_for_email(s, "erin@globex.example", "Erin")
        again = actions.customer_for_email(s, "dan@globex.example", "Dan Dorsey")
        public = actions.customer_for_email(s, "someone@gmail.com")
        assert again is dan and dan.name == "Dan Dorsey"  # named once the From header says so
        assert dan.organization_id is not None and erin.organization_id == dan.organization_id
        assert public.organization_id is None
        assert s.scalars(select(Organization.email_domain)).all() == ["globex.example"]


def test_a_slack_team_known_first_by_its_id_joins_its_mail_domains_organization(db):
    def in_slack(s, user, email=None):
        return actions.customer_for_slack_user(
            s, user, name=user, team_id="T0EXT", email=email, home_team_id="T0HOME", team_name=None
        )

    with db.transaction() as s:
        dan = actions.customer_for_email(s, "dan@globex.example", "Dan")
        erin = in_slack(s, "U0ERIN")  # her email is hidden: her team is all the desk knows
        assert erin.organization.name == "T0EXT"
        in_slack(s, "U0DAN", "dan@globex.example")  # Dan, known by email, in Slack: one company
        assert erin.organization_id == dan.organization_id
        [organization] = s.scalars(select(Organization)).all()
        assert (organization.name, organization.slack_team_id) == ("globex.example", "T0EXT")
        # A team whose first visible address is a public provider's is not named after it.
        public = actions.customer_for_slack_user(
            s,
            "U0GMAIL",
            name="g",
            team_id="T0FREE",
            email="g@gmail.com",
            home_team_id="T0HOME",
            team_name="gmail.com",
        )
        assert public.organization.name == "T0FREE" and public.organization.email_domain is None
        # Known from email, then in Slack: the domain's organization takes the team.
        zed = actions.customer_for_email(s, "zed@umbrella.example", "Zed")
        actions.customer_for_slack_user(
            s, "U0ZED", name="Zed", team_id="T0UMB", email="zed@umbrella.example", home_team_id="T0HOME"
        )
        assert zed.organization.slack_team_id == "T0UMB"
        hidden = actions.customer_for_slack_user(
            s, "U0UMB2", name="Una", team_id="T0UMB", home_team_id="T0HOME"
        )
        assert hidden.organization_id == zed.organization_id
        # A team met first in Slack takes its member's mail domain: mail from it joins later.
        ivy = actions.customer_for_slack_user(
            s, "U0IVY", name="Ivy", team_id="T0INI", email="ivy@initech.example", home_team_id="T0HOME"
        )
        peter = actions.customer_for_email(s, "peter@initech.example", "Peter")
        assert peter.organization_id == ivy.organization_id
        assert ivy.organization.name == "initech.example"
        # A second Slack team of the same company (its domain is the first team's): its own.
        other = actions.customer_for_slack_user(
            s, "U0IVY2", name="Ivy", team_id="T0INI2", email="ivy2@initech.example", home_team_id="T0HOME"
        )
        assert other.organization_id != ivy.organization_id and other.organization.name == "T0INI2"


def test_start_ticket_hands_back_the_requesters_participant(db):
    with db.transaction() as s:
        customer = actions.customer_for_email(s, "a@b.example", "Ann")
        ticket, requester = start_ticket(
            s, POLICY, subject="x", requester=customer, origin=Origin.EMAIL, actor=ALICE
        )
        stored = s.scalars(select(Participant).where(Participant.ticket_id == ticket.id)).all()
        assert requester is not None and list(stored) == [requester]
        assert (requester.email, requester.role) == ("a@b.example", "requester")
        slack_ticket, nobody = start_ticket(
            s,
            POLICY,
            subject="y",
            requester=customer,
            origin=Origin.SLACK,
            actor=ALICE,
            origin_channel="C0CONNECT",
            origin_thread_ts="1.1",
        )
        assert nobody is None and slack_ticket.number == ticket.number + 1


def test_release_gives_back_what_a_worker_holds_but_the_rows_it_keeps(db):
    # After an outage a worker gives back the rows a swallowed claim left it, but not those in flight.
    with db.transaction() as s:
        for number in range(3):
            customer = actions.customer_for_email(s, f"k{number}@b.example")
            actions.open_ticket(s, POLICY, subject="x", requester=customer, origin=Origin.EMAIL, actor=ALICE)
    held = outbox.claim_due(db, "w1", limit=3)
    other = outbox.claim_due(db, "w2")
    assert len(held) == 3 and other == []
    in_flight = held[0].id
    assert outbox.release(db, "w2", untouched=True) == 0  # another worker's rows are not its to give
    assert outbox.release(db, "w1", untouched=True, keep=[in_flight]) == 2
    with db.transaction() as s:
        rows = {row.id: (row.state, row.claimed_by, row.attempts) for row in s.scalars(select(Outbox))}
    assert rows[in_flight] == ("claimed", "w1", 1)
    assert sorted(state for row_id, state in rows.items() if row_id != in_flight) == [
        ("pending", None, 0),
        ("pending", None, 0),
    ]
    assert sorted(item.id for item in outbox.claim_due(db, "w2")) == sorted(item.id for item in held[1:])
