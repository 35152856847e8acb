"""WebDAV XML (RFC 4918, 4791, 6578): reading request bodies safely and writing multistatus answers, with the
standard library's ElementTree. A body with a DTD is refused before it is parsed (no entity can expand)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from mcp_todo.domain.errors import ValidationError

DAV: Final = "DAV:"
CALDAV: Final = "urn:ietf:params:xml:ns:caldav"
CS: Final = "http://calendarserver.org/ns/"
ICAL: Final = "http://apple.com/ns/ical/"
MAX_XML_BYTES: Final = 1024 * 1024

for _prefix, _uri in (("d", DAV), ("cal", CALDAV), ("cs", CS), ("ical", ICAL)):
    ET.register_namespace(_prefix, _uri)


def tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def parse(body: bytes) -> ET.Element | None:
    """The body's root element, or None for an empty body; ValidationError for one that is not safe XML."""
    if not body.strip():
        return None
    if len(body) > MAX_XML_BYTES:
        raise ValidationError(f"the XML body is larger than {MAX_XML_BYTES // 1024} KB")
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise ValidationError("the XML body declares a DTD or entities, which this server does not read")
    try:
        return ET.fromstring(body)
    except ET.ParseError as err:
        raise ValidationError(f"the XML body is not well-formed: {err}") from err


def element(name: str, text: str | None = None, *children: ET.Element) -> ET.Element:
    node = ET.Element(name)
    if text is not None:
        node.text = text
    node.extend(children)
    return node


@dataclass
class Response:
    """One `response` of a multistatus: the properties found, those that are not (404), or a status alone."""

    href: str
    found: list[ET.Element] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    status: str | None = None


def _propstat(props: Iterable[ET.Element], status: str) -> ET.Element:
    prop = element(tag(DAV, "prop"), None, *props)
    return element(tag(DAV, "propstat"), None, prop, element(tag(DAV, "status"), f"HTTP/1.1 {status}"))


def multistatus(responses: Iterable[Response], sync_token: str | None = None) -> bytes:
    root = ET.Element(tag(DAV, "multistatus"))
    for item in responses:
        node = ET.SubElement(root, tag(DAV, "response"))
        ET.SubElement(node, tag(DAV, "href")).text = item.href
        if item.status is not None:
            ET.SubElement(node, tag(DAV, "status")).text = f"HTTP/1.1 {item.status}"
            continue
        if item.found or not (item.missing or item.refused):
            node.append(_propstat(item.found, "200 OK"))
        if item.missing:
            node.append(_propstat((ET.Element(name) for name in item.missing), "404 Not Found"))
        if item.refused:
            node.append(_propstat((ET.Element(name) for name in item.refused), "403 Forbidden"))
    if sync_token is not None:
        ET.SubElement(root, tag(DAV, "sync-token")).text = sync_token
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root)


def error(condition: str, namespace: str = DAV, description: str | None = None) -> bytes:
    """An RFC 4918 error body naming the precondition that failed (and, readable, why)."""
    root = ET.Element(tag(DAV, "error"))
    ET.SubElement(root, tag(namespace, condition))
    if description:
        # A body a person can read, as most clients show it verbatim.
        ET.SubElement(root, tag("http://mcp-todo.invalid/ns/", "description")).text = description
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root)


def requested_props(root: ET.Element | None) -> tuple[list[str] | None, bool]:
    """(the property names a PROPFIND/REPORT asks for, or None for allprop; whether it asks for names only)."""
    if root is None:
        return None, False
    if root.find(tag(DAV, "propname")) is not None:
        return None, True
    if root.find(tag(DAV, "allprop")) is not None:
        return None, False
    prop = root.find(tag(DAV, "prop"))
    if prop is None:
        return None, False
    return [child.tag for child in prop], False
