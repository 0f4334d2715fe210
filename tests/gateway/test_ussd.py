"""The Africa's Talking USSD callback: a table of requests and what each must leave behind."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

import pytest
import sqlalchemy as sa

from flows import commands, engine
from flows.messages import Channel, Inbound, Reply
from flows.models import Conversation
from gateway.channels import ussd
from gateway.channels.ussd import answers, fit_screen, render_screen
from gateway.models import Direction, Message, OutboxItem, Status
from gateway.text import fits_ussd, fold_for_sms, ussd_length
from recpo.i18n import DEFAULT_LOCALE, translate

PHONE = "+51987654321"
OTHER_PHONE = "+51912345678"


def callback(**fields: str) -> dict[str, str]:
    """One callback as Africa's Talking sends it; `fields` override the defaults."""
    form = {
        "sessionId": "ATUid_0a1b2c3d",
        "serviceCode": "*500#",
        "phoneNumber": PHONE,
        "networkCode": "71606",
        "text": "",
    }
    form.update(fields)
    return form


def without(name: str) -> dict[str, str]:
    form = callback()
    del form[name]
    return form


@dataclass(frozen=True)
class Case:
    label: str
    request: dict[str, str] | str  # a form, or a raw form-encoded body
    status: int
    body: str  # prefix of the response body
    contains: tuple[str, ...] = ()
    before: tuple[dict[str, str], ...] = ()  # earlier callbacks of the same test
    repeats_last: bool = False  # the response equals the last earlier one, byte for byte
    inbound: tuple[tuple[str, str, str], ...] = ()  # (phone, text, provider id) logged, in order
    screens: tuple[bool, ...] = ()  # ends_session of each screen logged, in order
    conversations: tuple[str, ...] = ()  # phones with a conversation row


def screen(message: str) -> str:
    """`message` as a phone of unknown language sees it on the screen (Spanish, folded)."""
    return fold_for_sms(translate(DEFAULT_LOCALE, message))


SID = "ATUid_0a1b2c3d"
MENU = ("\n1 ", "\n6 ", "\n1 " + screen(engine.USSD_OPTIONS[0]))  # the root menu: options 1-6
HELP = (screen(commands.HELP), "COMPRA", "VENTA")

