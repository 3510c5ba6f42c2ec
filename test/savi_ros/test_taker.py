"""savi_ros.taker: a subscription taken by a thread of its own, never by the executor spinning its node."""

from __future__ import annotations

import threading
import uuid

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.event_handler import SubscriptionEventCallbacks  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_policy_name_from_kind  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from savi_ros.taker import OwnThreadGroup, Taker  # noqa: E402
from test.savi_ros.conftest import wait_for  # noqa: E402

# rclpy's default incompatible-QoS callback of the test's best-effort publisher still calls the deprecated `warn`
pytestmark = pytest.mark.filterwarnings("ignore:Deprecated in favor of:DeprecationWarning")


@pytest.fixture
def spun_node():
    """A node in a context of its own, spun by a single-threaded executor in the background."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node(f"taker_test_{uuid.uuid4().hex[:8]}", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node, executor
    executor.shutdown()
    thread.join(timeout=10)
    node.destroy_node()
    context.try_shutdown()


def test_messages_reach_the_taker_thread_with_their_info_and_never_the_executor(spun_node):
    node, executor = spun_node
    topic = f"/taker_test_{uuid.uuid4().hex[:8]}"
    by_executor: list[str] = []
    taken: list[tuple[str, str, int]] = []
    sub = node.create_subscription(
        String, topic, lambda m: by_executor.append(m.data), 10, callback_group=OwnThreadGroup()
    )
    taker = Taker(
        sub,
        node.context,
        lambda msg, info: taken.append((msg.data, threading.current_thread().name, info["received_timestamp"])),
        lambda exc: pytest.fail(f"taking failed: {exc}"),
        "test_taker",
    )
    pub = node.create_publisher(String, topic, 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    assert not executor.can_execute(sub)
    for text in ("a", "b", "c"):
        pub.publish(String(data=text))
    assert wait_for(lambda: len(taken) == 3)
    assert [t[0] for t in taken] == ["a", "b", "c"]
    assert all(name == "test_taker" and received > 0 for _, name, received in taken)
    assert by_executor == []
    assert taker.stop()
    assert not any(t.name == "test_taker" for t in threading.enumerate())
    pub.publish(String(data="after stop"))
    node.destroy_subscription(sub)
    assert [t[0] for t in taken] == ["a", "b", "c"] and by_executor == []


def test_a_failing_callback_is_reported_and_the_next_message_still_taken(spun_node):
    node, _ = spun_node
    topic = f"/taker_test_{uuid.uuid4().hex[:8]}"
    errors: list[Exception] = []
    taken: list[str] = []

    def on_message(msg, info) -> None:
        if msg.data == "bad":
            raise ValueError("cannot file it")
        taken.append(msg.data)

    sub = node.create_subscription(String, topic, lambda m: None, 10, callback_group=OwnThreadGroup())
    taker = Taker(sub, node.context, on_message, errors.append, "test_taker_errors")
    pub = node.create_publisher(String, topic, 10)
    assert wait_for(lambda: pub.get_subscription_count() > 0)
    pub.publish(String(data="bad"))
    pub.publish(String(data="good"))
    assert wait_for(lambda: taken == ["good"])
    assert [str(e) for e in errors] == ["cannot file it"]
    assert taker.stop()


def test_the_subscriptions_qos_events_run_in_the_taker_thread_not_the_executor(spun_node):
    """A best-effort publisher meeting the reliable subscription: its incompatible-QoS callback runs, in the
    taker's thread (no executor holds the subscription's events, which would wake it on every message)."""
    node, executor = spun_node
    topic = f"/taker_test_{uuid.uuid4().hex[:8]}"
    events: list[tuple[str, str]] = []
    reliable = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST, depth=1)
    callbacks = SubscriptionEventCallbacks(
        incompatible_qos=lambda event: events.append(
            (qos_policy_name_from_kind(event.last_policy_kind), threading.current_thread().name)
        )
    )
    sub = node.create_subscription(
        String, topic, lambda m: None, reliable, callback_group=OwnThreadGroup(), event_callbacks=callbacks
    )
    assert sub.event_handlers and not any(executor.can_execute(h) for h in sub.event_handlers)
    taker = Taker(sub, node.context, lambda msg, info: None, lambda exc: pytest.fail(f"{exc}"), "test_taker_qos")
    best_effort = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1)
    node.create_publisher(String, topic, best_effort)
    assert wait_for(lambda: events)
    assert events[0] == ("RELIABILITY", "test_taker_qos")
    assert taker.stop()
