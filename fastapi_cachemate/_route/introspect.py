"""What an endpoint can read from a request, from FastAPI's own dependant tree.

Run once per route (and once per endpoint at decoration time, by ``check_endpoint``), never
per request. The walk follows ``route.dependant`` and every nested ``dependant.dependencies``
entry, so that it sees exactly what FastAPI will hand to the endpoint and its dependencies:

- query parameters by the names FastAPI looks up in the URL (aliases, AliasChoices,
  validate-by-name), including the fields of query-parameter models and the ``__init__``
  parameters of classes and dataclasses used as ``Depends()`` filters;
- whether FastAPI reads one value of a query parameter (the last one: ``QueryParams.get``)
  or all of them in order (list parameters: ``getlist``);
- header names as FastAPI reads them (``convert_underscores``), lower-case;
- cookie names;
- the fastapi.security schemes, whose reads are known (Authorization, or an API key's
  header, query parameter or cookie);
- whether something reads the raw ``Request`` / ``WebSocket`` / ``HTTPConnection`` (it can
  then read anything) or the body.

The structures read here are those of FastAPI 0.115 and later (``Dependant``, ``ModelField``);
where a private helper of the installed version is missing, a fallback that names *more* request
keys than FastAPI reads is used (more names only split the cache further, never merge).
"""

from __future__ import annotations

import dataclasses
import inspect
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

import fastapi._compat as _fastapi_compat
from fastapi import params
from fastapi.dependencies import utils as fastapi_dep_utils
from fastapi.dependencies.models import Dependant
from pydantic import AliasChoices, AliasPath, BaseModel, Json
from starlette.requests import HTTPConnection

__all__ = [
    "UNKEYED_REQUEST_ATTR",
    "ReadPlan",
    "check_endpoint",
    "is_subclass",
    "param_model",
    "plan_for_dependant",
]

# Set (to True) on a dependency whose Request parameter reads nothing that can change a
# response (``request.app.state.db``): see ``fastapi_cachemate.request_unkeyed``.
UNKEYED_REQUEST_ATTR = "__cachemate_request_unkeyed__"


# FastAPI >= 0.115 (parameter models); None on older versions, which have no such models.
_model_fields: Callable[[type[BaseModel]], list[Any]] | None = getattr(
    _fastapi_compat, "get_cached_model_fields", None
)
_fastapi_is_sequence: Callable[[Any], bool] | None = getattr(
    _fastapi_compat, "field_annotation_is_sequence", None
)
_get_param_aliases: Callable[..., list[tuple[str, str]]] | None = getattr(
    fastapi_dep_utils, "_get_param_aliases", None
)


def _annotation_is_sequence(annotation: Any) -> bool:
    if _fastapi_is_sequence is not None:
        return bool(_fastapi_is_sequence(annotation))
    origin = get_origin(annotation)  # pragma: no cover - very old FastAPI
    if origin is Union:  # pragma: no cover
        return any(_annotation_is_sequence(a) for a in get_args(annotation))
    return origin in (list, tuple, set, frozenset) or annotation in (
        list,
        tuple,
        set,
    )  # pragma: no cover


@dataclasses.dataclass
class ReadPlan:
    """What one endpoint (with all its dependencies) reads from a request."""

    query_names: set[str] = dataclasses.field(default_factory=set)
    # Names that are read as lists somewhere (all values, in order). A name that is only
    # ever read as a scalar is read by QueryParams.get: the last value.
    list_query_names: set[str] = dataclasses.field(default_factory=set)
    header_names: set[str] = dataclasses.field(default_factory=set)
    cookie_names: set[str] = dataclasses.field(default_factory=set)
    # Why every query item counts (a query model with extra="allow"): empty when none does.
    all_query_reasons: list[str] = dataclasses.field(default_factory=list)
    # Who reads the raw Request/WebSocket/HTTPConnection: empty when nobody does.
    raw_readers: list[str] = dataclasses.field(default_factory=list)
    reads_body: bool = False

    @property
    def scalar_query_names(self) -> frozenset[str]:
        return frozenset(self.query_names - self.list_query_names)


def is_subclass(annotation: object, cls: type) -> bool:
    """issubclass for whatever an annotation holds: False for non-classes, and for generic
    aliases such as ``list[str]``, which Python 3.10 counts as classes but issubclass
    refuses."""
    return (
        isinstance(annotation, type)
        and not isinstance(annotation, types.GenericAlias)
        and issubclass(annotation, cls)
    )


