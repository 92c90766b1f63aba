"""XML for untrusted SVG files: no entities, no external resources, bounded size and element count.

Built directly on expat (as defusedxml does): an entity declaration, an external entity reference or
an unparsed entity stops the parse with a clear error, so billion-laughs and XXE files end at once.
The result is a small element tree with namespace-free tag names; comments are dropped (a
commented-out ``<circle>`` is not an element).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.parsers import expat

from ..core.errors import InputError

MAX_BYTES = 20 * 1024 * 1024
MAX_ELEMENTS = 50_000
MAX_DEPTH = 200

SVG_NAMESPACE = "http://www.w3.org/2000/svg"
XLINK_NAMESPACE = "http://www.w3.org/1999/xlink"
_KEPT_NAMESPACES = ("", SVG_NAMESPACE)
_TEXT_TAGS = ("style",)


@dataclass
class Element:
    """One XML element. ``tag`` is the local name for SVG-namespace (or namespace-less) elements and
    ``{namespace}name`` for foreign ones (Inkscape/Illustrator metadata), which SVG code ignores."""

    tag: str
    attrib: dict[str, str]
    children: list["Element"] = field(default_factory=list)
    text: str = ""

    def iter(self):
        """This element and all descendants, in document order."""
        stack = [self]
        while stack:
            element = stack.pop()
            yield element
            stack.extend(reversed(element.children))


def _local_name(name: str, keep: tuple[str, ...]) -> str:
    namespace, _, local = name.rpartition(" ")
    if namespace in keep:
        return local
    return "{" + namespace + "}" + local


class _TreeBuilder:
    def __init__(self, input_name: str, max_elements: int):
        self.input_name = input_name
        self.max_elements = max_elements
        self.count = 0
        self.root: Element | None = None
        self.stack: list[Element] = []

    def _refuse(self, problem: str, expected: str) -> None:
        raise InputError(self.input_name, problem, expected)

    def start(self, name, attributes):
        self.count += 1
        if self.count > self.max_elements:
            self._refuse(f"has more than {self.max_elements} XML elements",
                         "a clipart-sized SVG; simplify the drawing (merge paths) first")
        if len(self.stack) >= MAX_DEPTH:
            self._refuse(f"nests elements more than {MAX_DEPTH} deep", "a normally structured SVG")
        attrib = {}
        for key, value in attributes.items():
            attrib[_local_name(key, _KEPT_NAMESPACES + (XLINK_NAMESPACE,))] = value
        element = Element(_local_name(name, _KEPT_NAMESPACES), attrib)
        if self.stack:
            self.stack[-1].children.append(element)
        elif self.root is None:
            self.root = element
        self.stack.append(element)

    def end(self, name):
        self.stack.pop()

    def characters(self, data):
        if self.stack and self.stack[-1].tag in _TEXT_TAGS:
            self.stack[-1].text += data

    def entity_declaration(self, *args):
        self._refuse("declares XML entities (<!ENTITY ...>), which are refused for safety",
                     "an SVG without a DTD entity block (re-export it, e.g. Illustrator with 'SVG 1.1' and no "
                     "editing data, or pass it through svgo/picosvg)")

    def external_entity(self, *args):
        self._refuse("refers to an external entity or DTD", "a self-contained SVG")


def parse_xml(data: bytes | str, input_name: str = "svg", max_elements: int = MAX_ELEMENTS,
              max_bytes: int = MAX_BYTES) -> Element:
    """Parse untrusted XML into an :class:`Element` tree, or raise ``InputError`` naming ``input_name``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
        # A str has already been decoded; an encoding declaration inside it would mislead expat.
        encoding = "utf-8"
    else:
        encoding = None
    if len(data) > max_bytes:
        raise InputError(input_name, f"is {len(data) / 1e6:.1f} MB", f"at most {max_bytes // 1_000_000} MB of SVG")
    if not data.strip():
        raise InputError(input_name, "is empty", "an SVG document")
    builder = _TreeBuilder(input_name, max_elements)
    parser = expat.ParserCreate(encoding=encoding, namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.characters
    parser.EntityDeclHandler = builder.entity_declaration
    parser.UnparsedEntityDeclHandler = builder.entity_declaration
    parser.ExternalEntityRefHandler = builder.external_entity
    parser.buffer_text = True
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise InputError(input_name, f"is not well-formed XML ({expat.errors.messages[error.code]} "
                                     f"at line {error.lineno}, column {error.offset})", "a valid SVG file") from None
    if builder.root is None:
        raise InputError(input_name, "has no root element", "an <svg> document")
    return builder.root
