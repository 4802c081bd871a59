"""Exports of the collection for other tools: JSON lines, CSV, Parquet and XMP sidecars.

Records are read a page at a time and written as they come, so an export of any size runs
in flat memory (Parquet is written one row group per page).
"""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import IO, Any

from indexer.errors import ConfigError
from indexer.files import atomic_write
from indexer.records import StoredRecord

FORMATS = ("jsonl", "csv", "parquet")
CREATOR_TOOL = "clothing-indexer"
_PAGE = 500

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "xmp": "http://ns.adobe.com/xap/1.0/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
}
for _prefix, _uri in NS.items():
    ET.register_namespace(_prefix, _uri)


# Characters XML 1.0 cannot carry at all, even escaped.
_NOT_XML = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# A cell starting with one of these is run as a formula by spreadsheet programs.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    """A CSV cell that no spreadsheet will evaluate: formula-like text gets a leading quote,
    as OWASP recommends for CSV injection."""
    return "'" + value if value.startswith(_FORMULA_START) else value


# What JSON leaves raw but a terminal acts on: DEL, C1 controls (\x9b starts an escape
# sequence) and the invisible characters that reorder or hide text. C0 controls JSON escapes.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def json_text(data: Any, indent: int | None = None) -> str:
    """`data` as JSON whose text shows no character a terminal would act on: those are
    written as \\u escapes, which decode to the same strings."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def xml_safe(value: str) -> str:
    """`value` without the characters XML 1.0 forbids (control characters, say)."""
    return _NOT_XML.sub("", value)


def row(record: StoredRecord, facets: Sequence[str], vectors: bool) -> dict[str, Any]:
    """One record as plain data: id, path, keywords per facet, caption, the other paths
    holding the same bytes (and vectors)."""
    out: dict[str, Any] = {
        "id": record.id,
        "path": record.path,
        "keywords": {f: list(record.keywords.get(f, [])) for f in facets},
        "caption": record.caption,
        "copies": record.copies,
    }
    if vectors:
        out["embedding"] = record.embedding
        out["image_embedding"] = record.image_embedding
    return out


def write_jsonl(
    records: Iterable[StoredRecord], out: IO[str], facets: Sequence[str], vectors: bool
) -> int:
    count = 0
    for record in records:
        out.write(json_text(row(record, facets, vectors)) + "\n")
        count += 1
    return count


def write_csv(
    records: Iterable[StoredRecord],
    out: IO[str],
    facets: Sequence[str],
    vectors: bool,
    cell: Callable[[str], str] = lambda text: text,
) -> int:
    """One column per facet, its keywords joined by "; "; vectors as JSON arrays. `cell`
    rewrites each text cell (a terminal's reader wants control characters shown, not run)."""
    columns = [
        "id",
        "path",
        *facets,
        "caption",
        "copies",
        *(["embedding", "image_embedding"] * vectors),
    ]
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    count = 0
    for record in records:
        data = row(record, facets, vectors)
        keywords = data.pop("keywords")
        for facet in facets:
            data[facet] = "; ".join(keywords[facet])
        data["copies"] = "; ".join(data["copies"])
        for key in ("embedding", "image_embedding"):
            if key in data:
                data[key] = json.dumps(data[key]) if data[key] is not None else ""
        writer.writerow(
            {k: cell(spreadsheet_safe(v)) if isinstance(v, str) else v for k, v in data.items()}
        )
        count += 1
    return count


