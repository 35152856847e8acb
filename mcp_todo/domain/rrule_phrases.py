"""Recurrence in words, turned into the RRULE that is stored and shown: "every weekday", "every 2 weeks on monday
and thursday", "monthly on the last friday", "every year on 29 feb", "daily", "every 3 days", ", 10 times",
"until 2027-12-31".

A small grammar of our own (dateutil reads RRULE text, not English): a frequency head, an optional "on …" clause (week
days, "the last friday", "the 1st and 15th", "29 feb") and an optional end (a count or an until date). Anything else
is an INVALID_RECURRENCE_RULE that shows the RRULE form. `describe_rule` (mcp_todo.domain.rrule) is the way back.
"""

from __future__ import annotations

import re
from typing import Final

from mcp_todo.domain.errors import InvalidRecurrenceRuleError
from mcp_todo.domain.rrule import MAX_RULE_LENGTH, SUPPORTED

_DAYS: Final = {
    "mo": "MO", "mon": "MO", "monday": "MO",
    "tu": "TU", "tue": "TU", "tues": "TU", "tuesday": "TU",
    "we": "WE", "wed": "WE", "wednesday": "WE",
    "th": "TH", "thu": "TH", "thur": "TH", "thurs": "TH", "thursday": "TH",
    "fr": "FR", "fri": "FR", "friday": "FR",
    "sa": "SA", "sat": "SA", "saturday": "SA",
    "su": "SU", "sun": "SU", "sunday": "SU",
}  # fmt: skip
_MONTHS: Final = {
    name: number
    for number, names in enumerate(
        (
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
            ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"),
            ("nov", "november"), ("dec", "december"),
        ),
        start=1,
    )
    for name in names
}  # fmt: skip
_ORDINALS: Final = {
    "first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4, "fifth": 5,
    "5th": 5, "last": -1, "second last": -2, "second to last": -2, "next to last": -2,
}  # fmt: skip
_UNITS: Final = {"day": "DAILY", "week": "WEEKLY", "month": "MONTHLY", "year": "YEARLY"}
_ADVERBS: Final = {
    "daily": ("DAILY", 1), "weekly": ("WEEKLY", 1), "monthly": ("MONTHLY", 1), "yearly": ("YEARLY", 1),
    "annually": ("YEARLY", 1), "fortnightly": ("WEEKLY", 2), "biweekly": ("WEEKLY", 2),
}  # fmt: skip
_WORKDAYS: Final = ("MO", "TU", "WE", "TH", "FR")

_DAY = "(?:" + "|".join(sorted(_DAYS, key=len, reverse=True)) + ")s?"
# A list of days is split at its separators and each item looked up, not matched as one pattern: "tues" is "tue" +
# "s" as well as "tues", so a repeated pattern of days has 2^n ways to fail on a long list (24 "tues" took seconds).
_DAY_SEPARATOR = re.compile(r", and |, ?| and | & ")
_ORDINAL = "(?:" + "|".join(sorted(_ORDINALS, key=len, reverse=True)) + ")"
_MONTH = "(?:" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + ")"
_NTH_DAY = re.compile(rf"(?:the )?({_ORDINAL}) ({_DAY})(?: of (?:the|each|every) month)?")
_MONTH_DAYS = re.compile(
    r"(?:the |day )?(\d{1,2}|last)(?:st|nd|rd|th)?(?: day)?"
    r"((?:(?:, ?| and | & )(?:the )?(?:\d{1,2}|last)(?:st|nd|rd|th)?(?: day)?)*)(?: of (?:the|each|every) month)?"
)
_DATE = re.compile(
    rf"(?:the )?(?:(\d{{1,2}})(?:st|nd|rd|th)? (?:of )?({_MONTH})|({_MONTH}) (\d{{1,2}})(?:st|nd|rd|th)?)"
)
_HEAD = re.compile(r"(?:every|each) (?:(\d{1,4}|other|second) )?(day|week|month|year)s?(?: (.*))?")
_COUNT = re.compile(r"(.*?),? (?:for )?(\d{1,4}) (?:times|occurrences)")
_UNTIL = re.compile(r"(.*?),? (?:until|till|through|ending) (\d{4})-?(\d{2})-?(\d{2})")


def _invalid(words: str) -> InvalidRecurrenceRuleError:
    shown = words if len(words) <= 80 else words[:80] + "…"
    return InvalidRecurrenceRuleError(
        f"cannot turn {shown!r} into a rule — say e.g. 'every weekday', 'every 2 weeks on monday and thursday', "
        f"'monthly on the last friday', 'every year on 29 feb', or give an RRULE. {SUPPORTED}"
    )


def _is_day_list(clause: str) -> bool:
    """Whether `clause` is days joined by commas, "and" or "&" ("mon, wed and fri", "tuesdays & thursdays")."""
    return all(item in _DAYS or (item[-1:] == "s" and item[:-1] in _DAYS) for item in _DAY_SEPARATOR.split(clause))


