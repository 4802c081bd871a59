"""Every metadata key the store writes, in one place: on each record (and its image vector
and partition entries), and on each collection. Chroma filters and reads by these names, so
a rename here is a schema change (store/schema.py migrates)."""

from __future__ import annotations

# --- on a record ---
PATH = "path"  # absolute, as indexed
FOLDERS = "folders"  # every folder above PATH, so a folder's records are one filter away
SIZE = "size"  # of the file, as read: with MTIME_NS, an unchanged file is not read again
MTIME_NS = "mtime_ns"
COPIES = "copies"  # other paths holding the same bytes; absent when there are none
LIKENESS = "likeness"  # the picture's fingerprint by pixels (indexer/likeness.py)
INDEXED_AT = "indexed_at"
KEYWORDS_JSON = "keywords_json"  # the record's keywords by facet, the truth filter keys mirror
RAW_KEYWORDS_JSON = "raw_keywords_json"  # the model's own words, for audit
CORRECTIONS_JSON = "corrections_json"  # off-vocabulary words and what they became
VOCABULARY = "vocabulary"  # fingerprint of the vocabulary used
FACET_PREFIX = "kw_"  # kw_<facet>: that facet's keywords, a list Chroma filters with $contains
# The image vectors' keys differ from the records': Chroma's embedded metadata filter reads a
# key's entries across every collection of the database, so shared keys made each filter on
# the records scan the image vectors' entries too (partitions.py measures the cost).
IMAGE_FACET_PREFIX = "ikw_"
# Set with a record whose keyword partitions are being written, removed once they are, so
# that a writer finds what a crash left half-partitioned (see ImageStore.upsert).
PARTS_PENDING = "parts_pending"

# --- on a collection ---
OWNER = "catalog"  # the catalog a collection belongs to (store/layout.py)
VERSION = "schema_version"
EMBEDDING_PROVIDER = "embedding_provider"  # the vector space: provider, model, dimension
EMBEDDING_MODEL = "embedding_model"
EMBEDDING_DIM = "embedding_dim"
CREATED_AT = "created_at"
COMPLETE_FACETS = "partitions"  # main collection: comma-separated facets fully partitioned
ROOTS_JSON = "roots_json"  # main collection, before schema 6 kept the catalog's folders here
STAGING_COMPLETE = "staging_complete"  # `<name>--next`: every record staged; switch it in
SWITCH_FENCE = "switch_fence"  # `<name>--next`: the switch fence's heartbeat counter