CASES = [
    Case(
        "session start shows the root menu",
        callback(),
        200,
        "CON ",
        MENU,
        inbound=((PHONE, "", f"{SID}:0"),),
        screens=(False,),
        conversations=(PHONE,),
    ),
    Case(
        "an answer gets the help and ends",
        callback(text="6"),
        200,
        "END ",
        HELP,
        inbound=((PHONE, "6", f"{SID}:1"),),
        screens=(True,),
        conversations=(PHONE,),
    ),
    Case(
        "a later step passes only the newest answer",
        callback(text="5*1"),
        200,
        "END ",
        (screen(commands.LANGUAGE_SET),),
        before=(callback(), callback(text="5")),
        inbound=((PHONE, "", f"{SID}:0"), (PHONE, "5", f"{SID}:1"), (PHONE, "1", f"{SID}:2")),
        screens=(False, False, True),
        conversations=(PHONE,),
    ),
    Case(
        "the wire form as the aggregator encodes it",
        "sessionId=ATUid_wire&serviceCode=%2A500%23&phoneNumber=%2B51987654321"
        "&networkCode=71606&text=2%2A%C2%A0VERIFICAR%E2%80%99%20%201234",
        200,
        "CON ",
        (screen(engine.USSD_BAD_OPTION), *MENU),  # not a menu option: the menu again
        inbound=((PHONE, "VERIFICAR' 1234", "ATUid_wire:2"),),
        screens=(False,),
        conversations=(PHONE,),
    ),
    Case("another service code is not ours", callback(serviceCode="*501#"), 404, "unknown"),
    Case("missing sessionId", without("sessionId"), 400, "missing sessionId"),
    Case("empty sessionId", callback(sessionId=" "), 400, "missing sessionId"),
    Case("missing serviceCode", without("serviceCode"), 400, "missing serviceCode"),
    Case("missing phoneNumber", without("phoneNumber"), 400, "missing phoneNumber"),
    Case("sessionId with a space", callback(sessionId="ATUid 1"), 400, "sessionId must"),
    Case("sessionId too long for the log", callback(sessionId="A" * 65), 400, "sessionId must"),
    Case("phone not a number", callback(phoneNumber="hola"), 400, "phoneNumber is not"),
    Case("phone without country code", callback(phoneNumber="987654321"), 400, "phoneNumber"),
    Case("phone too short", callback(phoneNumber="+5198765"), 400, "phoneNumber is not"),
    Case("body over the size limit", callback(text="1" * (1024 * 1024 + 1)), 413, ""),
    Case(
        "a retried callback gets the same screen and is not processed twice",
        callback(text="6"),
        200,
        "END ",
        HELP,
        before=(callback(), callback(text="6")),
        repeats_last=True,
        inbound=((PHONE, "", f"{SID}:0"), (PHONE, "6", f"{SID}:1")),
        screens=(False, True),
        conversations=(PHONE,),
    ),
    Case(
        "a retried session start gets the menu again",
        callback(),
        200,
        "CON ",
        MENU,
        before=(callback(),),
        repeats_last=True,
        inbound=((PHONE, "", f"{SID}:0"),),
        screens=(False,),
        conversations=(PHONE,),
    ),
    Case(
        "a session cannot be taken over by another phone",
        callback(phoneNumber=OTHER_PHONE, text="6"),
        200,
        "END ",
        (screen(ussd.OTHER_PHONE),),
        before=(callback(),),
        inbound=((PHONE, "", f"{SID}:0"),),
        screens=(False,),
        conversations=(PHONE,),
    ),
    Case(
        "nor restarted by another phone",
        callback(phoneNumber=OTHER_PHONE),
        200,
        "END ",
        (screen(ussd.OTHER_PHONE),),
        before=(callback(),),
        inbound=((PHONE, "", f"{SID}:0"),),
        screens=(False,),
        conversations=(PHONE,),
    ),
    Case(
        "a new session from the same phone after a dropped one",
        callback(sessionId="ATUid_again"),
        200,
        "CON ",
        (screen(commands.ASK_LANGUAGE),),  # the question it was on when the session dropped
        before=(callback(), callback(text="5")),
        inbound=(
            (PHONE, "", f"{SID}:0"),
            (PHONE, "5", f"{SID}:1"),
            (PHONE, "", "ATUid_again:0"),
        ),
        screens=(False, False, False),
        conversations=(PHONE,),
    ),
    Case(
        "session ids are matched literally, not as patterns",
        callback(sessionId="AT_1"),
        200,
        "CON ",
        MENU,
        before=(callback(sessionId="ATx1", phoneNumber=OTHER_PHONE),),
        inbound=((OTHER_PHONE, "", "ATx1:0"), (PHONE, "", "AT_1:0")),
        screens=(False, False),
        conversations=(OTHER_PHONE, PHONE),
    ),
]


def _post(client, request: dict[str, str] | str):
    if isinstance(request, str):
        return client.post("/ussd", data=request, content_type="application/x-www-form-urlencoded")
    return client.post("/ussd", data=request)