def _days(text: str) -> list[str]:
    found = [_DAYS[word.rstrip("s") if word.rstrip("s") in _DAYS else word] for word in re.findall(r"[a-z]+", text)
             if word not in ("and",)]  # fmt: skip
    return list(dict.fromkeys(found))


def _on_clause(clause: str, freq: str, interval: int) -> list[str] | None:
    """The FREQ and BY… parts of a head's FREQ (empty: "every …" alone) with an "on …" clause, or None when the
    clause is not one or does not fit the head ("monthly on monday" could mean every Monday or the first)."""
    clause = clause.removeprefix("on ").removeprefix("every ")
    weekly = freq == "WEEKLY" or (freq in ("", "DAILY") and interval == 1)
    if clause in ("weekdays", "weekday", "workdays") and weekly:
        return ["FREQ=WEEKLY", *_interval(interval), "BYDAY=" + ",".join(_WORKDAYS)]
    if clause in ("weekends", "the weekend", "weekend") and weekly:
        return ["FREQ=WEEKLY", *_interval(interval), "BYDAY=SA,SU"]
    if _is_day_list(clause) and weekly:
        return ["FREQ=WEEKLY", *_interval(interval), "BYDAY=" + ",".join(_days(clause))]
    if (match := _NTH_DAY.fullmatch(clause)) and freq in ("", "MONTHLY"):
        position, day = _ORDINALS[match.group(1)], _days(match.group(2))[0]
        return ["FREQ=MONTHLY", *_interval(interval), f"BYDAY={position}{day}"]
    if (match := _DATE.fullmatch(clause)) and freq in ("", "YEARLY"):
        month_day = int(match.group(1) or match.group(4))
        month = _MONTHS[match.group(2) or match.group(3)]
        return ["FREQ=YEARLY", *_interval(interval), f"BYMONTH={month}", f"BYMONTHDAY={month_day}"]
    if _MONTH_DAYS.fullmatch(clause) and freq in ("", "MONTHLY"):
        days = [-1 if d == "last" else int(d) for d in re.findall(r"\d{1,2}|last", clause)]
        return ["FREQ=MONTHLY", *_interval(interval), "BYMONTHDAY=" + ",".join(map(str, days))]
    return None


def _interval(interval: int) -> list[str]:
    return [] if interval == 1 else [f"INTERVAL={interval}"]


def _core(words: str) -> list[str]:
    """The FREQ, INTERVAL and BY… parts of a phrase without its end."""
    head, _, rest = words.partition(" ")
    if head in _ADVERBS:
        freq, interval = _ADVERBS[head]
    elif match := _HEAD.fullmatch(words):
        count, unit, tail = match.groups()
        freq, interval, rest = _UNITS[unit], 2 if count in ("other", "second") else int(count or 1), tail or ""
    elif head == "every" and rest:
        freq, interval = "", 1
    else:
        raise _invalid(words)
    if not rest:
        if not freq or interval < 1:
            raise _invalid(words)
        return ["FREQ=" + freq, *_interval(interval)]
    parts = _on_clause(rest, freq, interval)
    if parts is None or interval < 1:
        raise _invalid(words)
    return parts


def rule_in_words(words: str) -> str | None:
    """The RRULE `words` say, or None when they say none (or are an RRULE already): for a phrase another app wrote
    (an import), which is kept as text when it is not understood rather than refused."""
    if "=" in words or len(words) > MAX_RULE_LENGTH:
        return None
    try:
        return rule_from_words(words)
    except InvalidRecurrenceRuleError:
        return None


def rule_from_words(value: str) -> str:
    """`value` unchanged when it is an RRULE (FREQ=…, checked later with the due date), else the RRULE its words
    say; INVALID_RECURRENCE_RULE when they say none."""
    text = value.strip()
    if "=" in text or len(text) > MAX_RULE_LENGTH:
        return value
    words = " ".join(text.lower().replace("repeat ", "").replace("repeats ", "").split()).rstrip(".")
    words = words.replace("every single ", "every ").replace("each ", "every ")
    end: list[str] = []
    if match := _UNTIL.fullmatch(words):
        words = match.group(1)
        end.append(f"UNTIL={match.group(2)}{match.group(3)}{match.group(4)}")
    elif match := _COUNT.fullmatch(words):
        words = match.group(1)
        end.append(f"COUNT={int(match.group(2))}")
    if words in ("every weekday", "weekdays", "every workday", "every business day", "on weekdays"):
        return ";".join(["FREQ=WEEKLY", "BYDAY=" + ",".join(_WORKDAYS), *end])
    if words in ("every weekend", "weekends", "on weekends"):
        return ";".join(["FREQ=WEEKLY", "BYDAY=SA,SU", *end])
    return ";".join([*_core(words), *end])
