from collections.abc import Iterator, Mapping

from _leakcheck import assert_no_leak, raises

from fastapi_cachemate import _native

spec = _native.KeySpec("api", "/items/{id}", ["q", "page"], ["Accept-Language"], ["sid"])
spec_all = _native.KeySpec("api", "/items/{id}", None)
query = [("q", "a"), ("page", "2"), ("q", "b"), ("other", "x")]
headers = [(b"host", b"x"), (b"accept-language", b"en"), (b"user-agent", b"curl")]
cookies = {"sid": "s1"}
surrogate = "/\ud800\udc80"
big_query = [(f"k{i}", "v" * 50) for i in range(100)]  # past the stack buffer


class Failing(Mapping[str, str]):
    def __getitem__(self, key: str) -> str:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


failing = Failing()


def build() -> None:
    _native.build_key(spec, "GET", "/items/1", query, headers, cookies)
    _native.build_key(spec_all, "GET", "/items/1", query, headers)


def material() -> None:
    _native.key_material(spec, "GET", surrogate, query, headers, cookies)


def heap_buffer() -> None:
    _native.build_key(spec_all, "GET", surrogate * 500, big_query, headers)


def new_spec() -> None:
    _native.KeySpec("api", "/r", ["a", "b"], ["X-A", "x-\udc80"], ["c"])


def bad_prefix() -> None:
    _native.KeySpec("a{b}", "/r", None)


def bad_names() -> None:
    _native.KeySpec("a", "/r", ["a", 1])


def bad_query() -> None:
    _native.build_key(spec, "GET", "/", [("q", 1)], headers)


def bad_header() -> None:
    _native.build_key(spec, "GET", "/", query, [(b"accept-language", "en")])


def failing_cookies() -> None:
    _native.build_key(spec, "GET", "/", query, headers, failing)


def spec_by_keyword() -> None:
    _native.KeySpec(prefix="p", route="/r", query_names=None, cookie_names=["c"])


def spec_bad_keyword() -> None:
    _native.KeySpec("p", "/r", None, prefix="q")


assert_no_leak(build)
assert_no_leak(spec_by_keyword)
assert_no_leak(raises(spec_bad_keyword, TypeError))
assert_no_leak(material)
assert_no_leak(heap_buffer, calls=2000)
assert_no_leak(new_spec)
assert_no_leak(raises(bad_prefix, ValueError))
assert_no_leak(raises(bad_names, TypeError))
assert_no_leak(raises(bad_query, TypeError))
assert_no_leak(raises(bad_header, TypeError))
assert_no_leak(raises(failing_cookies, RuntimeError))
