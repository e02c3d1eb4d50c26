"""Agent messages against the bare primitives they are made of, in the same run.

Usage: ``python benchmarks/bench_agents.py [--messages N] [--runs R] [--sizes 256,65536]
[--algorithm ML-DSA-65] [--json]``.

Per body size, messages per second for:

- ``send``: :meth:`qrc.transit.agents.Agent.send` (encode, sign, HPKE seal to an
  ``X25519MLKEM768`` key);
- ``receive``: :meth:`~qrc.transit.agents.Agent.receive` (parse, HPKE open, look up the
  sender, verify, window and replay checks) of as many distinct messages;
- ``bare_send`` / ``bare_receive``: one signature over the body plus one HPKE seal of it
  (and one open plus one verify), the same key types and suite, nothing else.

Figures are medians over the runs; ratios are agent / bare (1.0: the format and checks cost
nothing measurable next to the cryptography).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from qrc.crypto import get_kem, get_signature
from qrc.crypto.hpke_suite import Suite, hpke_decrypt, hpke_seal
from qrc.transit.agents import Agent, AgentIdentity, Directory

SUITE = Suite(0x647A, 0x0001, 0x0002)


def _rate(count: int, action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return count / (time.perf_counter() - start)


def _one_run(algorithm: str, size: int, count: int) -> dict[str, float]:
    directory = Directory()
    agents = {}
    for name in ("alice", "bob"):
        sig, kem = get_signature(algorithm).generate(), get_kem("X25519MLKEM768").generate()
        directory.add(AgentIdentity(name, sig.public_key(), kem.public_key()))
        agents[name] = (Agent(name, sig, kem, directory), sig, kem)
    alice, alice_sig, _ = agents["alice"]
    bob, _, bob_kem = agents["bob"]
    body = b"m" * size
    wires: list[bytes] = []

    def send() -> None:
        for _ in range(count):
            wires.append(alice.send("bob", body))

    def receive() -> None:
        for wire in wires:
            bob.receive(wire)

    bob_public, alice_public = bob_kem.public_key(), alice_sig.public_key()
    sealed: list[tuple[bytes, bytes]] = []

    def bare_send() -> None:
        for _ in range(count):
            signature = alice_sig.sign(body, b"ctx")
            sealed.append((hpke_seal(SUITE, bob_public, body, b"info"), signature))

    def bare_receive() -> None:
        for ciphertext, signature in sealed:
            alice_public.verify(
                signature, hpke_decrypt(SUITE, bob_kem, ciphertext, b"info"), b"ctx"
            )

    return {
        "send": _rate(count, send),
        "bare_send": _rate(count, bare_send),
        "receive": _rate(count, receive),
        "bare_receive": _rate(count, bare_receive),
        "wire_overhead_bytes": len(wires[0]) - size,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", default="256,65536")
    parser.add_argument("--algorithm", default="ML-DSA-65")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"algorithm": args.algorithm, "runs": args.runs, "sizes": {}}
    for size in (int(s) for s in args.sizes.split(",")):
        runs = [_one_run(args.algorithm, size, args.messages) for _ in range(args.runs)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        med["send_ratio"] = statistics.median(r["send"] / r["bare_send"] for r in runs)
        med["receive_ratio"] = statistics.median(r["receive"] / r["bare_receive"] for r in runs)
        results["sizes"][str(size)] = med
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"agent messages ({args.algorithm} + X25519MLKEM768 HPKE), median of {args.runs} runs")
    for size, m in results["sizes"].items():
        print(
            f"  {int(size):>7} B  send {m['send']:7.0f}/s (bare {m['bare_send']:7.0f}/s, "
            f"ratio {m['send_ratio']:.2f})  receive {m['receive']:7.0f}/s "
            f"(bare {m['bare_receive']:7.0f}/s, ratio {m['receive_ratio']:.2f})  "
            f"overhead {m['wire_overhead_bytes']:.0f} B"
        )


if __name__ == "__main__":
    main()