def _describe(call: Any) -> str:
    target = call if inspect.isclass(call) or inspect.isroutine(call) else type(call)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or repr(target)
    return f"{module}.{qualname}"


def _is_json_field(field: Any) -> bool:
    return any(type(item) is Json for item in getattr(field.field_info, "metadata", ()))


def _is_sequence_field(field: Any) -> bool:
    return not _is_json_field(field) and bool(_annotation_is_sequence(field.field_info.annotation))


def _optional_model(annotation: Any) -> Any:
    origin = get_origin(annotation)
    if origin is Union or (origin is not None and getattr(origin, "__name__", "") == "UnionType"):
        args = get_args(annotation)
        if len(args) == 2 and type(None) in args:
            return next(arg for arg in args if arg is not type(None))
    return annotation


def param_model(field: Any) -> type[BaseModel] | None:
    """The Pydantic model FastAPI expands into parameters (mirrors ``_get_param_model``)."""
    annotation = field.field_info.annotation
    if isinstance(field.field_info, (params.Query, params.Header, params.Cookie)):
        annotation = _optional_model(annotation)
    if is_subclass(annotation, BaseModel) and not _is_json_field(field):
        return annotation  # type: ignore[no-any-return]
    return None


def _fallback_aliases(field: Any, convert_underscores: bool) -> list[str]:
    """Older FastAPI (0.115) reads ``field.alias`` (underscores converted in header models);
    validation aliases are added on top: a name too many only splits the cache."""
    names = [field.alias]
    if convert_underscores and field.alias == field.name:
        names.append(field.alias.replace("_", "-"))
    va = field.field_info.validation_alias
    if isinstance(va, str):
        names.append(va)
    elif isinstance(va, AliasChoices):
        names.extend(c for c in va.choices if isinstance(c, str))
    return names


def _request_names(field: Any, *, convert_underscores: bool = False) -> list[str]:
    """The request keys FastAPI may read this field's value from."""
    if _get_param_aliases is None:
        return _fallback_aliases(field, convert_underscores)
    try:
        pairs = _get_param_aliases(field, convert_underscores=convert_underscores)
    except TypeError:  # pragma: no cover - a version without the keyword
        pairs = _get_param_aliases(field)
    names = [request_key for _, request_key in pairs]
    va = field.field_info.validation_alias
    if isinstance(va, AliasPath) or (
        isinstance(va, AliasChoices) and any(isinstance(c, AliasPath) for c in va.choices)
    ):
        # Paths into nested values: FastAPI's reading is not a plain name; take every
        # name that could be meant (more names only split the cache).
        names.extend(_fallback_aliases(field, convert_underscores))
        names.append(field.name)
    return names


def request_aliases(fields: Sequence[Any], *, headers: bool = False) -> dict[str, str]:
    """Python name or alias -> the request key FastAPI reads first, for each field and for
    each field of a parameter model (``Annotated[Model, Query()]``); what ``invalidate`` and
    ``keys_for`` send so that the key is the one a request with those values gets."""
    out: dict[str, str] = {}
    for field in fields:
        model = param_model(field)
        if model is None or _model_fields is None:
            # a plain header's alias is already converted (analyze_param)
            preferred = _request_names(field)[0]
            out[field.name] = out[field.alias] = preferred
            continue
        convert = headers and bool(getattr(field.field_info, "convert_underscores", True))
        for sub in _model_fields(model):
            sub_convert = headers and bool(getattr(sub.field_info, "convert_underscores", convert))
            preferred = _request_names(sub, convert_underscores=sub_convert)[0]
            out.setdefault(sub.name, preferred)
            out.setdefault(sub.alias, preferred)
    return out


def _extra_policy(model: type[BaseModel]) -> str | None:
    extra = model.model_config.get("extra")
    return None if extra is None else str(getattr(extra, "value", extra))


