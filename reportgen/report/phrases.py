"""Sentences as data: the report context builds every sentence of the report once, as parts (text, an optional
link to a table or figure, optional emphasis), and each format lays the same parts out (HTML with links, Markdown
without), so the HTML and the Markdown can never say different things."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    text: str
    link: str = ""  # an anchor of the report ("tab-decision"), linked in HTML
    strong: bool = False
    flag: bool = False  # a warning: red in HTML, bold in Markdown


Sentence = tuple  # of Part


def text(value: str, link: str = "", strong: bool = False, flag: bool = False) -> Part:
    return Part(value, link, strong, flag)


def plain(sentence: Sentence) -> str:
    """The sentence without markup (tests, alt texts)."""
    return "".join(part.text for part in sentence)
