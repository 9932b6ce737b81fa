from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVector, SearchVectorField
from django.db import models
from django.db.models import F
from pgvector.django import HnswIndex, VectorField

from knowledge.embeddings import EMBEDDING_DIMENSIONS

# The full-text search configuration (stemming and stop words) a knowledge base gets unless it is told its language.
DEFAULT_SEARCH_CONFIG = "english"

# PostgreSQL's text-search configuration for each language a bot may speak (ISO 639-1); any other language is
# searched with `simple` (lower-cased words, no stemming, no stop words), which works for every language.
SEARCH_CONFIGS = {
    "en": "english",
    "fr": "french",
    "de": "german",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
}
FALLBACK_SEARCH_CONFIG = "simple"


def search_config_for_language(language: str) -> str:
    """The text-search configuration for a language tag ("fr", "de-CH", "pt_BR"): its own, else `simple`."""
    code = (language or "").strip().lower().replace("_", "-").split("-")[0]
    return SEARCH_CONFIGS.get(code, FALLBACK_SEARCH_CONFIG)


class SearchConfigField(models.CharField):
    """A PostgreSQL `regconfig`: the database refuses a configuration it does not have, and a generated tsvector
    may use the column (`to_tsvector(regconfig, text)` is immutable; with a text column and a cast it is not)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("max_length", 63)
        super().__init__(*args, **kwargs)

    def db_type(self, connection) -> str:
        return "regconfig"

    def cast_db_type(self, connection) -> str:
        return "regconfig"


@SearchConfigField.register_lookup
class SearchConfigExact(models.lookups.Exact):
    # PostgreSQL has no `regconfig = unknown` operator: it would compare as oids and read 'french' as an oid.
    def process_rhs(self, compiler, connection):
        sql, params = super().process_rhs(compiler, connection)
        return f"({sql})::regconfig", params


class KnowledgeBase(models.Model):
    """The documents a bot answers from; several bots may share one."""

    name = models.CharField(max_length=200)
    chunk_tokens = models.PositiveIntegerField(default=200, help_text="Target chunk size in embedding tokens.")
    overlap_tokens = models.PositiveIntegerField(default=30, help_text="Tokens repeated between neighbours.")
    # Set from the language of the bot that answers from it (`knowledge_base_search_config_set`).
    search_config = SearchConfigField(
        default=DEFAULT_SEARCH_CONFIG,
        db_default=DEFAULT_SEARCH_CONFIG,
        help_text="PostgreSQL text-search configuration: stemming and stop words.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Source(models.Model):
    class Kind(models.TextChoices):
        FILE = "file", "Uploaded file"
        URL = "url", "Web page"
        SITEMAP = "sitemap", "Sitemap"
        SITE = "site", "Website"
        FAQ = "faq", "Q&A entry"

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        RUNNING = "running", "Ingesting"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="sources")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    title = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=2000, blank=True)
    file = models.FileField(upload_to="sources/%Y/%m/", blank=True)
    question = models.TextField(blank=True)
    answer = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    documents_total = models.PositiveIntegerField(default=0)
    documents_done = models.PositiveIntegerField(default=0)
    # Web sources: crawl limits and the change-aware scheduled re-sync.
    same_host_only = models.BooleanField(default=True)
    allow_private_addresses = models.BooleanField(
        default=False, help_text="Allow fetching from private network addresses (intranet sites)."
    )
    max_pages = models.PositiveIntegerField(default=500)
    # Website sources (knowledge/crawl.py): how many links away from the start page, and which paths.
    max_depth = models.PositiveIntegerField(default=5)
    include_patterns = models.JSONField(default=list, blank=True, help_text='Paths to crawl, e.g. "/docs/*".')
    exclude_patterns = models.JSONField(default=list, blank=True, help_text='Paths to skip, e.g. "/blog/*".')
    resync_every_hours = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: never re-sync.")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.title or self.url or (self.file.name if self.file else "") or self.question[:80]


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Waiting"
        INDEXED = "indexed", "Indexed"
        FAILED = "failed", "Failed"

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="documents")
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="documents")
    # What identifies the document inside its source: the page URL or the file's path within an upload.
    key = models.CharField(max_length=2000)
    title = models.CharField(max_length=500, blank=True)
    url = models.URLField(max_length=2000, blank=True)
    filename = models.CharField(max_length=500, blank=True)
    content_hash = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(blank=True)
    chunk_count = models.PositiveIntegerField(default=0)
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    sitemap_lastmod = models.CharField(max_length=100, blank=True)
    # A crawled page's links, so a page answering 304 Not Modified on a re-sync still leads to the pages after it.
    links = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]
        constraints = [models.UniqueConstraint(fields=["source", "key"], name="document_unique_key_per_source")]

    def __str__(self) -> str:
        return self.title or self.key


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    # Denormalised from the document so that both searches filter on the chunk table alone.
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+")
    position = models.PositiveIntegerField()
    text = models.TextField()
    heading_path = models.JSONField(default=list)
    # "Title › Heading › Subheading": searched with the text, and weighted higher.
    heading_text = models.TextField(blank=True)
    token_count = models.PositiveIntegerField()
    text_hash = models.CharField(max_length=64)
    embedding = VectorField(dimensions=EMBEDDING_DIMENSIONS)
    # Late interaction (knowledge/late_interaction.py): the packed sign bits of the chunk's word-piece embeddings,
    # from the forward pass that made `embedding`. Null when a TEI server embedded the chunk, or for chunks indexed
    # before migration 0004 until their source is ingested again; search then ranks without the second stage.
    token_signature = models.BinaryField(null=True, editable=False)
    # The knowledge base's text-search configuration, copied at ingestion (and updated with it) so that the search
    # vector can be a generated column: a generated column reads only its own row. The database default serves rows
    # written without the ORM (the retrieval benchmark's COPY).
    search_config = SearchConfigField(default=DEFAULT_SEARCH_CONFIG, db_default=DEFAULT_SEARCH_CONFIG)
    search_vector = models.GeneratedField(
        expression=SearchVector("heading_text", weight="A", config=F("search_config"))
        + SearchVector("text", weight="B", config=F("search_config")),
        output_field=SearchVectorField(),
        db_persist=True,
    )

    class Meta:
        ordering = ["document", "position"]
        indexes = [
            HnswIndex(
                name="chunk_embedding_hnsw",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(name="chunk_search_vector_gin", fields=["search_vector"]),
        ]

    def __str__(self) -> str:
        return f"{self.document} #{self.position}"


class Term(models.Model):
    """Per-knowledge-base document frequencies of the chunks' full-text lexemes, for BM25's IDF.

    Maintained by statement-level triggers on the chunk table (migration 0003), so every way chunks come and go
    (ingestion, cascading deletes of sources and documents) keeps it right. The row with the empty lexeme (never a
    real lexeme) holds the knowledge base's totals: `chunks` is its number of chunks and `lexemes` the sum of
    their distinct-lexeme counts, for the average chunk length. Rows may reach zero; they are harmless.
    """

    # No index of its own: `term_unique_lexeme` starts with it. With one, a question's lexeme lookup read every term
    # of its knowledge base through it whenever the table's statistics were stale (after an ingestion, until
    # autovacuum analysed the table; for a new knowledge base in a large table, until a tenth of the table changed):
    # 0.5 against 0.17 ms at 3,000 terms, and growing with the terms.
    knowledge_base = models.ForeignKey(KnowledgeBase, on_delete=models.CASCADE, related_name="+", db_index=False)
    lexeme = models.TextField()
    chunks = models.BigIntegerField(default=0)
    lexemes = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["knowledge_base", "lexeme"], name="term_unique_lexeme")]

    def __str__(self) -> str:
        return f"{self.lexeme or '(totals)'}: {self.chunks}"
