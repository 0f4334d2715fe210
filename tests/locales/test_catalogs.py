"""The message catalogs: complete, in step with the code, faithful to placeholders, on budget.

Every `N_` string is re-extracted from the code here, so a new message without a translation (or a
catalog entry whose message left the code) fails until `scripts/catalogs.sh` is run and the
entries translated. Budgets are measured on text rendered with realistic values and folded as the
gateway sends it: at most 2 GSM-7 segments per SMS, the receipt in 1, and every USSD screen within
160 septets without being cut.
"""

from __future__ import annotations

import gettext
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po

from flows import commands, confirm, engine, trade, turn
from flows.engine import Conversations
from flows.keywords import split_command
from flows.messages import Channel, Choice, Reply
from flows.speech import Speaker
from gateway import optout
from gateway.channels.ussd import render_screen
from gateway.text import (
    GSM7_SINGLE,
    USSD_LIMIT,
    Encoding,
    cost,
    fits_ussd,
    fold_for_sms,
    is_gsm7,
    ussd_length,
    with_choices,
)
from ledger.log import Log
from ledger.note import Signer, generate_signer_key
from ledger.receipts import format_code
from recpo.i18n import DEFAULT_LOCALE, LOCALES_PATH, translate, translations
from registry import transactions
from registry.demo import seed_demo
from registry.materials import MATERIALS
from registry.models import Language, Registrant, Transaction, TransactionStatus
from tests.flows.test_conversations import BUYER, JUANA, Phones, _code

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("flows", "registry", "gateway", "recpo")
KEYWORDS = {"N_": None, "gettext": None}  # as scripts/catalogs.sh extracts
LANGUAGES = ("es", "qu")
TEMPLATE = LOCALES_PATH / "messages.pot"


# --- catalogs and the code ----------------------------------------------------------------------


@dataclass(frozen=True)
class Extracted:
    msgid: str
    files: frozenset[str]


