"""ASGI entry point: HTTP through Django, websockets through Channels (served by Daphne)."""

import os

from chatbot.ops.embedded import configure_environment

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chatbot.settings")
configure_environment()

from django.core.asgi import get_asgi_application  # noqa: E402

# Django must be set up before the consumers (and the models they import) are.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from chatbot.ops.gc_pauses import long_lived_objects_freeze  # noqa: E402
from chatbot.realtime.daphne_tuning import daphne_tuning_install  # noqa: E402
from chatbot.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

# Each frame Daphne sends: written at once, and no debug line formatted for it (chatbot/realtime/daphne_tuning.py).
daphne_tuning_install()

# Everything Daphne needs is loaded: keep the collector's full passes, which stop every socket, short.
long_lived_objects_freeze()
