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

Run as moto_server is: `python local/emulator.py -H 127.0.0.1 -p 4566`.
"""

import sys

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

if __name__ == "__main__":
    sys.exit(main())
