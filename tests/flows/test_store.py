"""The conversation lock: two messages from one phone never interleave."""

from __future__ import annotations

import threading

from flows.messages import Channel
from flows.store import lock_conversation
from recpo.db import Database

PHONE = "+51987650001"


def _hold_then_write(
    database: Database, now, locked: threading.Event, release: threading.Event
) -> None:
    with database.transaction() as session:
        conversation = lock_conversation(session, PHONE, Channel.SMS, now)
        locked.set()
        release.wait(10)
        conversation.data = '{"first": true}'


class TestLockConversation:
    def test_creates_the_conversation_once(self, committing_database: Database, clock):
        for channel in (Channel.SMS, Channel.WHATSAPP):
            with committing_database.transaction() as session:
                conversation = lock_conversation(session, PHONE, channel, clock.now())
                assert (conversation.phone, conversation.channel) == (PHONE, channel)
                assert conversation.data == "{}" and conversation.flow is None

    def test_a_second_message_waits_for_the_first(self, committing_database: Database, clock):
        # Both for a phone that has no conversation yet (the insert branch) and for one that has
        # (the conflict branch), the second transaction sees the first one's committed change.
        for _ in range(2):
            locked, release = threading.Event(), threading.Event()
            first = threading.Thread(
                target=_hold_then_write,
                args=(committing_database, clock.now(), locked, release),
            )
            first.start()
            assert locked.wait(10)
            seen: list[str] = []

            def second(seen: list[str] = seen) -> None:
                with committing_database.transaction() as session:
                    conversation = lock_conversation(session, PHONE, Channel.SMS, clock.now())
                    seen.append(conversation.data)
                    conversation.data = "{}"

            waiter = threading.Thread(target=second)
            waiter.start()
            waiter.join(0.5)
            assert waiter.is_alive(), "the second message did not wait for the first"
            release.set()
            first.join(10)
            waiter.join(10)
            assert seen == ['{"first": true}']