@pytest.mark.parametrize("case", CASES, ids=[case.label for case in CASES])
def test_callback(client, db_session, case: Case):
    earlier = [_post(client, form) for form in case.before]
    assert all(r.status_code == 200 for r in earlier)

    response = _post(client, case.request)

    assert response.status_code == case.status
    body = response.get_data(as_text=True)
    assert body.startswith(case.body)
    for text in case.contains:
        assert text in body
    if case.repeats_last:
        assert body == earlier[-1].get_data(as_text=True)
    if case.status in (200, 400, 404):
        assert response.mimetype == "text/plain"
        assert response.mimetype_params.get("charset") == "utf-8"
    if case.status == 200:
        assert body[:4] in ("CON ", "END ")
        assert fits_ussd(body[4:])

    messages = db_session.scalars(sa.select(Message).order_by(Message.id)).all()
    inbound = [m for m in messages if m.direction is Direction.IN]
    outbound = [m for m in messages if m.direction is Direction.OUT]
    assert [(m.phone, m.body, m.provider_id) for m in inbound] == list(case.inbound)
    assert all(m.channel is Channel.USSD for m in messages)
    assert [m.ends_session for m in outbound] == list(case.screens)
    assert [m.in_reply_to for m in outbound] == [m.id for m in inbound]
    assert all(m.status is Status.SENT and m.provider_id is None for m in outbound)
    assert db_session.scalar(sa.select(sa.func.count()).select_from(OutboxItem)) == 0
    phones = db_session.scalars(sa.select(Conversation.phone).order_by(Conversation.phone)).all()
    assert phones == sorted(case.conversations)


class TestSessions:
    def test_a_new_session_continues_the_phones_conversation(self, client, db_session, clock):
        first = client.post("/ussd", data=callback(sessionId="ATUid_first"))
        dropped_at = clock.now()
        clock.advance(dt.timedelta(minutes=5))
        second = client.post("/ussd", data=callback(sessionId="ATUid_second"))

        assert first.get_data(as_text=True).startswith("CON ")
        assert second.get_data(as_text=True) == first.get_data(as_text=True)
        conversation = db_session.scalars(sa.select(Conversation)).one()
        assert conversation.phone == PHONE
        assert conversation.updated_at > dropped_at

    def test_the_screen_served_is_the_one_logged(self, client, db_session):
        response = client.post("/ussd", data=callback(text="6"))
        screen = db_session.scalars(
            sa.select(Message).where(Message.direction == Direction.OUT)
        ).one()
        assert response.get_data(as_text=True) == "END " + screen.body

    def test_a_refused_phone_is_told_in_its_own_language(self, client, db_session):
        # The other phone chose Quechua in its own session (menu 5, then 2).
        for text in ("", "5", "5*2"):
            own = callback(sessionId="ATUid_own", phoneNumber=OTHER_PHONE, text=text)
            assert client.post("/ussd", data=own).status_code == 200
        client.post("/ussd", data=callback())
        response = client.post("/ussd", data=callback(phoneNumber=OTHER_PHONE, text="6"))
        expected = fold_for_sms(translate("qu", ussd.OTHER_PHONE))
        assert expected != screen(ussd.OTHER_PHONE)
        assert response.get_data(as_text=True) == "END " + fit_screen(expected)


