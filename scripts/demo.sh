#!/usr/bin/env bash
# `make demo`: the tracker node, the demo camera and detector as separate processes over DDS.
# Arguments go to `python -m savi_ros.demo.run_demo` (e.g. --scenes 5 --rate 5 --checkpoint PATH;
# --help lists them). Runs `make setup` first when the virtual environment is not ready.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="$root/.venv/bin/python"
if ! "$python" -c "import rclpy, vision_msgs.msg, savi_core, savi_ros" >/dev/null 2>&1; then
    echo "demo: the virtual environment is not ready; running make setup"
    make -C "$root" setup
fi
out="demo_out"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case "${args[i]}" in
        --out) out="${args[i + 1]:-$out}" ;;
        --out=*) out="${args[i]#--out=}" ;;
        -h | --help) exec "$python" -m savi_ros.demo.run_demo --help ;;
    esac
done
"$python" -m savi_ros.demo.run_demo "$@"
echo "demo outputs: $out/overlay.mp4, $out/contact_sheet.png, $out/metrics.json (process logs in $out/logs/)"
