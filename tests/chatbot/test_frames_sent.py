"""A frame for a socket its client has just closed: Daphne's protocol (autobahn) refuses it, and the consumer drops
it instead of failing the message it was handling (a traceback in Daphne's log, an error frame sent to nobody)."""

from autobahn.exception import Disconnected

from chatbot.chat.consumers import ChatConsumer
from chatbot.dashboard.consumers import DashboardConsumer


def consumer_on_a_socket(consumer_class, *, closed: bool):
    consumer = consumer_class()
    consumer.sent = []

    async def base_send(message):  # the ASGI server's send: Daphne hands the frame to autobahn's protocol
        if closed:
            raise Disconnected("Attempt to send on a closed protocol")
        consumer.sent.append(message)

    consumer.base_send = base_send
    return consumer


async def test_a_frame_goes_out_as_compact_json():
    for consumer_class in (ChatConsumer, DashboardConsumer):
        consumer = consumer_on_a_socket(consumer_class, closed=False)
        await consumer.send_frame({"type": "ack", "message_id": 7})
        assert consumer.sent == [{"type": "websocket.send", "text": '{"type":"ack","message_id":7}'}]


async def test_a_frame_for_a_socket_the_client_closed_is_dropped():
    for consumer_class in (ChatConsumer, DashboardConsumer):
        consumer = consumer_on_a_socket(consumer_class, closed=True)
        await consumer.send_frame({"type": "ack", "message_id": 7})
        assert consumer.sent == []
