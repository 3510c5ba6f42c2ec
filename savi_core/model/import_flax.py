"""Import the official SAVi's Flax parameters into a project checkpoint.

``python -m savi_core.model.import_flax PARAMS OUT_DIR --preset S`` reads a parameter tree (an ``.npz`` of
``params/<module path>`` arrays, or the official trainer's msgpack checkpoint) and writes
``model.safetensors`` + ``config.json``. Every Flax parameter must map onto exactly one place of the
preset's model with the right shape; the first one that does not is named in the error.

Layouts (Flax -> torch): Dense ``(in, out)`` -> ``(out, in)``; Conv ``(kh, kw, in, out)`` ->
``(out, in, kh, kw)``; the decoder's layers (transposed with ``transpose_kernel=False``, or plain) ->
``ConvTranspose2d`` weight ``(in, out, kh, kw)`` of the spatially flipped kernel; GRUCell gates
``ir/iz/in`` + ``hr/hz/hn`` -> ``nn.GRUCell``'s stacked ``r, z, n`` weights (only ``hn`` has a hidden
bias in both). Only CNN encoders (presets S and M) are supported: no official ResNet parameters were
available to prove the L mapping against.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from savi_core.model.checkpoint import save_checkpoint
from savi_core.model.config import PRESETS, ModelConfig, preset
from savi_core.model.encoder import position_grid
from savi_core.model.savi import SAVi

Params = dict[str, np.ndarray]
Convert = Callable[[list[np.ndarray]], np.ndarray]


class FlaxImportError(ValueError):
    """The parameter tree does not fit the model; the message names the first offending parameter."""


def read_params(path: str | Path) -> Params:
    """Flat ``{module/path/name: array}`` from an ``.npz`` (``params/...`` keys) or a msgpack checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FlaxImportError(f"{path}: no such file")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            params = {k[len("params/") :]: data[k] for k in data.files if k.startswith("params/")}
    else:
        params = _read_msgpack_checkpoint(path)
    if not params:
        raise FlaxImportError(f"{path}: holds no 'params/...' arrays")
    return params


