"""Knowledge about each class: cards (names, description, free fields), interaction rules, Wikipedia enrichment.

cards.py and rules.py are pure parsers (rules.match_rules is what serving calls); wikipedia.py
is the only module here that touches the network; store.py holds the database-backed services.
This package's __init__ stays import-free so serving can import rules without the rest.
"""

from __future__ import annotations

from snapid.errors import SnapidError


class KnowledgeError(SnapidError):
    """A knowledge file cannot be used as given; the message names the file, line and value."""

    code = "knowledge_error"
    status = 422