@cache
def extracted() -> dict[str, Extracted]:
    """Every message marked in the code, found with Babel as `pybabel extract` finds them."""
    with (ROOT / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    found: dict[str, set[str]] = {}
    for directory in SOURCES:
        for filename, _, message, _, _ in extract_from_dir(
            ROOT / directory, method_map, options_map, keywords=KEYWORDS
        ):
            assert isinstance(message, str), f"{filename}: plural or context message {message!r}"
            found.setdefault(message, set()).add(f"{directory}/{filename}")
    return {m: Extracted(m, frozenset(files)) for m, files in found.items()}


@cache
def catalog(lang: str) -> Catalog:
    with (LOCALES_PATH / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=lang)


@cache
def template() -> Catalog:
    with TEMPLATE.open("rb") as f:
        return read_po(f)


def entries(lang: str) -> Iterator:
    return (m for m in catalog(lang) if m.id)


def msgstr(lang: str, msgid: str) -> str:
    return catalog(lang)[msgid].string


class TestInStepWithTheCode:
    def test_the_template_holds_exactly_the_marked_messages(self):
        in_template = {m.id for m in template() if m.id}
        assert sorted(set(extracted()) - in_template) == [], "new messages: scripts/catalogs.sh"
        assert sorted(in_template - set(extracted())) == [], "stale messages: scripts/catalogs.sh"

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_the_catalog_holds_exactly_the_marked_messages(self, lang):
        in_catalog = {m.id for m in entries(lang)}
        assert sorted(set(extracted()) - in_catalog) == [], "missing: run scripts/catalogs.sh"
        assert sorted(in_catalog - set(extracted())) == [], "obsolete: run scripts/catalogs.sh"
        assert list(catalog(lang).obsolete) == []

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_every_message_is_translated_and_none_is_fuzzy(self, lang):
        assert not catalog(lang).fuzzy
        untranslated = [m.id for m in entries(lang) if not m.string or not m.string.strip()]
        fuzzy = [m.id for m in entries(lang) if m.fuzzy]
        assert untranslated == []
        assert fuzzy == []

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_the_catalog_loads_and_is_used(self, lang):
        loaded = translations(lang)
        assert isinstance(loaded, gettext.GNUTranslations)
        assert loaded.info()["language"] == lang
        for m in entries(lang):
            assert loaded.gettext(m.id) == m.string

    def test_spanish_is_the_default(self):
        assert DEFAULT_LOCALE == "es"
        question = translate(DEFAULT_LOCALE, trade.ASK_SELLER)
        assert question == msgstr("es", trade.ASK_SELLER) != trade.ASK_SELLER


class TestHeaders:
    def test_spanish_plural_forms_follow_cldr(self):
        """CLDR gives Spanish three forms (one, many, other); the header must say the same."""
        cldr = get_plural("es")
        spanish = catalog("es")
        assert (spanish.num_plurals, spanish.plural_expr) == (cldr.num_plurals, cldr.plural_expr)
        header = translations("es").info()["plural-forms"]
        assert header == f"nplurals={cldr.num_plurals}; plural={cldr.plural_expr};"
        plural = gettext.c2py(cldr.plural_expr)
        assert [plural(n) for n in (0, 1, 2, 1_000_000, 2_000_000, 1_000_001)] == [2, 0, 2, 1, 1, 2]

    def test_quechua_has_one_plural_form_and_awaits_review(self):
        quechua = catalog("qu")
        assert str(quechua.locale) == "qu"
        assert translations("qu").info()["plural-forms"] == "nplurals=1; plural=0;"
        assert "certified translator" in quechua.language_team
        assert "Ministerio de Cultura" in quechua.language_team
        comment = " ".join(quechua.header_comment.replace("#", " ").split())
        assert "AWAITING REVIEW by a certified translator from the Ministerio de Cultura" in comment

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_plural_messages_have_every_form(self, lang):
        plurals = [m for m in entries(lang) if m.pluralizable]
        for m in plurals:
            assert len(m.string) == catalog(lang).num_plurals and all(m.string), m.id


# --- placeholders and alphabet ------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"%(?:\((\w+)\))?([-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa%])")


def placeholders(text: str) -> set[tuple[str | None, str]]:
    """The `%(name)s` placeholders of `text` with their conversions, and `%%`."""
    return {(name or None, spec) for name, spec in _PLACEHOLDER.findall(text)}


KEYWORD_NAMES = (
    "COMPRA",
    "VENTA",
    "CODIGO",
    "SI",
    "NO",
    "VERIFICAR",
    "AYUDA",
    "IDIOMA",
    "SALIR",
    "ALTA",
    "BAJA",
)
_KEYWORD = re.compile(r"\b(" + "|".join(KEYWORD_NAMES) + r")\b")


class TestFaithful:
    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_placeholders_are_the_same(self, lang):
        differ = [
            (m.id, m.string) for m in entries(lang) if placeholders(m.id) != placeholders(m.string)
        ]
        assert differ == []

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_babel_finds_no_format_errors(self, lang):
        assert [(m.id, errors) for m, errors in catalog(lang).check()] == []

    def test_keywords_are_ones_the_phones_can_type(self):
        for word in KEYWORD_NAMES:
            assert split_command(word)[0] is not None or word in optout.STOP_WORDS, word

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_keywords_stay_untranslated(self, lang):
        lost = [
            (m.id, m.string)
            for m in entries(lang)
            if set(_KEYWORD.findall(m.id)) - set(_KEYWORD.findall(m.string))
        ]
        assert lost == []


class TestAlphabet:
    def test_quechua_is_pure_gsm7_with_the_ascii_apostrophe(self):
        for m in entries("qu"):
            assert not set(m.string) & set("’ʼ‘´`áíóúÁÍÓÚ"), m.string
            assert is_gsm7(m.string), m.string

    def test_spanish_folds_to_gsm7(self):
        for m in entries("es"):
            assert is_gsm7(fold_for_sms(m.string)), m.string


# --- budgets ------------------------------------------------------------------------------------

DNI_LENGTH = "A DNI has 8 digits; %(value)s has %(count)d."  # registry.identifiers.parse_dni
BUYER_NAME = "Planta de Beneficio Oro Sur S.A.C."
# What `describe_goods` is given: a doré lot, and a loaded-carbon lot whose text is longer.
DORE = {"material": "dore", "quantity": "25.5", "unit": "g", "grade": "850", "fine": "21.68"}
CARBON = {
    "material": "carbon",
    "quantity": "1250.5",
    "unit": "kg",
    "grade": "1850",
    "fine": "2313.42",
}
# Values by placeholder name and conversion; language-dependent ones are filled in `params`.
SAMPLES: dict[tuple[str, str], object] = {
    ("as_of", "s"): "2026-11-30",
    ("buyer", "s"): BUYER_NAME,
    ("ceiling", "s"): "20000",
    ("chars", "s"): "'O', 'l'",
    ("check", "s"): "K",
    ("code", "s"): "482913",
    ("codes", "s"): "482913, 517204, 330918",
    ("count", "d"): 10,
    ("country_code", "d"): 591,
    ("date", "s"): "30/11/2026",
    ("dni", "s"): "45678912",
    ("document", "s"): "DNI 45678912",
    ("example", "s"): "COMPRA 45678912 DORE 25.5G 850 5400",
    ("expected", "d"): 5,
    ("fine", "s"): "2313.42",
    ("floor", "s"): "50",
    ("found", "s"): "4",
    ("grade", "s"): "1200.5",
    ("hours", "s"): 48,
    ("index", "s"): 123456,
    ("keyword", "s"): "COMPRA",
    ("max", "d"): 18,
    ("max", "s"): "999.9",
    ("min", "d"): 6,
    ("min", "s"): "500",
    ("name", "s"): BUYER_NAME,
    ("per_gram", "s"): "2500.00",
    ("per_kg", "s"): "12500.00",
    ("prefix", "s"): "30",
    ("quantity", "s"): "1250.5 kg",
    ("receipt", "s"): "1234 5678 9012 3456",
    ("region", "s"): "SAN ANTONIO DE PUTINA (PUNO)",
    ("ruc", "s"): "20131312955",
    ("seller", "s"): BUYER_NAME,
    ("unit", "s"): "kg",
    ("units", "s"): "g, kg",
    ("value", "s"): "1.250,500",
    ("whole", "s"): "1250",
}
DESCRIBED = {  # messages whose goods come from flows.trade.describe_goods
    trade.SUMMARY_PURCHASE,
    trade.SUMMARY_SALE,
    trade.SELLER_ASKED,
    confirm.CLAIM_SUMMARY,
}
# Only ever sent by SMS/WhatsApp: notices to the other party and the one-line entry.
NOT_ON_USSD = {
    trade.SELLER_ASKED,
    confirm.REJECTED_BY_OTHER,
    confirm.EXPIRED_NOTICE,
    trade.ONE_LINE_FORMAT,
    trade.BAD_TOKEN,
}
PARSERS = {"flows/parsing.py", "registry/materials.py", "registry/identifiers.py"}
# Why the other party named in one line may be refused (flows.trade._read_party).
PARTY_REFUSALS = {
    *transactions.STANDING_REASONS.values(),
    transactions.SELLER_NO_PHONE,
    transactions.REGISTRANT_SUSPENDED,
    transactions.BUYER_UNKNOWN,
    "Mercury has no grade: write -",
}


def _longest_material(say: Speaker) -> str:
    return max((say.material(m) for m in MATERIALS), key=len)


def params(lang: str, msgid: str, goods: dict | None = None) -> dict[str, object]:
    """Realistic values for the placeholders of `msgid`, rendered for `lang` where it matters."""
    say = Speaker(lang)
    values: dict[str, object] = {}
    for name, spec in placeholders(msgid):
        if name is None:
            continue
        if name == "goods":
            lot = goods or CARBON
            if msgid in DESCRIBED:
                values[name] = trade.describe_goods(say, lot)
            else:  # VERIFICAR shows the material and the quantity only
                values[name] = commands._goods(SimpleNamespace(say=say), lot)
        elif name == "material":
            values[name] = _longest_material(say)
        elif name == "price":
            values[name] = "5400.555" if "S/ %(price)s" in msgid else say.money(Decimal("5400"))
        elif name == "party":
            values[name] = say.gettext("DNI/RUC") if "%(keyword)s" in msgid else "20131312955"
        elif name == "position":
            values[name] = say.gettext(trade.TOKEN_NAMES[5])
        elif name == "problem":
            values[name] = say(DNI_LENGTH, value="4567891", count=7)
        else:
            values[name] = SAMPLES[(name, spec[-1])]
    return values


def render(lang: str, msgid: str, goods: dict | None = None) -> str:
    return translate(lang, msgid, **params(lang, msgid, goods))


def _cases(ussd: bool = False) -> Iterator:
    """(lang, msgid, goods) for every message (on USSD: those it shows); goods once per lot."""
    for lang in LANGUAGES:
        for msgid in sorted(extracted()):
            if ussd and msgid in NOT_ON_USSD:
                continue
            if "%(goods)s" not in msgid:
                yield pytest.param(lang, msgid, None, id=f"{lang}-{msgid[:40]}")
                continue
            for label, lot in (("carbon", CARBON), ("dore", DORE)):
                marks = []
                yield pytest.param(lang, msgid, lot, id=f"{lang}-{label}-{msgid[:40]}", marks=marks)


# The mining right offered as option 1: its code and the start of a long REINFO name.
RIGHT_CHOICE = Choice(
    "1", "010149108 " + "ACUMULACION RINCONADA NRO 1 DE ANANEA"[: trade.RIGHT_NAME_SHOWN]
)


def _ussd_yes_no(say: Speaker) -> tuple[Choice, ...]:
    return (Choice("1", say.gettext(turn.YES)), Choice("2", say.gettext(turn.NO)))


def screens(lang: str, goods: dict) -> dict[str, str]:
    """The USSD screens that join a message to its numbered options, as the flows build them."""
    say = Speaker(lang)
    menu = with_choices(
        say(engine.USSD_TITLE),
        [Choice(str(n), say(o)) for n, o in enumerate(engine.USSD_OPTIONS, start=1)],
    )
    yes_no = _ussd_yes_no(say)
    return {
        "menu": menu,
        "menu after a wrong option": say(engine.USSD_BAD_OPTION) + "\n" + menu,
        "material": with_choices(
            say(trade.ASK_MATERIAL), [Choice(str(m.number), say.material(m)) for m in MATERIALS]
        ),
        "language": with_choices(
            say(commands.ASK_LANGUAGE),
            [Choice(str(n), v) for n, v in enumerate(commands.LANGUAGE_NAMES.values(), start=1)],
        ),
        "mining right with its default": with_choices(say(trade.ASK_RIGHT_DEFAULT), [RIGHT_CHOICE]),
        "purchase summary": with_choices(render(lang, trade.SUMMARY_PURCHASE, goods), yes_no),
        "sale summary": with_choices(render(lang, trade.SUMMARY_SALE, goods), yes_no),
        "claim summary": with_choices(render(lang, confirm.CLAIM_SUMMARY, goods), yes_no),
    }


def _screen_cases() -> Iterator:
    for lang in LANGUAGES:
        for label, lot in (("carbon", CARBON), ("dore", DORE)):
            for name in screens(lang, lot):
                marks = []
                yield pytest.param(lang, lot, name, id=f"{lang}-{label}-{name}", marks=marks)


def assert_fits_ussd(text: str) -> None:
    folded = fold_for_sms(text)
    assert fits_ussd(folded), f"{ussd_length(folded) if is_gsm7(folded) else 'not GSM-7'}: {text}"
    screen = render_screen(Reply("+51987000001", text, Channel.USSD, final=False))
    assert screen == "CON " + folded  # shown whole: not cut, nothing replaced
    assert ussd_length(screen[4:]) <= USSD_LIMIT


class TestSmsBudget:
    @pytest.mark.parametrize(("lang", "msgid", "goods"), list(_cases()))
    def test_two_gsm7_segments_at_most(self, lang, msgid, goods):
        text = fold_for_sms(render(lang, msgid, goods))
        sent = cost(text)
        assert sent.encoding is Encoding.GSM7, text
        assert sent.segments <= 2, f"{sent.units} septets: {text}"

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_the_receipt_fits_one_segment(self, lang):
        text = fold_for_sms(render(lang, confirm.CONFIRMED))
        sent = cost(text)
        assert (sent.encoding, sent.segments) == (Encoding.GSM7, 1), text
        assert sent.units <= GSM7_SINGLE

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_options_listed_in_an_sms_fit(self, lang):
        say = Speaker(lang)
        materials = [Choice(str(m.number), say.material(m)) for m in MATERIALS]
        for text in (
            with_choices(say(trade.ASK_MATERIAL), materials),
            screens(lang, CARBON)["language"],
            with_choices(say(trade.ASK_RIGHT_DEFAULT), [RIGHT_CHOICE]),
        ):
            sent = cost(fold_for_sms(text))
            assert (sent.encoding, sent.segments) == (Encoding.GSM7, 1), text

    @pytest.mark.parametrize("lang", LANGUAGES)
    def test_a_wrong_word_in_one_line_with_any_error_fits(self, lang):
        """The one-line entry answers with the error, the word it is in, and the format."""
        say = Speaker(lang)
        format_help = say(trade.ONE_LINE_FORMAT, **params(lang, trade.ONE_LINE_FORMAT))
        errors = [
            msgid
            for msgid, found in extracted().items()
            if found.files & PARSERS or msgid in PARTY_REFUSALS
        ]
        assert len(errors) > 50
        for msgid in errors:
            problem = render(lang, msgid)
            text = fold_for_sms(
                say(trade.BAD_TOKEN, problem=problem, position=say.gettext(trade.TOKEN_NAMES[5]))
                + " "
                + format_help
            )
            sent = cost(text)
            assert (sent.encoding, sent.segments <= 2) == (Encoding.GSM7, True), text


class TestUssdBudget:
    @pytest.mark.parametrize(("lang", "msgid", "goods"), list(_cases(ussd=True)))
    def test_every_screen_fits_uncut(self, lang, msgid, goods):
        assert_fits_ussd(render(lang, msgid, goods))

    @pytest.mark.parametrize(("lang", "goods", "name"), list(_screen_cases()))
    def test_screens_with_options_fit_uncut(self, lang, goods, name):
        assert_fits_ussd(screens(lang, goods)[name])


# --- a purchase with a Quechua-speaking seller --------------------------------------------------

ORIGIN = "recpo.test/ledger"


@pytest.fixture
def phones(database, db_session, clock) -> Phones:
    seed_demo(db_session, clock.now())
    db_session.commit()
    log = Log(ORIGIN, Signer.from_text(generate_signer_key(ORIGIN)), b"s" * 32, clock)
    return Phones(database, Conversations(ledger=log), clock)


class TestQuechuaSeller:
    def test_a_purchase_reaches_the_seller_and_the_receipt_in_quechua(self, phones, db_session):
        juana = db_session.scalars(
            sa.select(Registrant).where(Registrant.document_number == "45678912")
        ).one()
        assert juana.language is Language.QUECHUA
        es, qu = Speaker("es"), Speaker("qu")
        steps = [
            ("COMPRA", es(trade.ASK_SELLER)),
            ("45678912", es(trade.ASK_MATERIAL)),
            ("6", es(trade.ASK_QUANTITY, material=es.material("dore"), units="g, kg")),
            ("25,5 g", es(trade.ASK_FINENESS)),
            ("850", es(trade.ASK_PRICE)),
        ]
        for text, question in steps:
            assert phones.send(BUYER, text)[0].text == question
        summary = phones.send(BUYER, "S/ 5 400")[0].text
        assert summary == es(
            trade.SUMMARY_PURCHASE,
            goods=trade.describe_goods(es, DORE),
            price=es.money(Decimal("5400")),
            party="45678912",
        )

        phones.send(BUYER, "SI")
        code = _code(phones.last_to(BUYER))
        assert phones.last_to(BUYER) == es(trade.SENT_TO_SELLER, code=code)
        asked = qu(
            trade.SELLER_ASKED,
            buyer=BUYER_NAME,
            goods=trade.describe_goods(qu, DORE),
            price=qu.money(Decimal("5400")),
            code=code,
        )
        assert phones.last_to(JUANA) == asked
        assert asked != es(
            trade.SELLER_ASKED,
            buyer=BUYER_NAME,
            goods=trade.describe_goods(es, DORE),
            price=es.money(Decimal("5400")),
            code=code,
        )

        [question] = phones.send(JUANA, "Arí")  # then the mining right, in Quechua too
        assert question.text == qu(trade.ASK_RIGHT_DEFAULT) != es(trade.ASK_RIGHT_DEFAULT)
        assert question.choices == (Choice("1", "010149108 Rinconada Uno"),)
        replies = phones.send(JUANA, "1")
        assert {r.phone for r in replies} == {BUYER, JUANA}
        db_session.expire_all()
        [transaction] = db_session.scalars(sa.select(Transaction)).all()
        assert transaction.status is TransactionStatus.CONFIRMED
        receipt = format_code(transaction.receipt_code)
        assert phones.last_to(JUANA) == qu(confirm.CONFIRMED, receipt=receipt)
        assert phones.last_to(BUYER) == es(confirm.CONFIRMED, receipt=receipt)
        assert qu(confirm.CONFIRMED, receipt=receipt) != es(confirm.CONFIRMED, receipt=receipt)
