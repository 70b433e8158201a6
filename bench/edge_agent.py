"""Benchmark: how many cameras can one edge box run at 2 fps sampling?

Runs the real agent in-process (capture threads, real YOLOX-Nano pipeline per
camera, outbox, MQTT publisher) on vtest.avi opened N times (looped, read at
its native 10 fps like a live camera). N doubles (1, 2, 4, ...) until a camera
can no longer keep its sampling rate, then bisects between the last N that kept
up and the first that did not, so the answer is the box's limit, not a cap of
the search. A run passes when, over the measurement window,
every camera processed >= 95 % of its 2 fps and no sampling slot was skipped
(skipped slots are how lag shows: the agent never queues frames, it skips).

Publishing goes to the local Mosquitto on 127.0.0.1:1883 when one is there
(otherwise messages simply stay in the outbox). Runtime is bounded (< 5 min).
The last line is ``cameras_at_2fps=N``.

    .venv/bin/python bench/edge_agent.py [--max-cameras 16] [--seconds 15]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FPS = 2.0


def _broker_port() -> int:
    try:
        with socket.create_connection(("127.0.0.1", 1883), timeout=0.5):
            return 1883
    except OSError:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])  # nothing listens: outbox only


def run(
    n: int, video: Path, seconds: float, warmup: float, tmp: Path, tta: str = "off"
) -> dict[str, float]:
    from lobbywatch.edge.agent import EdgeAgent
    from lobbywatch.edge.config import DeviceConfig

    zones = [
        {"id": "W1", "kind": "waiting", "polygon": [[0, 0.3], [1, 0.3], [1, 1], [0, 1]]},
        {"id": "S1", "kind": "self_service", "polygon": [[0, 0], [1, 0], [1, 0.3], [0, 0.3]]},
    ]
    cfg = DeviceConfig.model_validate(
        {
            "device_id": "bench-edge",
            "branch_id": f"bench-{os.getpid()}",
            "cameras": [
                {"id": f"cam{i}", "source": str(video), "loop": True, "fps": FPS, "zones": zones}
                for i in range(n)
            ],
            "mqtt": {"port": _broker_port(), "reconnect_max_s": 2},
            "metrics": {"enabled": False},
            "buffer": {"path": str(tmp / f"outbox-{n}.sqlite")},
            "model": {"tta": tta},
        }
    )
    agent = EdgeAgent(cfg)
    thread = threading.Thread(target=agent.run, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        if not agent.started.wait(60):
            raise RuntimeError("agent did not start")
        time.sleep(warmup)
        workers = [rt.worker for rt in agent.cameras]
        assert all(w is not None for w in workers)
        p0 = [w.processed for w in workers if w]
        d0 = [w.dropped for w in workers if w]
        c0, t0 = os.times(), time.monotonic()
        time.sleep(seconds)
        c1, t1 = os.times(), time.monotonic()
        p1 = [w.processed for w in workers if w]
        d1 = [w.dropped for w in workers if w]
        inference = [
            agent.metrics.value("lobbywatch_edge_inference_seconds_sum", {"camera": rt.cfg.id})
            or 0.0
            for rt in agent.cameras
        ]
        counts = [
            agent.metrics.value("lobbywatch_edge_inference_seconds_count", {"camera": rt.cfg.id})
            or 1.0
            for rt in agent.cameras
        ]
    finally:
        agent.request_stop()
        thread.join(15)
        _clear_retained(cfg)
    wall = t1 - t0
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    fps = [(b - a) / wall for a, b in zip(p0, p1, strict=True)]
    dropped = [b - a for a, b in zip(d0, d1, strict=True)]
    return {
        "min_fps": min(fps),
        "mean_fps": sum(fps) / len(fps),
        "dropped": float(sum(dropped)),
        "cpu_cores": cpu / wall,
        "cpu_pct_of_box": 100.0 * cpu / wall / (os.cpu_count() or 1),
        "step_ms": 1000.0 * sum(inference) / max(sum(counts), 1.0),
    }


def _clear_retained(cfg: object) -> None:
    """Leave the shared local broker as we found it."""
    try:
        import paho.mqtt.client as mqtt

        from lobbywatch.protocol import device_status_topic, status_topic, zone_topic

        c = cfg  # DeviceConfig
        topics = [device_status_topic(c.mqtt.root, c.branch_id, c.device_id)]  # type: ignore[attr-defined]
        for cam in c.cameras:  # type: ignore[attr-defined]
            topics.append(status_topic(c.mqtt.root, c.branch_id, cam.id))  # type: ignore[attr-defined]
            topics += [zone_topic(c.mqtt.root, c.branch_id, cam.id, z.id) for z in cam.zones]  # type: ignore[attr-defined]
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5
        )
        client.connect("127.0.0.1", c.mqtt.port)  # type: ignore[attr-defined]
        client.loop_start()
        for t in topics:
            client.publish(t, b"", qos=1, retain=True).wait_for_publish(2)
        client.disconnect()
        client.loop_stop()
    except Exception:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--max-cameras",
        type=int,
        default=16,
        help="largest N tried (16: the most cameras one device config accepts)",
    )
    parser.add_argument("--seconds", type=float, default=15.0, help="measurement window per N")
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--budget", type=float, default=290.0, help="total seconds")
    parser.add_argument(
        "--tta", default="off", choices=("off", "flip"), help="detector tta on every camera"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    shared = Path(os.environ.get("LOBBYWATCH_SHARED", REPO.parent / "shared"))
    video = shared / "data" / "video" / "vtest.avi"
    if not video.is_file():
        print(f"vtest.avi not found at {video}", file=sys.stderr)
        print("cameras_at_2fps=0")
        return
    try:
        from lobbywatch.edge.detector import DetectorSettings
        from lobbywatch.models.registry import resolve_model

        resolve_model(DetectorSettings().name)  # type: ignore[call-arg]
    except Exception as exc:
        print(f"model not available ({exc}); run `make model`", file=sys.stderr)
        print("cameras_at_2fps=0")
        return
    print(
        f"edge agent benchmark: vtest.avi x N cameras, {FPS:g} fps sampling each, "
        f"{os.cpu_count()} CPU cores, window {args.seconds:g}s"
    )
    print(
        f"{'N':>3} {'min fps':>8} {'mean fps':>9} {'skipped':>8} {'step ms':>8} "
        f"{'CPU cores':>10} {'CPU % box':>10}  verdict"
    )
    best = 0  # largest N that kept up
    worst: int | None = None  # smallest N that fell behind
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        n = 1
        while n <= args.max_cameras:
            if time.monotonic() - start + args.seconds + args.warmup + 10 > args.budget:
                print("(time budget reached: the answer is a lower bound)")
                break
            r = run(n, video, args.seconds, args.warmup, Path(tmp), args.tta)
            ok = r["min_fps"] >= 0.95 * FPS and r["dropped"] == 0
            print(
                f"{n:>3} {r['min_fps']:>8.2f} {r['mean_fps']:>9.2f} {int(r['dropped']):>8} "
                f"{r['step_ms']:>8.1f} {r['cpu_cores']:>10.2f} {r['cpu_pct_of_box']:>9.0f}%  "
                f"{'ok' if ok else 'falls behind'}",
                flush=True,
            )
            if ok:
                best = max(best, n)
            else:
                worst = n if worst is None else min(worst, n)
            if worst is None:
                if n == args.max_cameras:
                    print(
                        f"(every N up to {args.max_cameras} kept up: the search's cap, the "
                        "most cameras one device config accepts, not the box's CPU)"
                    )
                    break
                n = min(2 * n, args.max_cameras)
            elif worst - best <= 1:
                break
            else:
                n = (best + worst) // 2
    print(f"cameras_at_2fps={best}")


if __name__ == "__main__":
    main()
