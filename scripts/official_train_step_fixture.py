"""Write the official SAVi's own training step on a tiny model as a test fixture (.npz, no pickle).

Run with the OFFICIAL virtualenv (jax 0.4.13, flax 0.6.11; ../shared/official_savi_bench/official_savi_setup.sh),
not the project's::

    /work/official_work/venv/bin/python scripts/official_train_step_fixture.py \
        --src /work/official_work/src --out test/training/fixtures/official_train_step.npz

Everything recorded is the official code's output: the MOVi "S" config
(``savi/configs/movi/savi_conditional_small.py``) with only its widths shrunk (TINY below) and 32x32
frames, parameters from ``model.init`` keyed as ``trainer.train_and_evaluate`` keys them, and one call of
the official ``savi.lib.trainer.train_step`` (pmapped as the trainer does) with the config's loss
(``losses.compute_full_loss``), schedule (``optax.warmup_cosine_decay_schedule``) and ``max_grad_norm``.
The one stand-in is the optimizer object: ``flax.optim`` is gone from flax 0.6.11, so ``FlaxOptimAdam``
below plays ``flax.optim.Adam(learning_rate)`` (beta1 0.9, beta2 0.999, eps 1e-8, no weight decay) with
optax's ``scale_by_adam``, which computes the same update. TensorFlow is stubbed as in the shared bench.

The step is taken at trainer step ``--step`` (learning rate ``schedule(step - 1)``) on a fresh optimizer,
since at step 1 the official learning rate is 0 and the update would be empty. Keys:
  params/<flax path>      initial parameters          input/*   the batch (NTHWC video, flow target, boxes)
  out/params/<flax path>  parameters after the step   out/mu/<flax path>  Adam first moment (0.1 x clipped grad)
  out/nu/<flax path>      Adam second moment (0.001 x clipped grad squared)
  out/loss, out/grad_norm (before clipping), out/lr   schedule/steps, schedule/lr  official schedule values
  meta/*                  config overrides, versions, source commit
"""

import argparse
import json
import os
import sys

TINY = {
    "encoder.backbone.features": [16, 16, 16, 16],
    "encoder.pos_emb.output_transform.hidden_size": 32,
    "corrector.qkv_size": 32,
    "predictor.qkv_size": 32,
    "predictor.mlp_size": 64,
    "initializer.embedding_transform.hidden_size": 64,
    "initializer.embedding_transform.output_size": 32,
    "decoder.resolution": (4, 4),
    "decoder.backbone.features": [16, 16, 16, 16],
}
SIZE, BATCH, FRAMES, BOXES = 32, 2, 2, 3
SCHEDULE_STEPS = [0, 1, 1000, 2499, 2500, 2501, 30000, 50000, 99999, 100000, 120000]


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", required=True, help="the official repository's work tree (holds savi/)")
    p.add_argument(
        "--bench-dir",
        default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "official_savi_bench"),
        help="folder of official_savi_bench.py (its TensorFlow stub and XLA settings)",
    )
    p.add_argument("--out", required=True)
    p.add_argument("--step", type=int, default=30001, help="official trainer step (1-based) of the recorded step")
    p.add_argument("--seed", type=int, default=7)
    return p.parse_args()


def stub_loop_modules():
    """Empty stand-ins for what only the trainer's loop uses (data, evaluation, logging, checkpoints), all of
    which need TensorFlow or TensorBoard; ``train_step`` touches none of them."""
    import types

    import clu

    for name in (
        "clu.checkpoint",
        "clu.metric_writers",
        "clu.periodic_actions",
        "clu.parameter_overview",
        "savi.lib.input_pipeline",
        "savi.lib.evaluator",
    ):
        sys.modules[name] = types.ModuleType(name)
        if name.startswith("clu."):
            setattr(clu, name.split(".")[1], sys.modules[name])