def write_parquet(
    records: Iterable[StoredRecord], path: Path, facets: Sequence[str], vectors: bool
) -> int:
    """Keywords as one list<string> column per facet, so that tools can filter on them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow is a dependency
        raise ConfigError("Parquet export needs pyarrow: pip install pyarrow") from exc

    fields = [
        pa.field("id", pa.string()),
        pa.field("path", pa.string()),
        *(pa.field(f"keywords_{f}", pa.list_(pa.string())) for f in facets),
        pa.field("caption", pa.string()),
        pa.field("copies", pa.list_(pa.string())),
    ]
    if vectors:
        fields += [
            pa.field("embedding", pa.list_(pa.float32())),
            pa.field("image_embedding", pa.list_(pa.float32())),
        ]
    schema = pa.schema(fields)
    count = 0
    pages = iter(records)
    with atomic_write(path) as tmp, pq.ParquetWriter(str(tmp), schema) as writer:
        while page := list(islice(pages, _PAGE)):
            columns: dict[str, list[Any]] = {
                "id": [r.id for r in page],
                "path": [r.path for r in page],
                **{f"keywords_{f}": [list(r.keywords.get(f, [])) for r in page] for f in facets},
                "caption": [r.caption for r in page],
                "copies": [r.copies for r in page],
            }
            if vectors:
                columns["embedding"] = [r.embedding for r in page]
                columns["image_embedding"] = [r.image_embedding for r in page]
            writer.write_table(pa.Table.from_pydict(columns, schema=schema))
            count += len(page)
    return count


# --- XMP sidecars ---


@dataclass
class SidecarReport:
    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (sidecar, reason)


def sidecar_path(image: Path, target: Path | None, roots: Sequence[Path]) -> Path:
    """`photo.jpg.xmp` (the darktable and digiKam convention) beside the image, or at the
    image's place relative to its indexed folder under `target`; with several indexed
    folders, under a subfolder named for each (its name, or its whole path where two share
    a name), so that `a/x.jpg` of one and of the other do not share a sidecar."""
    name = image.name + ".xmp"
    if target is None:
        return image.with_name(name)
    labels = _root_labels(roots)
    for root in sorted(roots, key=lambda r: len(str(r)), reverse=True):
        if image.is_relative_to(root):
            return target / labels[root] / image.relative_to(root).with_name(name)
    return target / name


def _root_labels(roots: Sequence[Path]) -> dict[Path, Path]:
    if len(set(roots)) <= 1:
        return {r: Path() for r in roots}
    names = [r.name for r in roots]
    return {r: Path(r.name) if names.count(r.name) == 1 else r.relative_to(r.anchor) for r in roots}


def xmp_document(record: StoredRecord) -> bytes:
    """An XMP packet with the keywords as dc:subject (flat) and lr:hierarchicalSubject
    (facet|keyword), and the caption as dc:description."""
    rdf = NS["rdf"]
    root = ET.Element(f"{{{NS['x']}}}xmpmeta")
    doc = ET.SubElement(root, f"{{{rdf}}}RDF")
    desc = ET.SubElement(
        doc,
        f"{{{rdf}}}Description",
        {f"{{{rdf}}}about": "", f"{{{NS['xmp']}}}CreatorTool": CREATOR_TOOL},
    )
    words = [w for facet_words in record.keywords.values() for w in facet_words]
    subject = ET.SubElement(ET.SubElement(desc, f"{{{NS['dc']}}}subject"), f"{{{rdf}}}Bag")
    for word in dict.fromkeys(words):
        ET.SubElement(subject, f"{{{rdf}}}li").text = xml_safe(word)
    hierarchy = ET.SubElement(
        ET.SubElement(desc, f"{{{NS['lr']}}}hierarchicalSubject"), f"{{{rdf}}}Bag"
    )
    for facet, facet_words in record.keywords.items():
        for word in facet_words:
            ET.SubElement(hierarchy, f"{{{rdf}}}li").text = xml_safe(f"{facet}|{word}")
    alt = ET.SubElement(ET.SubElement(desc, f"{{{NS['dc']}}}description"), f"{{{rdf}}}Alt")
    ET.SubElement(
        alt, f"{{{rdf}}}li", {"{http://www.w3.org/XML/1998/namespace}lang": "x-default"}
    ).text = xml_safe(record.caption)
    body = ET.tostring(root, encoding="unicode")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        + body
        + '\n<?xpacket end="w"?>\n'
    ).encode("utf-8")


def _ours(sidecar: Path) -> bool:
    try:
        return CREATOR_TOOL.encode() in sidecar.read_bytes()
    except OSError:
        return False


def _refusal(sidecar: Path, allowed: Sequence[Path]) -> str | None:
    """Why a sidecar must not be written at `sidecar`, or None when it may."""
    if sidecar.is_symlink():
        return "the sidecar path is a symbolic link; not writing through it"
    if sidecar.exists() and not _ours(sidecar):
        return "a sidecar from another program is already there"
    parent = sidecar.parent.resolve()
    if allowed and not any(parent.is_relative_to(root) for root in allowed):
        return "its folder now leads outside the indexed folders (a symbolic link)"
    return None


def write_sidecars(
    records: Iterable[StoredRecord], target: Path | None, roots: Sequence[Path]
) -> SidecarReport:
    """Write one sidecar per record. Images are never touched, a sidecar that another
    program wrote (darktable's edit history, say) is left alone rather than overwritten, and
    nothing is written through a symbolic link or outside the indexed folders (or `target`).
    A sidecar that cannot be written is reported and the export goes on."""
    report = SidecarReport()
    allowed = [target.resolve()] if target is not None else [r.resolve() for r in roots]
    written: set[Path] = set()
    for record in records:
        sidecar = sidecar_path(Path(record.path), target, roots)
        try:
            if target is not None:
                sidecar.parent.mkdir(parents=True, exist_ok=True)
            refusal = _refusal(sidecar, allowed)
            if refusal is None and sidecar in written:
                refusal = "another image of this export has a sidecar at this path"
            if refusal is None:
                written.add(sidecar)
                with atomic_write(sidecar) as tmp:
                    tmp.write_bytes(xmp_document(record))
        except OSError as exc:
            refusal = exc.strerror or str(exc)
        if refusal is None:
            report.written.append(sidecar)
        else:
            report.skipped.append((sidecar, refusal))
    return report
