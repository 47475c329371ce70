"""FIFO order per group, checked from the queue itself: for the demo (and any check that reads a queue).

The same rule as the chaos checker's (`chaos.checker.order_violations_in`, design §4.7), kept here so that
`outbox` does not import `chaos`: per group, the first copy of each message, in receive order, must follow
the order of acceptance. Later copies (duplicates) are not an order violation; a lost message is not
either (it is counted as lost).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from outbox.local.queue import message_id_of


def group_order_violations(
    received: Iterable[Mapping[str, Any]], accepted: Iterable[tuple[str, str | None]]
) -> dict[str, list[str]]:
    """The groups received out of order, each with its violations, one line per pair of consecutive first
    copies received the wrong way round (`customer-3: #23 received before #13`, #n being the place in
    `accepted`), and per message received under another `MessageGroupId` than it was accepted with.

    `received`: SQS messages in receive order (with the `message_id` attribute, and `Attributes` asked for).
    `accepted`: (message_id, group) in the order of acceptance; a None group is not checked.
    """
    place: dict[str, tuple[int, str]] = {}
    for index, (message_id, group) in enumerate(accepted):
        if group is not None:
            place[message_id] = (index, group)
    violations: dict[str, list[str]] = defaultdict(list)
    order: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for sqs_message in received:
        message_id = message_id_of(dict(sqs_message))
        if message_id in seen or message_id not in place:
            continue
        seen.add(message_id)
        index, group = place[message_id]
        order[group].append(index)
        sent_group = sqs_message.get("Attributes", {}).get("MessageGroupId")
        if sent_group is not None and sent_group != group:
            violations[group].append(f"{group}: #{index} received in group {sent_group!r}")
    for group, indexes in order.items():
        violations[group].extend(
            f"{group}: #{first} received before #{then}"
            for first, then in itertools.pairwise(indexes)
            if then < first
        )
    return {group: lines for group, lines in violations.items() if lines}