def main():
    a = parse_args()
    sys.path.insert(0, os.path.abspath(a.bench_dir))
    import official_savi_bench as ob  # noqa: E402

    ob.configure_xla(1)
    sys.path.insert(0, os.path.abspath(a.src))
    ob.install_import_shims()
    stub_loop_modules()
    import flax
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from savi.lib import losses, trainer, utils

    config = ob.load_config(os.path.join(a.src, ob.CONFIG_REL))
    for dotted, value in TINY.items():
        *parents, leaf = dotted.split(".")
        node = config.model
        for name in parents:
            node = node[name]
        node[leaf] = value
    model = utils.build_model_from_config(config.model)

    @flax.struct.dataclass
    class FlaxOptimAdam:
        """``flax.optim.Adam(learning_rate)`` as the trainer uses it: ``.target`` and ``.apply_gradient``."""

        target: dict
        state: optax.ScaleByAdamState

        def apply_gradient(self, grad, learning_rate):
            updates, state = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8).update(grad, self.state)
            target = jax.tree_util.tree_map(lambda p, u: p - learning_rate * u, self.target, updates)
            return self.replace(target=target, state=state)

    # trainer.train_and_evaluate: rng -> (rng, data_rng); init_model: rng -> rng, init, model, dropout.
    rng = jax.random.PRNGKey(config.seed)
    rng, _ = jax.random.split(rng)
    _, init_rng, model_rng, dropout_rng = jax.random.split(rng, num=4)
    init_video = jnp.ones((1, FRAMES, SIZE, SIZE, 3), jnp.float32)
    variables = model.init(
        {"params": model_rng, "state_init": init_rng, "dropout": dropout_rng},
        video=init_video,
        conditioning=jnp.ones((1, FRAMES, BOXES, 4), jnp.int32),
        padding_mask=jnp.ones(init_video.shape[:-1], jnp.int32),
    )
    state_vars, params = variables.pop("params")  # a FrozenDict in flax 0.6.11
    state_vars = utils.filter_key_from_frozen_dict(state_vars, key="intermediates")

    rs = np.random.RandomState(a.seed)
    video = rs.uniform(0, 1, (BATCH, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    flow = rs.uniform(0, 1, (BATCH, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    lo = rs.uniform(0.0, 0.6, (BATCH, BOXES, 2))
    boxes = np.concatenate([lo, np.minimum(lo + rs.uniform(0.1, 0.4, (BATCH, BOXES, 2)), 1.0)], -1).astype(np.float32)
    boxes[1, -1] = 0.0  # MOVi pads missing objects with all-zero boxes
    segmentations = rs.randint(0, BOXES + 1, (BATCH, FRAMES, SIZE, SIZE)).astype(np.int32)
    batch = {
        "video": video,
        "flow": flow,
        "boxes": np.repeat(boxes[:, None], FRAMES, axis=1),
        "segmentations": segmentations,
        "padding_mask": np.ones((BATCH, FRAMES, SIZE, SIZE), np.int32),
    }

    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=config.learning_rate,
        warmup_steps=config.warmup_steps,
        decay_steps=config.num_train_steps,
    )
    loss_fn = lambda preds, b: losses.compute_full_loss(preds, b, loss_config=config.losses)  # noqa: E731
    metrics_cls = utils.make_metrics_collection("TrainMetrics", config.train_metrics_spec)
    opt = FlaxOptimAdam(target=params, state=optax.scale_by_adam().init(params))
    p_train_step = jax.pmap(
        trainer.train_step, axis_name="batch", static_broadcasted_argnums=(0, 6, 7, 8, 9, 10, 11, 12)
    )
    rep = flax.jax_utils.replicate
    opt_new, _, _, metrics_update, _ = p_train_step(
        model,
        rep(jax.random.PRNGKey(0)),
        rep(jnp.int32(a.step)),
        rep(state_vars),
        rep(opt),
        jax.tree_util.tree_map(lambda x: x[None], batch),
        loss_fn,
        schedule,
        metrics_cls,
        BOXES + 1,
        BOXES + 1,
        config.conditioning_key,
        config.max_grad_norm,
    )
    opt_new = flax.jax_utils.unreplicate(opt_new)
    loss = float(flax.jax_utils.unreplicate(metrics_update).compute()["loss"])

    # The gradient norm before clipping (the step does not return it), from the same loss on the same batch.
    def plain_loss(prm):
        preds = model.apply(
            {"params": prm, **state_vars},
            video=batch["video"],
            conditioning=batch["boxes"],
            rngs={"state_init": jax.random.PRNGKey(1), "dropout": jax.random.PRNGKey(2)},
            train=True,
            padding_mask=batch["padding_mask"],
        )
        return loss_fn(preds, batch)[0]

    plain, grads = jax.value_and_grad(plain_loss)(params)
    grad_norm = float(optax.global_norm(grads))
    clipped = utils.clip_grads(grads, config.max_grad_norm)
    pairs = list(zip(jax.tree_util.tree_leaves(opt_new.state.mu), jax.tree_util.tree_leaves(clipped)))
    worst = max(float(jnp.max(jnp.abs(10 * m - g))) for m, g in pairs)
    scale = max(float(jnp.max(jnp.abs(g))) for _, g in pairs)
    assert abs(plain - loss) <= 1e-5 * abs(loss) and worst <= 1e-5 * scale, (plain, loss, worst, scale)

    flat = lambda tree: flax.traverse_util.flatten_dict(flax.core.unfreeze(tree), sep="/")  # noqa: E731
    arrays = {"params/" + k: np.asarray(v) for k, v in flat(params).items()}
    arrays.update({"out/params/" + k: np.asarray(v) for k, v in flat(opt_new.target).items()})
    arrays.update({"out/mu/" + k: np.asarray(v) for k, v in flat(opt_new.state.mu).items()})
    arrays.update({"out/nu/" + k: np.asarray(v) for k, v in flat(opt_new.state.nu).items()})
    arrays.update({"input/" + k: v for k, v in batch.items() if k != "padding_mask"})
    arrays.update(
        {
            "out/loss": np.float32(loss),
            "out/grad_norm": np.float32(grad_norm),
            "out/lr": np.float32(schedule(a.step - 1)),
            "schedule/steps": np.array(SCHEDULE_STEPS, np.int64),
            "schedule/lr": np.array([float(schedule(s)) for s in SCHEDULE_STEPS], np.float64),
            "meta/step": np.int64(a.step),
            "meta/learning_rate": np.float64(config.learning_rate),
            "meta/warmup_steps": np.int64(config.warmup_steps),
            "meta/num_train_steps": np.int64(config.num_train_steps),
            "meta/max_grad_norm": np.float64(config.max_grad_norm),
            "meta/tiny_overrides": np.array(json.dumps(TINY)),
            "meta/versions": np.array(f"jax {jax.__version__}, flax {flax.__version__}, optax {optax.__version__}"),
            "meta/source_commit": np.array(ob.source_commit(a.src) or "unknown"),
        }
    )
    np.savez_compressed(a.out, **arrays)
    n = sum(v.size for k, v in arrays.items() if k.startswith("params/"))
    lr = float(schedule(a.step - 1))
    print(f"wrote {a.out}: {n} parameters, loss {loss:.4f}, grad norm {grad_norm:.4f}, lr {lr:.3g}")


if __name__ == "__main__":
    main()
