"""Keywords of the conversation grammar (DESIGN.md §4), accent- and case-insensitive.

Spanish keywords with Quechua synonyms (GLOSSARY.md): arí (yes), manam/manan (no),
yanapay (help), rantiy (buy), rantikuy (sell), maskay (search: verify), lluqsiy (leave).
RUNASIMI (the Quechua language) switches straight to Quechua; CASTELLANO/ESPAÑOL to Spanish.
"""

from __future__ import annotations

import enum
import unicodedata


class Command(enum.StrEnum):
    """What a message's first word asks for."""

    PURCHASE = "purchase"
    SALE = "sale"
    CODE = "code"
    YES = "yes"
    NO = "no"
    VERIFY = "verify"
    HELP = "help"
    LANGUAGE = "language"
    QUECHUA = "quechua"
    SPANISH = "spanish"
    EXIT = "exit"
    REGISTER = "register"


_WORDS = {
    Command.PURCHASE: ("COMPRA", "COMPRAR", "RANTIY"),
    Command.SALE: ("VENTA", "VENDER", "RANTIKUY"),
    Command.CODE: ("CODIGO", "COD"),
    Command.YES: ("SI", "ARI", "ARINIY", "OK"),
    Command.NO: ("NO", "MANAM", "MANAN", "AMA"),
    Command.VERIFY: ("VERIFICAR", "VERIFICA", "MASKAY"),
    Command.HELP: ("AYUDA", "YANAPAY", "YANAPA", "HELP"),
    Command.LANGUAGE: ("IDIOMA", "LENGUA", "SIMI"),
    Command.QUECHUA: ("RUNASIMI", "QUECHUA", "QHESWA", "QICHWA"),
    Command.SPANISH: ("CASTELLANO", "ESPANOL"),
    Command.EXIT: ("SALIR", "CANCELAR", "LLUQSIY"),
    Command.REGISTER: ("ALTA",),
}
_LOOKUP = {word: command for command, words in _WORDS.items() for word in words}


def fold(text: str) -> str:
    """Upper case without accents or apostrophes: "Arí" → "ARI", "ch'aska" → "CHASKA"."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return plain.replace("'", "").upper()


def split_command(text: str) -> tuple[Command | None, list[str]]:
    """Return the command named by the first word (if any) and the remaining words."""
    words = text.split()
    if not words:
        return None, []
    command = _LOOKUP.get(fold(words[0]))
    if command is None and len(words) >= 2 and fold(" ".join(words[:2])) == "ARI NIY":
        return Command.YES, words[2:]
    return command, words[1:] if command else words