class TestOwner:
    """`owned_by_another_phone` on both backends (its statement differs between them)."""

    NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)

    def _log(self, session, phone: str, provider_id: str, age: dt.timedelta = dt.timedelta()):
        at = self.NOW - age
        session.add(
            Message(
                channel=Channel.USSD,
                direction=Direction.IN,
                phone=phone,
                body="",
                provider_id=provider_id,
                status=Status.RECEIVED,
                encoding="gsm7",
                segments=1,
                created_at=at,
                updated_at=at,
            )
        )
        session.flush()

    def _step(self, phone: str, step: int, session_id: str = "ATUid_x") -> Inbound:
        return Inbound(
            Channel.USSD, phone, "1", f"{session_id}:{step}", self.NOW, session_id=session_id
        )

    def test_a_session_started_elsewhere_belongs_to_that_phone(self, backend_session):
        self._log(backend_session, OTHER_PHONE, "ATUid_x:0")
        assert ussd.owned_by_another_phone(backend_session, self._step(PHONE, 1))
        assert not ussd.owned_by_another_phone(backend_session, self._step(OTHER_PHONE, 1))

    def test_other_sessions_and_old_sessions_do_not_count(self, backend_session):
        self._log(backend_session, OTHER_PHONE, "ATUid_y:0")
        self._log(backend_session, OTHER_PHONE, "ATUid_x:0", age=ussd.SESSION_LIFETIME * 2)
        assert not ussd.owned_by_another_phone(backend_session, self._step(PHONE, 1))

    @pytest.mark.parametrize("step", [4, 40])
    def test_every_earlier_step_counts_in_short_and_long_sessions(self, backend_session, step):
        self._log(backend_session, PHONE, "ATUid_x:0")
        self._log(backend_session, OTHER_PHONE, f"ATUid_x:{step - 3}")
        assert ussd.owned_by_another_phone(backend_session, self._step(PHONE, step))
        assert not ussd.owned_by_another_phone(backend_session, self._step(PHONE, step - 4))

    def test_the_step_itself_counts_beyond_the_steps_looked_back_on(self, backend_session):
        far = ussd.MAX_STEPS + 20
        self._log(backend_session, OTHER_PHONE, f"ATUid_x:{far}")
        assert ussd.owned_by_another_phone(backend_session, self._step(PHONE, far))
        assert not ussd.owned_by_another_phone(backend_session, self._step(PHONE, far - 1))


class TestAnswers:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [("", []), ("6", ["6"]), ("1*6", ["1", "6"]), ("1*", ["1", ""]), ("1**2", ["1", "", "2"])],
    )
    def test_split(self, text, expected):
        assert answers(text) == expected


def _reply(text: str, final: bool = False) -> Reply:
    return Reply(PHONE, text, Channel.USSD, final=final)


LONG = (
    "RECPO: su compra de oro refogado quedó registrada con el código 482913. "
    "El vendedor debe confirmarla desde su teléfono antes de 24 horas; si no lo hace, "
    "la operación vence y deberá registrarla de nuevo."
)


class TestScreens:
    def test_con_and_end(self):
        assert render_screen(_reply("Elija\n1 Si\n2 No")) == "CON Elija\n1 Si\n2 No"
        assert render_screen(_reply("Gracias", final=True)) == "END Gracias"

    def test_long_screen_is_cut_at_a_word_boundary(self, caplog):
        caplog.set_level(logging.WARNING, logger="gateway.channels.ussd")
        body = render_screen(_reply(LONG))

        assert body.startswith("CON ")
        screen = body[4:]
        assert fits_ussd(screen)
        assert screen.endswith("...")
        head = screen.removesuffix("...")
        folded = fold_for_sms(LONG)  # ó, á lose the accent; é stays (GSM-7)
        assert "teléfono" in folded and "operacion" in folded
        assert folded.startswith(head)
        assert folded[len(head)] == " "
        assert ussd_length(screen) > 150  # cut at the last word that fits, not far before

        warning = caplog.records[-1]
        assert warning.levelno == logging.WARNING
        assert str(ussd_length(folded)) in warning.getMessage()
        assert "RECPO" not in warning.getMessage()

    def test_exactly_160_is_left_alone(self):
        text = ("abcd " * 32)[:160]
        assert render_screen(_reply(text, final=True)) == "END " + text

    def test_accents_outside_gsm7_are_folded(self):
        assert fit_screen("Operación válida, año 2026") == "Operacion valida, año 2026"

    def test_extension_characters_count_double(self):
        screen = fit_screen("€" * 100)
        assert screen == "€" * 78 + "..."
        assert ussd_length(screen) == 159

    def test_one_long_word_is_cut_where_it_must(self):
        screen = fit_screen("x" * 300)
        assert screen == "x" * 157 + "..."

    def test_characters_without_a_fold_become_question_marks(self):
        assert fit_screen("Listo ✅ 金") == "Listo ? ?"

    def test_no_reply_ends_with_a_message(self):
        body = render_screen(None)
        assert body.startswith("END ")
        assert len(body) > len("END ")
        assert fits_ussd(body[4:])