def _read_msgpack_checkpoint(path: Path) -> Params:
    """The official trainer's ``checkpoint_N`` (flax.serialization msgpack of the train state)."""
    import msgpack

    def decode(code: int, data: bytes):
        if code != 1:  # flax's ndarray extension type; nothing else is expected in a parameter tree
            raise FlaxImportError(f"{path}: unsupported msgpack extension type {code}")
        shape, dtype, buffer = msgpack.unpackb(data)
        return np.frombuffer(buffer, dtype=np.dtype(dtype)).reshape(shape)

    try:
        state = msgpack.unpackb(path.read_bytes(), ext_hook=decode, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise FlaxImportError(f"{path}: not a .npz and not a Flax msgpack checkpoint ({exc})") from exc
    tree = state.get("optimizer", {}).get("target", state) if isinstance(state, dict) else None
    tree = tree.get("params", tree) if isinstance(tree, dict) else None
    if not isinstance(tree, dict):
        raise FlaxImportError(f"{path}: no parameter tree found")
    flat: Params = {}

    def walk(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + "/")
            else:
                flat[name] = np.asarray(value)

    walk(tree, "")
    return flat


def _dense(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0].reshape(arrays[0].shape[0], -1).T


def _same(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0].reshape(-1)


def _conv(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0].transpose(3, 2, 0, 1)


def _conv_transpose(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0][::-1, ::-1].transpose(2, 3, 0, 1)


def _stack_dense(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([_dense([a]) for a in arrays], axis=0)


def _stack_bias(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([a.reshape(-1) for a in arrays])


def _head_weight(arrays: list[np.ndarray]) -> np.ndarray:
    return _stack_dense(arrays)[:, :, None, None]


def _indexed(module: torch.nn.Module, kind: type) -> list[str]:
    return [name for name, child in module.named_children() if isinstance(child, kind)]


def _mapping(model: SAVi) -> list[tuple[str, list[str], Convert]]:
    """(torch state key, Flax parameter paths, conversion) for every tensor of ``model``."""
    rules: list[tuple[str, list[str], Convert]] = []

    def add(key: str, paths: list[str], fn: Convert) -> None:
        rules.append((key, paths, fn))

    def dense(key: str, path: str, bias: bool = True) -> None:
        add(f"{key}.weight", [f"{path}/kernel"], _dense)
        if bias:
            add(f"{key}.bias", [f"{path}/bias"], _same)

    def norm(key: str, path: str) -> None:
        add(f"{key}.weight", [f"{path}/scale"], _same)
        add(f"{key}.bias", [f"{path}/bias"], _same)

    enc = "FrameEncoder_0"
    for i, idx in enumerate(_indexed(model.encoder.backbone, torch.nn.Conv2d)):
        add(f"encoder.backbone.{idx}.weight", [f"{enc}/CNN_0/conv_{i}/kernel"], _conv)
        add(f"encoder.backbone.{idx}.bias", [f"{enc}/CNN_0/conv_{i}/bias"], _same)
    dense("encoder.pos.proj", f"{enc}/PositionEmbedding_0/dense_pe_0")
    norm("encoder.norm", f"{enc}/PositionEmbedding_0/MLP_0/LayerNorm_0")
    for i, idx in enumerate(_indexed(model.encoder.mlp, torch.nn.Linear)):
        dense(f"encoder.mlp.{idx}", f"{enc}/PositionEmbedding_0/MLP_0/dense_mlp_{i}")

    for i, idx in enumerate(_indexed(model.initializer.encode, torch.nn.Linear)):
        dense(f"initializer.encode.{idx}", f"CoordinateEncoderStateInit_0/MLP_0/dense_mlp_{i}")

    sa = "SlotAttention_0"
    norm("corrector.norm_slots", f"{sa}/LayerNorm_0")
    norm("corrector.norm_inputs", f"{sa}/LayerNorm_1")
    dense("corrector.to_q", f"{sa}/general_dense_q_0", bias=False)
    add("corrector.to_kv.weight", [f"{sa}/general_dense_k_0/kernel", f"{sa}/general_dense_v_0/kernel"], _stack_dense)
    gru = f"{sa}/GRU_0/GRUCell_0"
    add("corrector.gru.weight_ih", [f"{gru}/{g}/kernel" for g in ("ir", "iz", "in")], _stack_dense)
    add("corrector.gru.bias_ih", [f"{gru}/{g}/bias" for g in ("ir", "iz", "in")], _stack_bias)
    add("corrector.gru.weight_hh", [f"{gru}/{g}/kernel" for g in ("hr", "hz", "hn")], _stack_dense)
    add(
        "corrector.gru.bias_hh",
        [f"{gru}/hn/bias"],
        lambda a: np.concatenate([np.zeros(2 * a[0].size, a[0].dtype), a[0]]),
    )
    if model.corrector.mlp is not None:
        norm("corrector.norm_mlp", f"{sa}/MLP_0/LayerNorm_0")
        dense("corrector.mlp.0", f"{sa}/MLP_0/dense_mlp_0")
        dense("corrector.mlp.2", f"{sa}/MLP_0/dense_mlp_1")

    tb, mha = "TransformerBlock_0", "TransformerBlock_0/MultiHeadDotProductAttention_0"
    add("predictor.qkv.weight", [f"{mha}/{p}/kernel" for p in ("query", "key", "value")], _stack_dense)
    add("predictor.qkv.bias", [f"{mha}/{p}/bias" for p in ("query", "key", "value")], _stack_bias)
    add("predictor.out.weight", [f"{mha}/out/kernel"], lambda a: a[0].reshape(-1, a[0].shape[-1]).T)
    add("predictor.out.bias", [f"{mha}/out/bias"], _same)
    norm("predictor.norm_attn", f"{tb}/LayerNorm_0")
    norm("predictor.norm_mlp", f"{tb}/LayerNorm_1")
    dense("predictor.mlp.0", f"{tb}/MLP_0/dense_mlp_0")
    dense("predictor.mlp.2", f"{tb}/MLP_0/dense_mlp_1")

    dec = "SpatialBroadcastDecoder_0"
    dense("decoder.pos.proj", f"{dec}/PositionEmbedding_0/dense_pe_0")
    for i, idx in enumerate(_indexed(model.decoder.cnn, torch.nn.ConvTranspose2d)):
        add(f"decoder.cnn.{idx}.weight", [f"{dec}/CNN_0/conv_{i}/kernel"], _conv_transpose)
        add(f"decoder.cnn.{idx}.bias", [f"{dec}/CNN_0/conv_{i}/bias"], _same)
    head = [f"{dec}/Readout_0/Dense_0/Dense_0", f"{dec}/alpha_logits"]
    add("decoder.head.weight", [f"{p}/kernel" for p in head], _head_weight)
    add("decoder.head.bias", [f"{p}/bias" for p in head], _stack_bias)
    return rules


def _check_fixed_grids(params: Params, cfg: ModelConfig, used: set[str]) -> None:
    """The official ``pos_embedding`` entries are fixed grids; they must be the ones this model builds."""
    for path in sorted(p for p in params if p.endswith("/pos_embedding")):
        grid = params[path]
        expected = position_grid(grid.shape[1], grid.shape[2], cfg.position_embedding).numpy()
        if grid.shape[1:] != expected.shape or not np.allclose(grid[0], expected, atol=1e-6):
            raise FlaxImportError(
                f"{path}: shape {grid.shape} or values are not the [-1, 1] linear grid this model uses"
            )
        used.add(path)


def state_dict_from_flax(params: Params, cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """Map a flat Flax parameter tree onto a fresh ``SAVi(cfg)``'s state dict, checking names and shapes."""
    if cfg.encoder.kind != "cnn":
        raise FlaxImportError(f"encoder.kind {cfg.encoder.kind!r}: only the CNN encoder (presets S, M) can be imported")
    if cfg.initializer.kind != "bbox" or cfg.predictor.kind != "transformer" or cfg.position_embedding != "linear":
        raise FlaxImportError(
            "only the official configuration (bbox initializer, transformer predictor, "
            "linear position embedding) can be imported"
        )
    model = SAVi(cfg)
    expected = model.state_dict()
    used: set[str] = set()
    _check_fixed_grids(params, cfg, used)
    out: dict[str, torch.Tensor] = {}
    for key, paths, convert in _mapping(model):
        for path in paths:
            if path not in params:
                raise FlaxImportError(f"{path}: missing from the parameter tree (needed for {key})")
        try:
            value = np.ascontiguousarray(convert([np.asarray(params[p], np.float32) for p in paths]))
        except ValueError as exc:
            raise FlaxImportError(f"{paths[0]}: shape {params[paths[0]].shape} does not fit {key} ({exc})") from exc
        if tuple(value.shape) != tuple(expected[key].shape):
            raise FlaxImportError(
                f"{paths[0]}: shape {params[paths[0]].shape} does not fit {key} "
                f"(needs {tuple(expected[key].shape)} after conversion)"
            )
        out[key] = torch.from_numpy(value.copy())
        used.update(paths)
    unexpected = sorted(set(params) - used)
    if unexpected:
        raise FlaxImportError(
            f"{unexpected[0]}: not part of preset {cfg.preset!r} ({len(unexpected)} unexpected parameter(s))"
        )
    missing = sorted(set(expected) - set(out))
    if missing:
        raise FlaxImportError(f"{missing[0]}: no Flax parameter maps to it")
    return out


def import_flax(
    params_path: str | Path, out_dir: str | Path, preset_name: str = "S", num_slots: int | None = None
) -> SAVi:
    """Read ``params_path``, build ``preset_name`` (with ``num_slots``), load the weights, save a checkpoint."""
    cfg = preset(preset_name)
    if num_slots is not None:
        cfg = ModelConfig.from_dict({**cfg.to_dict(), "num_slots": num_slots})
    model = SAVi(cfg)
    model.load_state_dict(state_dict_from_flax(read_params(params_path), cfg))
    save_checkpoint(out_dir, model, extra={"trained": True, "imported_from": str(params_path)})
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m savi_core.model.import_flax", description=__doc__.split("\n\n")[0])
    parser.add_argument("params", help="official SAVi parameters: .npz of params/... arrays, or a msgpack checkpoint")
    parser.add_argument("out_dir", help="checkpoint directory to write (model.safetensors + config.json)")
    parser.add_argument("--preset", default="S", choices=PRESETS)
    parser.add_argument(
        "--num-slots",
        type=int,
        default=None,
        help="slots including the background one (the preset's 11 by default; official MOVi runs use 24)",
    )
    args = parser.parse_args(argv)
    try:
        import_flax(args.params, args.out_dir, args.preset, args.num_slots)
    except FlaxImportError as exc:
        print(f"import_flax: {exc}", file=sys.stderr)
        return 1
    print(f"import_flax: wrote {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
