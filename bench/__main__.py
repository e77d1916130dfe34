"""``make bench``: the API against every anchor, on this machine, in one run.

Sections (bench/README.md says what each measure and anchor means):

- policy: the ACL per request vs one HMAC-SHA256 of a token (pure Python, bench/policy.py);
- keys: create, read and 8-client read throughput through the local host vs OpenBao transit
  and vs the engine's storage floors; the same engine in process (no HTTP); the token and
  policy check's cost (bench/keys.py);
- versions: read cost at 1, 10, 100 and 1,000 versions (bench/versions.py);
- cold: ``import function_app`` vs ``import azure.functions``, the first request after import
  (bench/coldstart.py);
- audit: a read with a file, log or blob audit device vs none (bench/audit.py);
- distribution: into the Key Vault emulator vs its own import round trip (bench/distribution.py);
- concurrency: CPU per request and throughput at 1-16 clients through the local host
  (bench/concurrency.py); about five minutes, so only with ``--only concurrency``.

Each run is added to bench/results.json (``--results``) under ``--label`` and bench/RESULTS.md
is regenerated from it; ``--quick`` runs fewer samples and records nothing unless labelled.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench import results
from bench.common import Recorder

SECTIONS = ("policy", "keys", "versions", "cold", "audit", "distribution", "concurrency")
# Run only when named in --only: minutes long, and not a ratio to an anchor.
DEFAULT = tuple(s for s in SECTIONS if s != "concurrency")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer samples (about a minute)")
    parser.add_argument("--label", help="the run's column in RESULTS.md (default: commit, date)")
    parser.add_argument(
        "--results",
        type=Path,
        default=results.RESULTS_JSON,
        help="the results file to add the run to (RESULTS.md is written beside it)",
    )
    parser.add_argument("--no-record", action="store_true", help="print only; record nothing")
    parser.add_argument("--render", action="store_true", help="only regenerate RESULTS.md")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        default=list(DEFAULT),
        help=f"sections to run (default: {' '.join(DEFAULT)}; concurrency only when named)",
    )
    # RSA key generation takes from a few to well over a hundred milliseconds (a random prime
    # search), on every side of the create ratios: their medians need many samples to settle.
    parser.add_argument("--creates", type=int, help="create samples per side (80; quick 8)")
    parser.add_argument("--reads", type=int, help="read samples per side (200; quick 40)")
    parser.add_argument(
        "--fresh-versions",
        action="store_true",
        help="generate fresh material for every version (slow setup)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.render:
        results.save(args.results, results.load(args.results))
        print(f"wrote {results.markdown_path(args.results)}")
        return 0
    quick = args.quick
    creates = args.creates or (8 if quick else 80)
    reads = args.reads or (40 if quick else 200)
    rec = Recorder()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M")
    only = set(args.only)

    failed: list[str] = []
    took: dict[str, float] = {}

    def section(name: str, run: Callable[[], object]) -> None:
        """Run one section; a failure is reported and noted, and the others still run."""
        if name not in only:
            return
        begun = time.perf_counter()
        try:
            run()
        except Exception as exc:
            traceback.print_exc()
            failed.append(name)
            rec.note(f"{name}: FAILED ({type(exc).__name__}: {str(exc)[:200]})")
        took[name] = time.perf_counter() - begun
        print(f"  ({name}: {took[name]:.0f} s)", flush=True)

    def policy_section() -> None:
        from bench import policy

        policy.bench_policy(10 if quick else 50, rec)

    section("policy", policy_section)
    if only & {"keys", "versions", "cold"}:
        from bench.stack import Stack

        stack = Stack()
        try:

            def keys_section() -> None:
                from bench.keys import bench_keys

                bench_keys(
                    stack,
                    rec,
                    creates=creates,
                    reads=reads,
                    rounds=2 if quick else 5,
                    clients=8,
                    seconds=1.0 if quick else 2.0,
                )

            def versions_section() -> None:
                from bench.versions import bench_versions

                bench_versions(
                    stack,
                    rec,
                    sizes=(1, 10, 100) if quick else (1, 10, 100, 1000),
                    reads=8 if quick else 20,
                    fresh=args.fresh_versions,
                )

            def cold_section() -> None:
                from bench.coldstart import bench_coldstart

                bench_coldstart(stack, rec, imports=3 if quick else 10, firsts=2 if quick else 3)

            section("keys", keys_section)
            section("versions", versions_section)
            section("cold", cold_section)
        finally:
            stack.stop()

    def audit_section() -> None:
        from bench.audit import bench_audit

        bench_audit(40 if quick else 200, rec)

    def distribution_section() -> None:
        try:
            from bench.distribution import bench_distribution
        except ImportError as exc:  # the Key Vault SDK is a dev dependency
            rec.note(f"distribution: skipped ({exc})")
        else:
            bench_distribution(3 if quick else 5, 3 if quick else 10, rec)

    def concurrency_section() -> None:
        from bench.concurrency import bench_concurrency

        try:
            import tools.kvemu  # noqa: F401  (the emulator needs the dev dependencies)
        except ImportError as exc:
            rec.note(f"concurrency: without distribution ({exc})")
            with_distribution = False
        else:
            with_distribution = True
        bench_concurrency(rec, 60 if quick else 240, 1 if quick else 3, with_distribution)

    section("audit", audit_section)
    section("distribution", distribution_section)
    section("concurrency", concurrency_section)

    elapsed = time.perf_counter() - started
    targeted = [m for m in rec.measures if m.target]
    if targeted:
        print("targets:")
        for m in targeted:
            print(f"  {m.label:<60} {m.target:>7}   {m.cell()}")
    print(f"bench: {elapsed:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    if args.no_record or (quick and not args.label):
        return 1 if failed else 0
    from tools.openbao import BAO

    commit = results.commit()
    notes = list(rec.notes)
    if quick:
        notes.append("quick run (fewer samples)")
    if only != set(DEFAULT):
        notes.append(f"sections: {', '.join(s for s in SECTIONS if s in only)}")
    sections = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in took.items())
    notes.append(
        f"whole run {elapsed:.0f} s ({sections}); load average (1 min) {load_before:.1f} at "
        f"the start, {os.getloadavg()[0]:.1f} at the end"
    )
    run = results.Run(
        label=args.label or f"{commit} {date}",
        date=date,
        commit=commit,
        machine=results.machine(BAO),
        notes=notes,
        measures=rec.measures,
    )
    runs = results.merge(results.load(args.results), run)
    results.save(args.results, runs)
    print(f"recorded run {run.label!r} in {args.results} and {results.markdown_path(args.results)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