def _add_query_field(field: Any, plan: ReadPlan, where: str) -> None:
    model = param_model(field)
    if model is None:
        names = _request_names(field)
        plan.query_names.update(names)
        if _is_sequence_field(field):
            plan.list_query_names.update(names)
        return
    if _model_fields is None:  # pragma: no cover - no parameter models in this FastAPI
        plan.all_query_reasons.append(f"{where}: query model {model.__qualname__}")
        return
    if _extra_policy(model) == "allow":
        # Every other query item is handed to the model as an extra field.
        plan.all_query_reasons.append(
            f"{where}: query model {model.__qualname__} with extra='allow'"
        )
    for sub in _model_fields(model):
        names = _request_names(sub)
        plan.query_names.update(names)
        if _is_sequence_field(sub):
            plan.list_query_names.update(names)


def _add_header_field(field: Any, plan: ReadPlan, where: str) -> None:
    model = param_model(field)
    if model is None:
        # analyze_param already converted the alias; FastAPI reads it as is.
        plan.header_names.update(n.lower() for n in _request_names(field))
        return
    if _model_fields is None:  # pragma: no cover
        raise ValueError(f"{where}: header models need FastAPI >= 0.115")
    if _extra_policy(model) == "allow":
        raise ValueError(
            f"{where}: header model {model.__qualname__} has extra='allow', so the endpoint"
            " receives every request header; a shared cache cannot key on all of them."
            " Use extra='ignore' (the default) and declare the headers you read."
        )
    default_convert = getattr(field.field_info, "convert_underscores", True)
    for sub in _model_fields(model):
        convert = bool(getattr(sub.field_info, "convert_underscores", default_convert))
        plan.header_names.update(
            n.lower() for n in _request_names(sub, convert_underscores=convert)
        )


def _add_cookie_field(field: Any, plan: ReadPlan, where: str) -> None:
    model = param_model(field)
    if model is None:
        plan.cookie_names.update(_request_names(field))
        return
    if _model_fields is None:  # pragma: no cover
        raise ValueError(f"{where}: cookie models need FastAPI >= 0.115")
    if _extra_policy(model) == "allow":
        raise ValueError(
            f"{where}: cookie model {model.__qualname__} has extra='allow', so the endpoint"
            " receives every cookie; a shared cache cannot key on all of them."
            " Use extra='ignore' (the default) and declare the cookies you read."
        )
    for sub in _model_fields(model):
        plan.cookie_names.update(_request_names(sub))


def _security_reads(call: Any) -> tuple[str, str] | None:
    """(where, name) that a fastapi.security scheme reads, for the stock classes only.

    A subclass may override ``__call__`` and read anything: it counts as a raw reader.
    """
    from fastapi import security as sec

    kind = type(call)
    if kind in (sec.APIKeyQuery, sec.APIKeyHeader, sec.APIKeyCookie):
        name = getattr(getattr(call, "model", None), "name", None)
        if not isinstance(name, str):
            return None
        if kind is sec.APIKeyQuery:
            return ("query", name)
        if kind is sec.APIKeyHeader:
            return ("header", name.lower())
        return ("cookie", name)
    authorization_schemes = (
        sec.HTTPBasic,
        sec.HTTPBearer,
        sec.HTTPDigest,
        sec.OAuth2,
        sec.OAuth2PasswordBearer,
        sec.OAuth2AuthorizationCodeBearer,
        sec.OpenIdConnect,
    )
    http_base = getattr(sec.http, "HTTPBase", None)
    if kind in authorization_schemes or (http_base is not None and kind is http_base):
        return ("header", "authorization")
    return None


def _own_init(cls: type) -> bool:
    for klass in cls.__mro__:
        if klass is object:
            return False
        if "__init__" in vars(klass) or "__new__" in vars(klass) or "__signature__" in vars(klass):
            return True
    return False  # pragma: no cover - every MRO ends in object


