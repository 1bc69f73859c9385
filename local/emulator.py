"""The local AWS API emulator: moto server, with SQS FIFO message groups
handed out in order after a visibility timeout, as SQS does.

moto (5.x) keeps a received message "pending" until it is received again,
and skips any message whose group has a pending one. When several messages
of a group were received together and their visibility timeout passes,
the first (A) is skipped because the second (B) still counts as pending;
B is then handed out, with every later message of the group, before A:
send A, B; receive both; send C, D; after the timeout moto answers B, C, D,
and A only later. A message whose visibility timeout has passed is not in
flight: it is cleared before each receive, so the group's earliest message
comes first.

moto applies a DynamoDB transaction item by item and, when one fails,
restores every table it touched from a copy taken when it began: a write
that another request made in between is lost, and a concurrent request may
read a transaction half applied. DynamoDB applies a transaction atomically
and isolated from every other request, so here DynamoDB's requests are
handled one at a time.

The emulator ends with the process that started it (`hooks dev`, a test,
`make emulator`): when that process is gone, even killed without a chance
to clean up, nothing else would stop the server.

Run as moto_server is: `python local/emulator.py -H 127.0.0.1 -p 4566`.
"""

import os
import sys
import threading
import time

from moto.dynamodb.responses import DynamoHandler
from moto.server import main
from moto.sqs import models

_receive = models.SQSBackend.receive_message


def _receive_in_group_order(self, queue_name, *args, **kwargs):
    queue = self.get_queue(queue_name)
    for message in list(queue.pending_messages):
        if message.visible:
            queue.pending_messages.discard(message)
    return _receive(self, queue_name, *args, **kwargs)


models.SQSBackend.receive_message = _receive_in_group_order

_dynamodb = threading.Lock()
_call_action = DynamoHandler.call_action


def _one_at_a_time(self, *args, **kwargs):
    with _dynamodb:
        return _call_action(self, *args, **kwargs)


DynamoHandler.call_action = _one_at_a_time


def _end_with_parent():
    """Exits once the process that started this one is gone (this one is
    then handed to another parent)."""
    parent = os.getppid()
    if parent == 1:
        return
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=_end_with_parent, daemon=True).start()
    sys.exit(main())
