#!/usr/bin/env bash
# Refresh the message catalogs after user-facing text changed in the code.
#
#   scripts/catalogs.sh
#
# 1. Extracts every string marked with N_ (or passed to gettext) in flows/, registry/, gateway/
#    and recpo/ (mapping in babel.cfg) into locales/messages.pot.
# 2. Updates locales/<lang>/LC_MESSAGES/messages.po for each language (creating it if missing):
#    new msgids arrive untranslated, or fuzzy when they resemble an old one; msgids gone from the
#    code are dropped. Headers (Plural-Forms, Language-Team, the review note) are kept.
#
# Then translate every empty or fuzzy entry (fuzzy entries are never used) and run
# `pytest tests/locales`, which fails while any msgid is untranslated, fuzzy or stale.
# The .po files are read directly at run time (recpo.i18n): there is no compile step.
set -euo pipefail
cd "$(dirname "$0")/.."
PYBABEL=${PYBABEL:-.venv/bin/pybabel}
LANGUAGES=(es qu)

"$PYBABEL" --quiet extract -F babel.cfg --no-default-keywords -k N_ -k gettext \
    --add-location=file --sort-by-file \
    --project="RECPO Gateway" --version=0.1.0 --copyright-holder="DGFM - MINEM" \
    -o locales/messages.pot flows registry gateway recpo

for lang in "${LANGUAGES[@]}"; do
    "$PYBABEL" --quiet update -i locales/messages.pot -d locales -D messages -l "$lang" \
        --init-missing --ignore-obsolete
done
