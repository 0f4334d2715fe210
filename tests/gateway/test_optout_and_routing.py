"""Opt-out keywords, and WhatsApp messages outside the 24-hour window going by SMS."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from flows import commands
from flows.engine import Conversations
from flows.messages import Answer, Channel, Choice, Inbound, Reply
from gateway import optout, outbox
from gateway.inbound import receive
from gateway.models import Direction, Message, OptOut, OutboxItem, OutboxState, Status
from gateway.senders import RecordingSender, WindowClosedError
from gateway.text import fold_for_sms
from recpo.i18n import DEFAULT_LOCALE, translate

PHONE = "+51987000011"
OTHER = "+51987000012"


def _in(clock, text: str, n: int, channel: Channel = Channel.SMS, phone: str = PHONE) -> Inbound:
    return Inbound(channel, phone, text, f"M{n}", clock.now())


def _said(message: str) -> str:
    """`message` as an SMS to a phone of unknown language: Spanish, folded."""
    return fold_for_sms(translate(DEFAULT_LOCALE, message))


def _replies(session, phone: str = PHONE) -> list[Message]:
    return list(
        session.scalars(
            sa.select(Message)
            .where(Message.direction == Direction.OUT, Message.phone == phone)
            .order_by(Message.id)
        )
    )


class TestOptOut:
    def test_baja_confirms_once_then_silence_until_alta(self, database, db_session, clock):
        received = receive(database, Conversations(), _in(clock, "BAJA", 1))
        assert len(received.outbox) == 1
        assert db_session.get(Message, received.outbox[0]).body == _said(optout.OPTED_OUT)
        assert db_session.get(OptOut, PHONE) is not None
        # Anything else gets one reminder, not a conversation.
        reminder = receive(database, Conversations(), _in(clock, "COMPRA", 2))
        assert len(reminder.outbox) == 1
        assert db_session.get(Message, reminder.outbox[0]).body == _said(optout.STILL_OPTED_OUT)
        back = receive(database, Conversations(), _in(clock, "alta", 3))
        assert len(back.outbox) == 1
        assert db_session.get(Message, back.outbox[0]).body == _said(optout.OPTED_IN)
        assert db_session.get(OptOut, PHONE) is None
        normal = receive(database, Conversations(), _in(clock, "hola", 4))
        assert db_session.get(Message, normal.outbox[0]).body == _said(commands.UNKNOWN)

    def test_the_confirmation_speaks_the_language_the_phone_chose(
        self, database, db_session, clock
    ):
        # A phone of no registrant chose Quechua (IDIOMA, 2): BAJA is confirmed in Quechua.
        for n, text in enumerate(("IDIOMA", "2", "BAJA"), start=1):
            received = receive(database, Conversations(), _in(clock, text, n))
        quechua = fold_for_sms(translate("qu", optout.OPTED_OUT))
        assert quechua != _said(optout.OPTED_OUT)
        assert db_session.get(Message, received.outbox[0]).body == quechua

    def test_stop_words_count_only_alone(self, database, db_session, clock):
        receive(database, Conversations(), _in(clock, "para mi hermano", 1))
        assert db_session.get(OptOut, PHONE) is None
        receive(database, Conversations(), _in(clock, "Stop", 2))
        assert db_session.get(OptOut, PHONE) is not None

    def test_alta_with_a_document_opts_in_and_reaches_the_conversations(
        self, database, db_session, clock
    ):
        receive(database, Conversations(), _in(clock, "PARA", 1))
        received = receive(database, Conversations(), _in(clock, "ALTA 45678912", 2))
        assert db_session.get(OptOut, PHONE) is None
        assert len(received.outbox) == 1  # the conversations answered

    def test_messages_to_an_opted_out_phone_are_logged_not_sent(self, database, db_session, clock):
        receive(database, Conversations(), _in(clock, "BAJA", 1))

        class Notifies(Conversations):
            def handle(self, session, inbound):
                return Answer([Reply(PHONE, "a notice for the opted-out phone", Channel.SMS)])

        received = receive(database, Notifies(), _in(clock, "hola", 2, phone=OTHER))
        assert received.outbox == []
        notice = _replies(db_session)[-1]
        assert notice.status is Status.FAILED
        assert db_session.get(OutboxItem, notice.id) is None
        assert notice.events[-1].detail == "the phone opted out (BAJA)"

    def test_ussd_sessions_ignore_opt_out(self, database, clock):
        receive(database, Conversations(), _in(clock, "BAJA", 1))
        received = receive(database, Conversations(), _in(clock, "", 2, channel=Channel.USSD))
        assert received.inline is not None


class TestWhatsAppWindow:
    def _notify(self, database, clock, n: int):
        class Notifies(Conversations):
            def handle(self, session, inbound):
                return Answer(
                    [
                        Reply(
                            PHONE,
                            "Confirm?",
                            Channel.WHATSAPP,
                            (Choice("1", "Yes"), Choice("2", "No")),
                        )
                    ]
                )

        return receive(database, Notifies(), _in(clock, "hola", n, phone=OTHER))

    def test_open_window_keeps_whatsapp(self, database, db_session, clock):
        receive(database, Conversations(), _in(clock, "hola", 1, channel=Channel.WHATSAPP))
        clock.advance(dt.timedelta(hours=23))
        received = self._notify(database, clock, 2)
        assert db_session.get(Message, received.outbox[0]).channel is Channel.WHATSAPP

    def test_closed_window_goes_by_sms_with_numbered_choices(self, database, db_session, clock):
        receive(database, Conversations(), _in(clock, "hola", 1, channel=Channel.WHATSAPP))
        clock.advance(dt.timedelta(hours=25))
        received = self._notify(database, clock, 2)
        message = db_session.get(Message, received.outbox[0])
        assert message.channel is Channel.SMS
        assert message.body == "Confirm?\n1 Yes\n2 No"

    def test_provider_refusal_falls_back_to_sms(self, database, db_session, clock):
        receive(database, Conversations(), _in(clock, "hola", 1, channel=Channel.WHATSAPP))
        received = self._notify(database, clock, 2)
        whatsapp, sms = RecordingSender(), RecordingSender()
        whatsapp.failures.append(WindowClosedError("131047: re-engagement required"))
        senders = {Channel.WHATSAPP: whatsapp, Channel.SMS: sms, Channel.USSD: sms}
        result = outbox.send_item(database, senders, received.outbox[0], clock)
        assert result.outcome == "fallback"
        original = db_session.get(Message, received.outbox[0])
        assert original.status is Status.FAILED
        assert db_session.get(OutboxItem, original.id).state is OutboxState.DEAD
        assert outbox.send_item(database, senders, result.fallback_id, clock).outcome == "sent"
        assert [m.text for m in sms.sent] == ["Confirm?\n1 Yes\n2 No"]
        assert db_session.get(Message, result.fallback_id).channel is Channel.SMS
