import pytest

from chatbot.services import bot_create


@pytest.fixture
def bot(db):
    return bot_create(slug="acme", name="Acme Support", allowed_origins=["https://www.acme.test"])
