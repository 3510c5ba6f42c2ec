"""A subscription taken in a thread of its own instead of by the executor.

rclpy's executors are Python loops over every entity of their nodes: each message waits for the loop to
rebuild its wait set, take it and call back, and the loop holds the GIL while it does, against the thread
that the callback handed the message to. A `Taker` waits on one subscription alone (and a guard condition
that stops it) and calls back from its own thread as soon as a message is there. The subscription is made
in an `OwnThreadGroup`, so no executor waits on it too; its QoS event handlers stay with the executor.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.context import Context
from rclpy.exceptions import InvalidHandle
from rclpy.guard_condition import GuardCondition
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.subscription import MessageInfo, Subscription


class OwnThreadGroup(MutuallyExclusiveCallbackGroup):
    """A callback group whose subscriptions no executor waits on (a `Taker` takes them); its other
    entities, the subscriptions' QoS event handlers, run in the executor as usual."""

    def can_execute(self, entity) -> bool:
        return not isinstance(entity, Subscription) and super().can_execute(entity)


class Taker:
    """A thread that waits on one subscription (of an `OwnThreadGroup`) and hands each message and its info
    to ``on_message``, as an executor would, until `stop`. Its wait set holds that subscription and a guard
    condition of its own, rclpy's low-level one as `rclpy.wait_for_message` uses it."""

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
        sub, wake = self._sub, self._wake
        wait_set = _rclpy.WaitSet(1, 1, 0, 0, 0, 0, self._context.handle)
        while not self._stopping.is_set():
            try:
                with sub.handle, wake.handle:
                    wait_set.clear_entities()
                    wait_set.add_subscription(sub.handle)
                    wait_set.add_guard_condition(wake.handle)
                    wait_set.wait(-1)  # releases the GIL
                    if self._stopping.is_set():
                        return
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
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
