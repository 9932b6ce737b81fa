"""Topics: what visitors ask about, as clusters of similar questions of the last LOOKBACK_DAYS, labelled by the bot's
own model (or, without one, named by their most central question).

The questions are embedded with the model Parley already runs (the vectors cached for the quality page), and
grouped by agglomerative clustering (average linkage on cosine distance: every question of a topic is, on average,
at least MIN_SIMILARITY similar to the others). A topic whose centre barely moved since the last run keeps its id
and its label, so links to it keep working and the model is not asked again."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
from django.db import IntegrityError, transaction
from django.utils import timezone

from chatbot.chat.handoff import human_requested
from chatbot.insights.asking import BudgetExhausted, InsightModel, ModelUnavailable
from chatbot.insights.vectors import question_vectors
from chatbot.models import Bot, Message, Topic, TopicQuestion
from inference.analysis import LABEL_MAX_NEW_TOKENS, topic_label_messages, topic_label_parse

logger = logging.getLogger(__name__)

LOOKBACK_DAYS = 30
MAX_QUESTIONS = 2000
# Average similarity within a topic (all-MiniLM-L6-v2). At 0.5 "Do you ship to Canada?" joins the questions about
# shipping to Norway (0.49-0.73 to each) and "When will my refund arrive?" those about refunds (0.48-0.7), while
# unrelated questions score 0.0-0.3 apart; at 0.6, shipping splits into one topic per country.
MIN_SIMILARITY = 0.5
MIN_QUESTIONS = 2
MAX_TOPICS = 50
# A new cluster this close to an old topic's centre is that topic again.
KEEP_SIMILARITY = 0.85


@dataclass
class Cluster:
    members: list[Message]
    centroid: np.ndarray
    # Distinct question texts, most central first; `central` asked the first.
    questions: list[str]
    central: Message


@dataclass
class TopicsWritten:
    count: int = 0
    labelled: int = 0
    budget_exhausted: bool = False
    model_error: str = ""
    topics: list[Topic] = field(default_factory=list)


def _normal(text: str) -> str:
    return " ".join(text.split())


def is_question(text: str, *, first: bool) -> bool:
    """A visitor message worth grouping: a question, or the message that opened the conversation (a request: "I
    want a refund for my stove") if it has a few words. Not "thanks, bye" later on, nor a request for a person
    (the handoff analytics count those)."""
    text = _normal(text)
    if not text or human_requested(text):
        return False
    return "?" in text or (first and len(text.split()) >= 3)


def questions_recent(*, bot: Bot, now=None) -> list[Message]:
    """The bot's latest MAX_QUESTIONS visitor questions of the last LOOKBACK_DAYS, newest first."""
    now = now or timezone.now()
    messages = list(
        Message.objects.filter(
            conversation__bot=bot, role=Message.Role.VISITOR, created_at__gte=now - timedelta(days=LOOKBACK_DAYS)
        )
        .only("id", "text", "conversation_id", "created_at")
        .order_by("-created_at", "-id")[:MAX_QUESTIONS]
    )
    first_ids = set(
        Message.objects.filter(
            role=Message.Role.VISITOR, conversation_id__in={message.conversation_id for message in messages}
        )
        .order_by("conversation_id", "created_at", "id")
        .distinct("conversation_id")
        .values_list("id", flat=True)
    )
    return [message for message in messages if is_question(message.text, first=message.id in first_ids)]


def questions_cluster(messages: list[Message], *, min_similarity: float = MIN_SIMILARITY) -> list[Cluster]:
    """Clusters of at least MIN_QUESTIONS messages, largest first (ties: the one with the newest question)."""
    by_text: dict[str, list[Message]] = {}
    for message in messages:
        by_text.setdefault(_normal(message.text).lower(), []).append(message)
    texts = list(by_text)
    if not texts:
        return []
    vectors = question_vectors([_normal(by_text[text][0].text) for text in texts])
    if len(texts) == 1:
        labels = np.zeros(1, dtype=int)
    else:
        # Imported here: scikit-learn takes a second to import, and only the insights run needs it (not Daphne, nor
        # a worker that answers visitors).
        from sklearn.cluster import AgglomerativeClustering

        labels = AgglomerativeClustering(
            n_clusters=None, distance_threshold=1 - min_similarity, metric="cosine", linkage="average"
        ).fit_predict(vectors)
    clusters = []
    for label in sorted(set(labels.tolist())):
        indexes = [i for i, found in enumerate(labels) if found == label]
        weights = np.array([len(by_text[texts[i]]) for i in indexes], dtype=np.float32)
        if weights.sum() < MIN_QUESTIONS:
            continue
        centroid = (vectors[indexes] * weights[:, None]).sum(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        by_centrality = [indexes[i] for i in np.argsort(-(vectors[indexes] @ centroid), kind="stable")]
        members = [message for i in indexes for message in by_text[texts[i]]]
        central_text = texts[by_centrality[0]]
        clusters.append(
            Cluster(
                members=sorted(members, key=lambda m: (m.created_at, m.id), reverse=True),
                centroid=centroid,
                questions=[_normal(by_text[texts[i]][0].text) for i in by_centrality],
                central=max(by_text[central_text], key=lambda m: (m.created_at, m.id)),
            )
        )
    clusters.sort(key=lambda c: (len(c.members), c.members[0].created_at), reverse=True)
    return clusters[:MAX_TOPICS]


def _matches(clusters: list[Cluster], previous: list[Topic]) -> dict[int, Topic]:
    """Cluster index → the previous topic it continues (each topic continued at most once, best match first)."""
    if not clusters or not previous:
        return {}
    old = np.array([np.asarray(topic.centroid, dtype=np.float32) for topic in previous])
    new = np.array([cluster.centroid for cluster in clusters])
    similarity = new @ old.T
    matches: dict[int, Topic] = {}
    taken: set[int] = set()
    for flat in np.argsort(-similarity, axis=None, kind="stable"):
        i, j = divmod(int(flat), len(previous))
        if similarity[i, j] < KEEP_SIMILARITY:
            break
        if i not in matches and j not in taken:
            matches[i] = previous[j]
            taken.add(j)
    return matches


def topics_refresh(*, bot: Bot, model: InsightModel | None, now=None) -> TopicsWritten:
    """Cluster the bot's recent questions into topics, label the new ones with the model (while the budget lasts),
    and replace the bot's topics with them."""
    written = TopicsWritten()
    clusters = questions_cluster(questions_recent(bot=bot, now=now))
    previous = list(Topic.objects.filter(bot=bot))
    matches = _matches(clusters, previous)
    labels: dict[int, str] = {i: topic.label for i, topic in matches.items() if topic.label}
    if model is not None:
        for index, cluster in enumerate(clusters):
            if index in labels:
                continue
            try:
                reply = model.ask(
                    topic_label_messages(questions=cluster.questions), max_new_tokens=LABEL_MAX_NEW_TOKENS
                )
            except BudgetExhausted:
                written.budget_exhausted = True
                break
            except ModelUnavailable as error:
                written.model_error = str(error)
                break
            if label := topic_label_parse(reply.text):
                labels[index] = label
                written.labelled += 1
    try:
        written.topics = _topics_save(bot=bot, clusters=clusters, matches=matches, labels=labels, previous=previous)
    except IntegrityError:
        # A question was deleted while the model labelled (a visitor's data, or past retention): the next run redoes
        # the topics; until then the old ones stay.
        logger.warning("the topics of bot %s changed while they were computed; kept the previous ones", bot.slug)
        return written
    written.count = len(written.topics)
    return written


@transaction.atomic
def _topics_save(
    *, bot: Bot, clusters: list[Cluster], matches: dict[int, Topic], labels: dict[int, str], previous: list[Topic]
) -> list[Topic]:
    member_ids = {message.id for cluster in clusters for message in cluster.members}
    still_there = set(Message.objects.filter(id__in=member_ids).values_list("id", flat=True))
    kept_ids = {topic.id for topic in matches.values()}
    Topic.objects.filter(id__in=[topic.id for topic in previous if topic.id not in kept_ids]).delete()
    topics = []
    for index, cluster in enumerate(clusters):
        members = [message for message in cluster.members if message.id in still_there]
        if len(members) < MIN_QUESTIONS:
            if index in matches:
                matches[index].delete()
            continue
        topic = matches.get(index) or Topic(bot=bot)
        topic.label = labels.get(index, "")
        topic.central_message_id = cluster.central.id if cluster.central.id in still_there else members[0].id
        topic.centroid = cluster.centroid.tolist()
        topic.question_count = len(members)
        topic.save()
        TopicQuestion.objects.filter(topic=topic).delete()
        TopicQuestion.objects.bulk_create(
            TopicQuestion(topic=topic, message_id=m.id, conversation_id=m.conversation_id, asked_at=m.created_at)
            for m in members
        )
        topics.append(topic)
    return topics
