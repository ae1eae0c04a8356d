"""The command-line tool: ``python -m fastapi_cachemate`` or ``fastapi-cachemate``.

Subcommands (``fastapi-cachemate COMMAND --help`` for each)::

    stats    counters of a running app (--metrics-url) or what is stored in Redis (--url)
    inspect  decode one stored entry: status, headers, age, ttl, grace, state, tags, sizes
    purge    remove the entries of a namespace (prefix) or of tags
    bench    run the benchmarks (python -m benchmarks, from a source checkout)

Exit codes: 0 success, 1 failure (unreachable server, no such entry, unreadable entry),
2 usage error (argparse's convention). ``--url`` defaults to ``$CACHEMATE_REDIS_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from typing import Any, TextIO

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, ResponseError

from fastapi_cachemate import __version__
from fastapi_cachemate._kernels import kernels
from fastapi_cachemate.core import layout
from fastapi_cachemate.core.backends.redis import SCAN_COUNT, RedisBackend
from fastapi_cachemate.core.layout import DEFAULT_PREFIX, KeyKind

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
URL_ENV = "CACHEMATE_REDIS_URL"
STATES = {kernels.FRESH: "fresh", kernels.STALE: "stale", kernels.EXPIRED: "expired"}


class CliError(Exception):
    """A failure reported as one line on stderr, exit code 1."""


# --- Redis helpers ---------------------------------------------------------------------------


def _client(url: str, cluster: bool) -> Any:
    if cluster:
        return RedisCluster.from_url(url)
    return aioredis.Redis.from_url(url)


async def _scan(client: Any, pattern: bytes) -> AsyncIterator[bytes]:
    async for key in client.scan_iter(match=pattern, count=SCAN_COUNT):
        yield key if isinstance(key, bytes) else str(key).encode()


def _wrong_type(reply: Any, instead: Any) -> Any:
    """A reply, or instead for a key that holds another Redis type (WRONGTYPE: junk in a
    key of the cache's, read as unreadable); any other error is raised."""
    if isinstance(reply, ResponseError) and str(reply).startswith("WRONGTYPE"):
        return instead
    if isinstance(reply, Exception):
        raise reply
    return reply


async def _each(
    client: Any, command: str, keys: list[bytes], cluster: bool, instead: Any
) -> list[Any]:
    """command (GET, STRLEN) of each key: one pipeline on Redis, one call per key on a
    cluster (any slot); a key of another type answers instead."""
    if cluster:
        replies = []
        for k in keys:
            try:
                replies.append(await client.execute_command(command, k))
            except ResponseError as exc:
                replies.append(_wrong_type(exc, instead))
        return replies
    pipe = client.pipeline(transaction=False)
    for k in keys:
        pipe.execute_command(command, k)
    return [_wrong_type(reply, instead) for reply in await pipe.execute(raise_on_error=False)]


async def _get_many(client: Any, keys: list[bytes], cluster: bool) -> list[bytes | None]:
    """GET of each key; a key of another type reads as b"" (unreadable)."""
    return await _each(client, "GET", keys, cluster, b"")


async def _unlink_many(client: Any, keys: list[bytes], cluster: bool) -> None:
    if cluster:
        for k in keys:  # one key per UNLINK: keys of several slots
            await client.unlink(k)
    else:
        await client.unlink(*keys)


async def _batches(
    client: Any, pattern: bytes, size: int = SCAN_COUNT
) -> AsyncIterator[list[bytes]]:
    batch: list[bytes] = []
    async for key in _scan(client, pattern):
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _print_json(obj: object, out: TextIO) -> None:
    json.dump(obj, out, indent=2, sort_keys=True)
    out.write("\n")


# --- stats -----------------------------------------------------------------------------------


def _stats_from_metrics(url: str, timeout: float) -> dict[str, Any]:
    try:
        from fastapi_cachemate.prometheus import counters_from_exposition, near_from_exposition
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(f"cannot read {url}: {exc}") from exc
    try:
        endpoints, breaker = counters_from_exposition(text)
    except ValueError as exc:
        raise CliError(f"{url} is not a Prometheus text exposition: {exc}") from exc
    if not endpoints and breaker is None:
        raise CliError(f"{url} has no fastapi_cachemate metrics (is it the metrics route?)")
    totals: dict[str, int] = {}
    for counts in endpoints.values():
        for name, value in counts.items():
            totals[name] = totals.get(name, 0) + value
    near = near_from_exposition(text)
    return {
        "source": url,
        "endpoints": endpoints,
        "totals": totals,
        "breaker": breaker,
        "near": near,
    }


def _ratio(counts: dict[str, int]) -> str:
    served = counts.get("hits", 0) + counts.get("stale_served", 0)
    looked = served + counts.get("misses", 0)
    return "-" if looked == 0 else f"{100.0 * served / looked:.1f}%"


_STAT_COLUMNS = (
    ("hits", "hits"),
    ("misses", "misses"),
    ("stale", "stale_served"),
    ("bypass", "bypass"),
    ("no_cache", "no_cache"),
    ("stored", "stored"),
    ("not_stored", "not_stored"),
    ("errors", "backend_errors"),
)


def _print_counters(result: dict[str, Any], out: TextIO) -> None:
    rows = [("endpoint", *(title for title, _ in _STAT_COLUMNS), "hit ratio")]
    items = sorted(result["endpoints"].items())
    for name, counts in [*items, ("TOTAL", result["totals"])]:
        rows.append((name, *(str(counts.get(c, 0)) for _, c in _STAT_COLUMNS), _ratio(counts)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.write("  ".join(cells).rstrip() + "\n")
    totals = result["totals"]
    raw = totals.get("bytes_before_compression", 0)
    stored = totals.get("bytes_after_compression", 0)
    if raw:
        out.write(
            f"bytes stored: {_fmt_bytes(raw)} raw -> {_fmt_bytes(stored)} "
            f"({100.0 * stored / raw:.1f}%)\n"
        )
    if result.get("breaker") is not None:
        out.write(f"breaker: {result['breaker']}\n")
    near = result.get("near")
    if near and any(near.values()):
        listed = ", ".join(f"{name.removeprefix('near_')} {near[name]}" for name in near)
        out.write(f"near cache: {listed}\n")


async def _stats_from_redis(url: str, prefix: str, cluster: bool, decode: bool) -> dict[str, Any]:
    client = _client(url, cluster)
    namespace = prefix.encode()
    out: dict[str, Any] = {
        "source": url,
        "prefix": prefix,
        "entries": 0,
        "entry_bytes": 0,
        "locks": 0,
        "generations": 0,
        "other_keys": 0,
    }
    if decode:
        out.update(fresh=0, stale=0, expired=0, unreadable=0, body_bytes=0, tags={})
    try:
        async for batch in _batches(client, layout.namespace_pattern(namespace)):
            entries: list[bytes] = []
            for k in batch:
                kind = layout.classify(namespace, k)
                if kind is KeyKind.ENTRY:
                    entries.append(k)
                elif kind is KeyKind.LOCK:
                    out["locks"] += 1
                elif kind is KeyKind.GENERATION:
                    out["generations"] += 1
                else:
                    out["other_keys"] += 1
            if not entries:
                continue
            if decode:
                values = await _get_many(client, entries, cluster)
                now = time.time()
                for value in values:
                    if value is None:
                        continue
                    out["entries"] += 1
                    out["entry_bytes"] += len(value)
                    entry = kernels.read_entry(value, now)
                    if entry is None:
                        out["unreadable"] += 1
                        continue
                    out[STATES[entry.state]] += 1
                    out["body_bytes"] += len(entry.body)
                    for tag in entry.tags:
                        out["tags"][tag] = out["tags"].get(tag, 0) + 1
            else:
                lengths = await _each(client, "STRLEN", entries, cluster, 0)
                for length in lengths:
                    if length:
                        out["entries"] += 1
                        out["entry_bytes"] += int(length)
    except (RedisError, OSError) as exc:
        raise CliError(f"redis {url}: {exc}") from exc
    finally:
        await client.aclose()
    return out


def _print_redis_stats(result: dict[str, Any], out: TextIO) -> None:
    out.write(f"prefix:      {result['prefix']}\n")
    out.write(f"entries:     {result['entries']}\n")
    out.write(f"entry bytes: {result['entry_bytes']} ({_fmt_bytes(result['entry_bytes'])})\n")
    out.write(f"locks:       {result['locks']}\n")
    out.write(f"generations: {result['generations']}\n")
    if result["other_keys"]:
        out.write(f"other keys:  {result['other_keys']}\n")
    if "fresh" in result:
        out.write(
            f"states:      {result['fresh']} fresh, {result['stale']} stale, "
            f"{result['expired']} expired, {result['unreadable']} unreadable\n"
        )
        out.write(f"body bytes:  {result['body_bytes']} ({_fmt_bytes(result['body_bytes'])})\n")
        for tag, count in sorted(result["tags"].items()):
            out.write(f"tag {tag}: {count}\n")


def cmd_stats(args: argparse.Namespace, out: TextIO) -> int:
    if args.metrics_url is not None:
        result = _stats_from_metrics(args.metrics_url, args.timeout)
        if args.json:
            _print_json(result, out)
        else:
            _print_counters(result, out)
        return EXIT_OK
    url = _require_url(args)
    result = asyncio.run(_stats_from_redis(url, args.prefix, args.cluster, args.decode))
    if args.json:
        _print_json(result, out)
    else:
        _print_redis_stats(result, out)
    return EXIT_OK


# --- inspect ---------------------------------------------------------------------------------


def _decode_header(raw: bytes) -> str:
    return raw.decode("latin-1")


async def _fetch_entry(url: str, key: bytes, cluster: bool) -> tuple[bytes | None, int]:
    client = _client(url, cluster)
    try:
        value = await client.get(key)
        pttl = int(await client.pttl(key))
    except (RedisError, OSError) as exc:
        raise CliError(f"redis {url}: {exc}") from exc
    finally:
        await client.aclose()
    return value, pttl


_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def _bin_header(n: int) -> bytes:
    if n < 1 << 8:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 1 << 16:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


def _stored_body(data: bytes, body: bytes) -> tuple[str, int]:
    """(codec, length of the body as stored) of a valid entry (docs/entry-format.md): its
    last two items are the codec (0 or 1) and the body bin, in their smallest encodings."""
    if data.endswith(b"\x00" + _bin_header(len(body)) + body):
        return "identity", len(body)
    # the frame is most of the entry: from the longest candidate down, found after at most
    # the metadata's length in steps (never a scan of the whole body)
    for n in range(len(data) - 1, len(_ZSTD_MAGIC) - 1, -1):
        tail = b"\x01" + _bin_header(n) + _ZSTD_MAGIC
        start = len(data) - n - len(tail) + len(_ZSTD_MAGIC)
        if start >= 0 and data.startswith(tail, start):
            return "zstd", n
    return "unknown", len(body)  # pragma: no cover - read_entry accepted it


def describe_entry(key: bytes, data: bytes, now: float, pttl: int | None = None) -> dict[str, Any]:
    """What ``inspect`` shows of an entry's bytes (CliError when they are not an entry)."""
    entry = kernels.read_entry(data, now)
    if entry is None:
        raise CliError(
            f"{key.decode('utf-8', 'replace')}: {len(data)} bytes that are not a readable "
            "fastapi-cachemate entry (another format version, foreign or corrupt)"
        )
    codec, stored_body = _stored_body(data, entry.body)
    return {
        "key": key.decode("utf-8", "replace"),
        "status": entry.status,
        "state": STATES[entry.state],
        "created": dt.datetime.fromtimestamp(entry.created, dt.timezone.utc).isoformat(),
        "age": round(entry.age, 3),
        "ttl": entry.ttl,
        "grace": entry.grace,
        "remaining": round(entry.remaining, 3),
        "redis_pttl_ms": pttl,
        "compute_ms": round(entry.compute_ms, 3),
        "etag": entry.etag.decode("latin-1"),
        "tags": list(entry.tags),
        "headers": [[_decode_header(n), _decode_header(v)] for n, v in entry.headers],
        "size_body": len(entry.body),
        "size_body_stored": stored_body,
        "size_stored": len(data),
        "codec": codec,
    }


def _print_entry(info: dict[str, Any], out: TextIO, show_body: bytes | None) -> None:
    for name in (
        "key",
        "status",
        "state",
        "created",
        "age",
        "ttl",
        "grace",
        "remaining",
        "redis_pttl_ms",
        "compute_ms",
        "etag",
    ):
        out.write(f"{name + ':':<15}{info[name]}\n")
    out.write(f"{'tags:':<15}{', '.join(info['tags']) if info['tags'] else '-'}\n")
    out.write(
        f"{'size:':<15}{info['size_body']} bytes body, {info['size_body_stored']} as "
        f"stored ({info['codec']}), {info['size_stored']} bytes entry\n"
    )
    out.write("headers:\n")
    for name, value in info["headers"]:
        out.write(f"  {name}: {value}\n")
    if show_body is not None:
        out.write("body:\n")
        out.write(show_body.decode("utf-8", "replace") + "\n")


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    url = _require_url(args)
    key = args.key.encode("utf-8")
    data, pttl = asyncio.run(_fetch_entry(url, key, args.cluster))
    if data is None:
        raise CliError(f"no entry at {args.key}")
    now = time.time()
    info = describe_entry(key, data, now, pttl if pttl >= 0 else None)
    body = kernels.read_entry(data, now).body if args.body else None  # type: ignore[union-attr]
    if args.json:
        if body is not None:
            info["body"] = body.decode("utf-8", "replace")
        _print_json(info, out)
    else:
        _print_entry(info, out, body)
    return EXIT_OK


# --- purge -----------------------------------------------------------------------------------


async def _purge(
    url: str,
    cluster: bool,
    namespace: str | None,
    tags: Sequence[str],
    prefix: str,
    dry: bool,
    scan: bool,
) -> tuple[int, str]:
    """(entries removed or found, how)."""
    backend = RedisBackend.from_url(url, cluster=cluster)
    client = backend.client
    try:
        api = not dry and not scan
        if api and namespace is not None and hasattr(backend, "invalidate_namespace"):
            removed = int(await backend.invalidate_namespace(namespace))
            return removed, "invalidation API (generations bumped)"
        if api and tags and hasattr(backend, "invalidate_tags"):
            removed = int(await backend.invalidate_tags(prefix, *tags))
            return removed, "invalidation API (generations bumped)"
        scanned = (namespace if namespace is not None else prefix).encode()
        wanted = set(tags)
        count = 0
        async for batch in _batches(client, layout.namespace_pattern(scanned)):
            kinds = [(k, layout.classify(scanned, k)) for k in batch]
            if namespace is not None:
                # entries, their locks and generations; nothing else under the prefix
                victims = [k for k, kind in kinds if kind is not None]
                count += sum(1 for _, kind in kinds if kind is KeyKind.ENTRY)
            else:
                entries = [k for k, kind in kinds if kind is KeyKind.ENTRY]
                values = await _get_many(client, entries, cluster)
                now = time.time()
                victims = []
                for k, value in zip(entries, values, strict=True):
                    entry = None if value is None else kernels.read_entry(value, now)
                    if entry is not None and wanted.intersection(entry.tags):
                        victims.append(k)
                count += len(victims)
            if victims and not dry:
                await _unlink_many(client, victims, cluster)
        how = "dry run: nothing removed" if dry else "SCAN + UNLINK in batches"
        return count, how
    except ResponseError as exc:
        hint = " (a key of the cache holds another type: --scan removes by SCAN + UNLINK)"
        raise CliError(f"redis {url}: {exc}{hint if api else ''}") from exc
    except (RedisError, OSError) as exc:
        raise CliError(f"redis {url}: {exc}") from exc
    finally:
        await backend.close()


def cmd_purge(args: argparse.Namespace, out: TextIO) -> int:
    url = _require_url(args)
    if args.namespace is not None:
        try:
            layout.check_prefix(args.namespace, "--namespace")
        except ValueError as exc:
            raise CliError(str(exc)) from None
    count, how = asyncio.run(
        _purge(
            url, args.cluster, args.namespace, args.tag or (), args.prefix, args.dry_run, args.scan
        )
    )
    what = f"namespace {args.namespace}" if args.namespace else "tag(s) " + ", ".join(args.tag)
    verb = "would remove" if args.dry_run else "removed"
    if args.json:
        _print_json({"target": what, "entries": count, "dry_run": args.dry_run, "how": how}, out)
    else:
        out.write(f"{verb} {count} entr{'y' if count == 1 else 'ies'} of {what} ({how})\n")
    return EXIT_OK


# --- bench -----------------------------------------------------------------------------------


def cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    try:
        found = importlib.util.find_spec("benchmarks.__main__") is not None
    except ImportError:  # no benchmarks package at all
        found = False
    if not found:
        raise CliError(
            "no benchmarks package here: run from a source checkout of fastapi-cachemate "
            "(the benchmarks/ folder is not installed with the package)"
        )
    out.flush()
    return subprocess.call([sys.executable, "-m", "benchmarks", *args.args])


# --- the parser ------------------------------------------------------------------------------


def _require_url(args: argparse.Namespace) -> str:
    url: str | None = args.url
    if not url:
        args.parser.error(f"--url is required (or set {URL_ENV})")
    return str(url)


def _add_redis(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get(URL_ENV),
        help=f"Redis URL, e.g. redis://localhost:6379/0 (default: ${URL_ENV})",
    )
    p.add_argument("--cluster", action="store_true", help="the URL is a Redis Cluster node")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastapi-cachemate",
        description="Look into and operate a fastapi-cachemate cache.",
        epilog="Exit codes: 0 success, 1 failure, 2 usage error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "stats",
        help="counters of a running app, or what is stored in Redis",
        description=(
            "With --metrics-url: the counters of a running app, read from its metrics route "
            "(fastapi_cachemate.prometheus.metrics_route), per endpoint and in total, with "
            "the hit ratio. With --url: what is stored in Redis under --prefix (SCAN): "
            "entries, bytes, locks; --decode also reads every entry (states, body bytes, "
            "tags)."
        ),
    )
    _add_redis(p)
    p.add_argument("--metrics-url", help="URL of the app's metrics route")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="the key prefix (namespace)")
    p.add_argument("--decode", action="store_true", help="GET and decode every entry")
    p.set_defaults(func=cmd_stats, parser=p)

    p = sub.add_parser(
        "inspect",
        help="decode one stored entry",
        description=(
            "Fetch KEY from Redis and decode it: status, headers, created, age, ttl, grace, "
            "remaining, state (fresh/stale/expired), tags, ETag, sizes (body and stored), "
            "codec. Exit 1 when there is no such key or it is not a readable entry."
        ),
    )
    p.add_argument("key", metavar="KEY", help="the entry's key, e.g. 'fastapi_cachemate:{<hex>}'")
    _add_redis(p)
    p.add_argument("--body", action="store_true", help="print the body too (as UTF-8)")
    p.set_defaults(func=cmd_inspect, parser=p)

    p = sub.add_parser(
        "purge",
        help="remove the entries of a namespace or of tags",
        description=(
            "Remove every entry of a namespace (key prefix), or every entry stored with one "
            "of the given tags. Uses the backend's invalidation API when this version has "
            "one, else SCAN + UNLINK in batches (tags: each entry under --prefix is decoded)."
        ),
    )
    _add_redis(p)
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--namespace", help="the key prefix whose entries go")
    target.add_argument("--tag", action="append", help="a tag (repeat for several)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help="the key prefix the tags are under")
    p.add_argument("--dry-run", action="store_true", help="count, remove nothing")
    p.add_argument(
        "--scan",
        action="store_true",
        help="SCAN + UNLINK (tags: decode every entry) even when the backend has an "
        "invalidation API (which bumps generations and uses the tag sets)",
    )
    p.set_defaults(func=cmd_purge, parser=p)

    p = sub.add_parser(
        "bench",
        help="run the benchmarks (python -m benchmarks)",
        description="Run python -m benchmarks from a source checkout; ARGS are passed on.",
    )
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    p.set_defaults(func=cmd_bench, parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command != "bench":
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.args = [*extra, *args.args]
    if args.command == "stats" and args.metrics_url is None and not args.url:
        args.parser.error(f"give --metrics-url or --url (or set {URL_ENV})")
    try:
        code: int = args.func(args, sys.stdout)
    except CliError as exc:
        print(f"fastapi-cachemate {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
