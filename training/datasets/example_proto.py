"""The ``tf.train.Example`` message, defined with the ``protobuf`` package alone (no TensorFlow).

The wire format is fixed by TensorFlow's ``example.proto`` / ``feature.proto``; the descriptor is built
here in Python and registered in a private pool so it never clashes with TensorFlow's own copy if both
are imported in one process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from training.datasets.tfrecord import DatasetFormatError

_F = descriptor_pb2.FieldDescriptorProto


def _field(
    message,
    name: str,
    number: int,
    ftype: int,
    label: int = _F.LABEL_OPTIONAL,
    type_name: str | None = None,
    oneof_index: int | None = None,
) -> None:
    field = message.field.add(name=name, number=number, type=ftype, label=label)
    if type_name is not None:
        field.type_name = type_name
    if oneof_index is not None:
        field.oneof_index = oneof_index


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    """feature.proto + example.proto in one file, proto3 (repeated scalars packed, as TensorFlow writes them)."""
    fd = descriptor_pb2.FileDescriptorProto(name="savi_ros/tf_example.proto", package="tensorflow", syntax="proto3")
    for name, ftype in (("BytesList", _F.TYPE_BYTES), ("FloatList", _F.TYPE_FLOAT), ("Int64List", _F.TYPE_INT64)):
        _field(fd.message_type.add(name=name), "value", 1, ftype, _F.LABEL_REPEATED)

    feature = fd.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    _field(feature, "bytes_list", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.BytesList", oneof_index=0)
    _field(feature, "float_list", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.FloatList", oneof_index=0)
    _field(feature, "int64_list", 3, _F.TYPE_MESSAGE, type_name=".tensorflow.Int64List", oneof_index=0)

    features = fd.message_type.add(name="Features")
    entry = features.nested_type.add(name="FeatureEntry")
    entry.options.map_entry = True
    _field(entry, "key", 1, _F.TYPE_STRING)
    _field(entry, "value", 2, _F.TYPE_MESSAGE, type_name=".tensorflow.Feature")
    _field(features, "feature", 1, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, type_name=".tensorflow.Features.FeatureEntry")

    example = fd.message_type.add(name="Example")
    _field(example, "features", 1, _F.TYPE_MESSAGE, type_name=".tensorflow.Features")
    return fd


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_build_file())
Example = message_factory.GetMessageClass(_POOL.FindMessageTypeByName("tensorflow.Example"))

FeatureValue = Sequence[bytes] | np.ndarray | Sequence[float] | Sequence[int]


class ExampleFeatures:
    """Typed, checked access to the features of one parsed Example.

    ``source`` (e.g. ``"shard-00001 record 7 at byte 1234"``) is put in every error so a bad record can be found.
    """

    def __init__(self, payload: bytes, source: str) -> None:
        self.source = source
        example = Example()
        try:
            example.ParseFromString(payload)
        except DecodeError as e:
            raise DatasetFormatError(f"{source}: not a tf.train.Example protobuf ({e})") from e
        self._features = example.features.feature

    def keys(self) -> list[str]:
        return sorted(self._features.keys())

    def __contains__(self, key: str) -> bool:
        return key in self._features

    def kind(self, key: str) -> str:
        """``"bytes_list"``, ``"float_list"``, ``"int64_list"`` or ``"empty"``."""
        if key not in self._features:
            return "missing"
        return self._features[key].WhichOneof("kind") or "empty"

    def _get(self, key: str, kind: str):
        if key not in self._features:
            raise DatasetFormatError(f"{self.source}: missing feature '{key}'")
        feature = self._features[key]
        found = feature.WhichOneof("kind")
        if found is None:  # an empty feature of any kind: no values
            return []
        if found != kind:
            raise DatasetFormatError(f"{self.source}: feature '{key}' is a {found}, expected a {kind}")
        return getattr(feature, kind).value

    def bytes(self, key: str) -> list[bytes]:
        return list(self._get(key, "bytes_list"))

    def floats(self, key: str, count: int | None = None) -> np.ndarray:
        """float32 values; ``count`` checks the number of elements."""
        return self._checked(key, np.asarray(self._get(key, "float_list"), dtype=np.float32), count)

    def ints(self, key: str, count: int | None = None) -> np.ndarray:
        """int64 values; ``count`` checks the number of elements."""
        return self._checked(key, np.asarray(self._get(key, "int64_list"), dtype=np.int64), count)

    def int(self, key: str) -> int:
        return int(self.ints(key, 1)[0])

    def _checked(self, key: str, values: np.ndarray, count: int | None) -> np.ndarray:
        if count is not None and values.size != count:
            raise DatasetFormatError(f"{self.source}: feature '{key}' has {values.size} elements, expected {count}")
        return values


def encode_example(features: Mapping[str, FeatureValue]) -> bytes:
    """Serialise a ``tf.train.Example``: bytes sequences -> bytes_list, float arrays -> float_list,
    integer/bool arrays -> int64_list (what TFDS writes). Used by fixture writers and export tools."""
    example = Example()
    for key, value in features.items():
        feature = example.features.feature[key]
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (bytes, bytearray)):
            feature.bytes_list.value.extend(bytes(v) for v in value)
            continue
        array = np.asarray(value)
        if array.dtype.kind == "f":
            feature.float_list.value.extend(array.astype(np.float32).ravel().tolist())
        elif array.dtype.kind in "iub":
            feature.int64_list.value.extend(array.astype(np.int64).ravel().tolist())
        elif array.dtype.kind in "SO":
            feature.bytes_list.value.extend(bytes(v) for v in array.ravel())
        else:
            raise TypeError(f"feature '{key}': cannot store dtype {array.dtype} in a tf.train.Example")
    return example.SerializeToString()


def describe(payload: bytes, source: str = "<example>") -> dict[str, tuple[str, int]]:
    """``{key: (kind, number of values)}`` of one Example, to inspect an unknown file."""
    parsed = ExampleFeatures(payload, source)
    out = {}
    for key in parsed.keys():
        kind = parsed.kind(key)
        out[key] = (kind, 0 if kind == "empty" else len(getattr(parsed._features[key], kind).value))
    return out
