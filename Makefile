# Entry points: `make demo`, `make test`. Everything runs from .venv; no activation needed.
PYTHON ?= python3
PYTEST_ARGS ?=

.PHONY: setup test demo clean ros-env train-default

## setup: create .venv (torch, ROS 2 wheels, deps, the project) and build vision_msgs; quick when re-run
setup:
	@$(PYTHON) scripts/setup_venv.py

## test: setup, then the whole test suite (no tests collected counts as a failure)
test: ROS_ENV_ARGS = --if-available
test: setup ros-env
	@scripts/run_tests.sh $(PYTEST_ARGS)

## ros-env: `ros2 launch`, `ros2 run` and colcon: a ROS 2 install if there is one, else added to .venv
## from ../shared/ros2_launch/ (nothing copied into the repo); seconds when re-run. `make test` runs it
## with --if-available: where neither exists it only says so and the launch test is skipped.
ros-env: setup
	@$(PYTHON) scripts/ros_env.py $(ROS_ENV_ARGS)

## train-default: rebuild the shipped default model (v9): fit the feature metric, then the prototype model, on training videos (about 30 min on 2 cores), score the held-out families, export
train-default: setup
	@scripts/train_default.sh

## demo: the end-to-end demo
demo: setup
	@scripts/demo.sh

## clean: remove build outputs and caches (keeps .venv; `rm -rf .venv` for a from-scratch setup)
clean:
	rm -rf build install log .pytest_cache *.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
