"""A subscription taken in a thread of its own instead of by the executor.

rclpy's executors are Python loops over every entity of their nodes: each message waits for the loop to
rebuild its wait set, take it and call back, and the loop holds the GIL while it does, against the thread
that the callback handed the message to. A `Taker` waits on one subscription alone and calls back from its
own thread as soon as a message is there. The subscription is made in an `OwnThreadGroup`, so no executor
waits on it; its QoS event handlers (e.g. the incompatible-QoS warning) are the taker's too: rmw_fastrtps
wakes a wait set holding a subscription's events on each of its messages, so an executor holding them woke
2-4 times per image (measured) and took the GIL from the taker at every arrival.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Coroutine

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.subscription import MessageInfo, Subscription


def _run_to_end(coroutine: Coroutine[Any, Any, None]) -> None:
    """An event handler's ``execute``: a coroutine that ends without waiting, its callback being a function."""
    try:
        coroutine.send(None)
    except StopIteration:
        return
    coroutine.close()
    raise RuntimeError("a QoS event callback awaited something: only plain functions are supported here")


class OwnThreadGroup(MutuallyExclusiveCallbackGroup):
    """A callback group no executor runs anything of: a `Taker` takes its subscription and the subscription's
    QoS events."""

    def can_execute(self, entity) -> bool:
        return False


class Taker:
    """A thread that waits on one subscription (of an `OwnThreadGroup`) and hands each message and its info
    to ``on_message``, and runs its QoS event callbacks, as an executor would, until `stop`. Its wait set
    holds that subscription, its events and a guard condition of its own: rclpy's low-level one, as
    `rclpy.wait_for_message` uses it."""

    def __init__(
        self,
        subscription: Subscription,
        context: Context,
        on_message: Callable[[Any, MessageInfo], None],
        on_error: Callable[[Exception], None],
        name: str,
    ) -> None:
        self._sub, self._context = subscription, context
        self._on_message, self._on_error = on_message, on_error
        self._wake = GuardCondition(None, None, context=context)  # not a node's: no executor waits on it
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sub, wake, events = self._sub, self._wake, list(self._sub.event_handlers)
        wait_set = _rclpy.WaitSet(1, 1, 0, 0, 0, len(events), self._context.handle)
        while not self._stopping.is_set():
            try:
                with contextlib.ExitStack() as in_use:  # none of them can be destroyed while waited on
                    for entity in (sub.handle, wake.handle, *events):
                        in_use.enter_context(entity)
                    wait_set.clear_entities()
                    index = wait_set.add_subscription(sub.handle)
                    wait_set.add_guard_condition(wake.handle)
                    for event in events:
                        event.add_to_wait_set(wait_set)
                    wait_set.wait(-1)  # releases the GIL
                    if self._stopping.is_set():
                        return
                    ready = [(event, event.take_data()) for event in events if event.is_ready(wait_set)]
                    taken = (
                        sub.handle.take_message(sub.msg_type, sub.raw)
                        if wait_set.is_ready("subscription", index)
                        else None
                    )
                for event, data in ready:
                    _run_to_end(event.execute(data))
                if taken is not None:
                    self._on_message(*taken)
            except InvalidHandle:  # the subscription was destroyed: nothing left to take
                return
            except Exception as exc:  # keep taking; a closed context ends the thread
                if not self._context.ok():
                    return
                self._on_error(exc)

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Stop taking (the thread leaves its wait at once); False when it did not end within ``timeout_s``.
        The subscription may be destroyed after a True."""
        self._stopping.set()
        self._wake.trigger()
        self._thread.join(timeout=timeout_s)
        if self._thread.is_alive():
            return False
        self._wake.destroy()
        return True