def _declared_attributes(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        names.extend(n for n in vars(klass).get("__annotations__", {}) if n not in names)
    return names


def _check_class_dependency(call: Any, where: str) -> None:
    if not inspect.isclass(call):
        return
    if issubclass(call, BaseModel) or dataclasses.is_dataclass(call) or _own_init(call):
        return
    declared = _declared_attributes(call)
    if declared:
        raise TypeError(
            f"{where}: {call.__qualname__} is used as a Depends() filter but has no __init__ of"
            f" its own, so FastAPI passes it no query parameters and its attributes"
            f" {', '.join(declared)} are never read from the request. Make it a dataclass or a"
            " Pydantic model, or give it an __init__ with these parameters."
        )


def plan_for_dependant(
    dependant: Dependant,
    *,
    endpoint_name: str,
    top_level_readers: Sequence[str] | None = None,
    overrides: Mapping[Any, Any] | None = None,
) -> ReadPlan:
    """Walk a dependant tree and collect what it reads.

    top_level_readers: the endpoint's own Request/WebSocket/HTTPConnection parameters, when
    a wrapping decorator changed the signature FastAPI sees (``own_raw_readers``); None to
    take them from the top-level dependant.
    overrides: ``app.dependency_overrides`` as it is now: an overridden dependency is
    walked as FastAPI will solve it (its replacement's parameters), like solve_dependencies.
    """
    plan = ReadPlan()
    stack: list[tuple[Dependant, str, bool]] = [(dependant, endpoint_name, True)]
    while stack:
        dep, where, top = stack.pop()
        if not top and overrides:
            try:
                replacement = overrides.get(dep.call)
            except TypeError:  # an unhashable callable cannot be overridden either
                replacement = None
            if replacement is not None:
                dep = fastapi_dep_utils.get_dependant(
                    path=dep.path or "", call=replacement, name=dep.name
                )
        call = dep.call
        if not top:
            where = f"{where} -> parameter {dep.name!r}" if dep.name else f"{where} -> dependency"
            reads = _security_reads(call)
            if reads is not None:
                kind, name = reads
                if kind == "query":
                    plan.query_names.add(name)
                elif kind == "header":
                    plan.header_names.add(name)
                else:
                    plan.cookie_names.add(name)
                continue
            _check_class_dependency(call, where)
        for field in dep.query_params:
            _add_query_field(field, plan, where)
        for field in dep.header_params:
            _add_header_field(field, plan, where)
        for field in dep.cookie_params:
            _add_cookie_field(field, plan, where)
        if dep.body_params:
            plan.reads_body = True
        if top and top_level_readers is not None:
            readers = list(top_level_readers)
        else:
            readers = [
                reader
                for attr in (
                    "request_param_name",
                    "websocket_param_name",
                    "http_connection_param_name",
                )
                if (reader := getattr(dep, attr, None))
            ]
        if readers and not top and getattr(call, UNKEYED_REQUEST_ATTR, False):
            readers = []  # the dependency says it reads nothing that changes a response
        plan.raw_readers.extend(
            f"{where} (parameter {reader!r}: {_describe(call)})" for reader in readers
        )
        stack.extend((sub, where, False) for sub in reversed(dep.dependencies))
    return plan


def own_raw_readers(
    endpoint: Callable[..., Any], injected: Collection[str] = ()
) -> list[str] | None:
    """The Request/WebSocket/HTTPConnection parameters the endpoint itself declares.

    A wrapping decorator (the cache's own, typically) may add such a parameter for itself:
    the function it wrapped (``__wrapped__``) says what the endpoint reads, and ``injected``
    names parameters to ignore when the wrapper does not set ``__wrapped__``. None when the
    endpoint is not wrapped and nothing is injected: FastAPI's dependant then says it.
    (FastAPI records one request parameter per dependant, so the dependant cannot tell.)
    """
    inner = inspect.unwrap(endpoint)
    if inner is endpoint and not injected:
        return None
    try:
        signature = fastapi_dep_utils.get_typed_signature(inner)
    except (TypeError, ValueError, NameError):  # pragma: no cover - FastAPI fails alike
        return None
    readers: list[str] = []
    for param in signature.parameters.values():
        if param.name in injected or isinstance(param.default, params.Depends):
            continue
        annotation = param.annotation
        if get_origin(annotation) is Annotated:
            annotation, *meta = get_args(annotation)
            if any(isinstance(m, params.Depends) for m in meta):
                continue
        if is_subclass(annotation, HTTPConnection):
            readers.append(param.name)
    return readers


def describe_endpoint(endpoint: Callable[..., Any]) -> str:
    return _describe(inspect.unwrap(endpoint))


def check_endpoint(func: Callable[..., Any], *, path: str = "") -> ReadPlan:
    """Analyse an endpoint as FastAPI will, at decoration time; raise on what cannot be keyed."""
    dependant = fastapi_dep_utils.get_dependant(path=path, call=func)
    return plan_for_dependant(dependant, endpoint_name=describe_endpoint(func))
