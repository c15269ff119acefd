"""OpenTelemetry traces and metrics, following the GenAI semantic conventions; off by default.

**On** when the environment asks for OpenTelemetry (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set, ``OTEL_TRACES_EXPORTER`` naming ``otlp``, or ``ACE_OTEL=1``), with
``ace --otel``, or :func:`enable` from a program; ``ACE_OTEL=0`` or ``OTEL_SDK_DISABLED=true`` keep it off. It is
decided once per process, at the first instrumented call. **Off**, every instrumented call costs one check of a
module global and nothing of OpenTelemetry is imported; on, with ``opentelemetry-sdk`` or the OTLP exporter missing
(``pip install 'ace[otel]'``), it logs one warning and stays off.

Spans (names and attributes as the GenAI conventions give them; ``ace.*`` for what they do not name):

- ``chat {model}``, one per role call (:class:`ace.llm.LLM` ``call``/``acall``, retries and repair attempts
  included): ``gen_ai.operation.name`` ``chat``, ``gen_ai.provider.name``, ``gen_ai.request.model`` and the sampling,
  ``gen_ai.response.model``, ``gen_ai.usage.input_tokens`` / ``output_tokens`` /
  ``cache_read.input_tokens``, ``ace.cost_usd`` (when the model's price is known), ``ace.latency_s``, ``ace.role``,
  ``ace.attempts``; the messages (``gen_ai.system_instructions``, ``gen_ai.input.messages``,
  ``gen_ai.output.messages``) only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``;
- ``update_memory`` per version a store writes (commit, rollback, merge: ``gen_ai.memory.store.id`` the playbook,
  ``gen_ai.memory.record.id`` / ``ace.memory.record.ids`` the bullet ids touched, ``ace.version``);
  ``search_memory`` per read of a version (``gen_ai.memory.record.count`` its bullets, the first ids);
- ``invoke_workflow ace`` per loop run, ``ace.step`` per task of it, ``ace.<node>`` per node of the step
  (generate, evaluate, reflect, curate, refine, guard, commit, record), the calls above inside them;
- ``ace.episode`` per episode a worker takes, the run it makes inside.

Metrics: ``ace.store.commits``, ``ace.collapse.alerts`` (by detector and severity), ``ace.promotions`` (channel
moves), ``ace.episodes`` (by the status a worker left them in), ``ace.queue.depth`` (queued and running episodes of
the queues a worker serves), and the conventions' ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration``.

Export: OTLP over HTTP/protobuf (``OTEL_EXPORTER_OTLP_PROTOCOL=grpc`` for gRPC), configured by the standard
``OTEL_*`` variables (endpoint, headers, ``OTEL_SERVICE_NAME``, default ``ace``); ``OTEL_TRACES_EXPORTER`` /
``OTEL_METRICS_EXPORTER`` may also say ``console`` or ``none``. The providers are ace's own, not installed as the
global ones, unless the program set up an SDK provider globally already: then ace's spans go to it.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

log = logging.getLogger("ace.telemetry")

F = TypeVar("F", bound=Callable[..., Any])

SWITCH = "ACE_OTEL"
CAPTURE = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
MAX_IDS = 64  # bullet ids listed on a span (the count is always there)
_YES = ("1", "true", "on", "yes")
_NO = ("0", "false", "off", "no")

_state: _Telemetry | None = None
_decided = False
_lock = threading.Lock()


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for telemetry (see the module doc)."""
    env = os.environ if env is None else env
    switch = env.get(SWITCH, "").strip().lower()
    if switch in _NO or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")}
    return (
        switch in _YES
        or bool(env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())
        or bool(env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip())
        or "otlp" in exporters
    )


def active() -> bool:
    """Whether telemetry is on in this process (decided at the first call)."""
    if not _decided:
        _decide()
    return _state is not None


def _current() -> _Telemetry | None:
    if not _decided:
        _decide()
    return _state


def _decide() -> None:
    global _decided
    with _lock:
        if not _decided:
            if wanted():
                _start(None, None)
            _decided = True


def enable(*, tracer_provider: Any = None, meter_provider: Any = None) -> bool:
    """Switch telemetry on now (``ace --otel``): with the given providers, else a global SDK one the program set up,
    else ace's own exporting over OTLP as the ``OTEL_*`` variables say. False when OpenTelemetry is not installed."""
    global _decided
    with _lock:
        if _state is None:
            _start(tracer_provider, meter_provider)
        _decided = True
    return _state is not None


def disable() -> None:
    """Switch telemetry off; the providers ace made are flushed and shut down (what they held is exported)."""
    global _state, _decided
    with _lock:
        st, _state, _decided = _state, None, True
    if st is not None:
        st.shutdown()


def flush(timeout_s: float = 10.0) -> None:
    """Export what is buffered now (spans and metrics), for a process about to be killed rather than exit."""
    st = _state
    if st is not None:
        st.flush(timeout_s)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ace")
    except PackageNotFoundError:
        return "0+unknown"


def _start(tracer_provider: Any, meter_provider: Any) -> None:
    global _state
    try:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
    except ImportError as e:
        log.warning(
            "OpenTelemetry was asked for, but it is not installed (%s): pip install 'ace[otel]'; telemetry stays off", e
        )
        return
    owned: list[Any] = []
    try:
        if tracer_provider is None:
            found = trace.get_tracer_provider()
            if isinstance(found, TracerProvider):  # the program set up OpenTelemetry itself: join its pipeline
                tracer_provider = found
            else:
                tracer_provider = _own_tracer_provider()
                owned.append(tracer_provider)
        if meter_provider is None:
            found_meters = metrics.get_meter_provider()
            if isinstance(found_meters, MeterProvider):
                meter_provider = found_meters
            else:
                meter_provider = _own_meter_provider()
                owned.append(meter_provider)
    except ImportError as e:
        log.warning(
            "OpenTelemetry was asked for, but its OTLP exporter is not installed (%s): pip install "
            "'ace[otel]'; telemetry stays off",
            e,
        )
        for p in owned:
            p.shutdown()
        return
    _state = _Telemetry(tracer_provider, meter_provider, owned, _capture())


def _capture() -> bool:
    return os.environ.get(CAPTURE, "").strip().lower() == "true"


def _resource() -> Any:
    from opentelemetry.sdk.resources import Resource

    attrs = {"service.version": _version()}
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "")
    if not named:
        attrs["service.name"] = "ace"
    return Resource.create(attrs)


def _protocol(signal: str) -> str:
    env = os.environ
    return (env.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "").strip()


EXPORT_TIMEOUT_S = 2.0  # an OTLP export's time, retries included, unless OTEL_EXPORTER_OTLP[_SIGNAL]_TIMEOUT says
QUIET_AFTER_FAILURE_S = 60.0  # after a failed export, the next ones are dropped for this long (a dead collector)


def _timeout(signal: str) -> float:
    """The OTLP exporter's timeout in seconds: the ``OTEL_*`` variable's if set (a number), else 2 s (the exporter's
    own default is 10 s, retried with backoff: a collector that is not there would add it to every short command)."""
    env = os.environ
    raw = (env.get(f"OTEL_EXPORTER_OTLP_{signal}_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT") or "").strip()
    try:
        return max(0.1, float(raw)) if raw else EXPORT_TIMEOUT_S
    except ValueError:
        return EXPORT_TIMEOUT_S


class _Bounded:
    """An OTLP exporter that gives up quietly: one warning line when an export fails (the exporter's own retry
    warnings are not shown), and no export tried for a minute after one failed, so that a process with a dead
    collector spends one export's timeout on it, not one per batch and one more at exit."""

    _warned = False

    def __init__(self, inner: Any, signal: str) -> None:
        self._inner, self._signal, self._quiet_until = inner, signal, 0.0

    def __getattr__(self, name: str) -> Any:  # the exporter's other attributes (temporality, aggregation, ...)
        return getattr(self._inner, name)

    def export(self, batch: Any, *args: Any, **kwargs: Any) -> Any:
        import time

        failure = _failure_of(self._inner)
        if time.monotonic() < self._quiet_until:
            return failure
        exporter_log = logging.getLogger("opentelemetry.exporter")
        level, exporter_log.level = exporter_log.level, logging.CRITICAL
        try:
            result = self._inner.export(batch, *args, **kwargs)
        except Exception as e:  # an exporter should not raise; if it does, the program goes on
            result, why = failure, f"{type(e).__name__}: {e}"
        else:
            why = ""
        finally:
            exporter_log.level = level
        if result == failure:
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE_S
            if not _Bounded._warned:
                _Bounded._warned = True
                log.warning(
                    "telemetry could not be sent to the OTLP endpoint (%s%s); what was not sent is dropped, and "
                    "the program goes on",
                    self._signal.lower(),
                    f": {why}" if why else "",
                )
        return result

    def shutdown(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.shutdown(*args, **kwargs)

    def force_flush(self, *args: Any, **kwargs: Any) -> Any:
        return self._inner.force_flush(*args, **kwargs)


def _failure_of(exporter: Any) -> Any:
    try:
        from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

        if isinstance(exporter, SpanExporter):
            return SpanExportResult.FAILURE
    except ImportError:  # pragma: no cover - the SDK is there when an exporter is
        pass
    from opentelemetry.sdk.metrics.export import MetricExportResult

    return MetricExportResult.FAILURE


def _exporter_names(variable: str) -> list[str]:
    return [n.strip().lower() for n in os.environ.get(variable, "otlp").split(",") if n.strip()]


def _own_tracer_provider() -> Any:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=_resource())
    for name in _exporter_names("OTEL_TRACES_EXPORTER"):
        if name == "otlp":
            if _protocol("TRACES") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpans

                exporter: Any = GrpcSpans(timeout=_timeout("TRACES"))
            else:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter(timeout=_timeout("TRACES"))
            provider.add_span_processor(BatchSpanProcessor(cast(Any, _Bounded(exporter, "TRACES"))))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name != "none":
            log.warning("OTEL_TRACES_EXPORTER=%s is not one ace knows (otlp, console, none): ignored", name)
    return provider


def _own_meter_provider() -> Any:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

    readers = []
    for name in _exporter_names("OTEL_METRICS_EXPORTER"):
        if name == "otlp":
            if _protocol("METRICS") == "grpc":
                from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetrics

                exporter: Any = GrpcMetrics(timeout=_timeout("METRICS"))
            else:
                from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

                exporter = OTLPMetricExporter(timeout=_timeout("METRICS"))
            readers.append(PeriodicExportingMetricReader(cast(Any, _Bounded(exporter, "METRICS"))))
        elif name == "console":
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        elif name != "none":
            log.warning("OTEL_METRICS_EXPORTER=%s is not one ace knows (otlp, console, none): ignored", name)
    return MeterProvider(resource=_resource(), metric_readers=readers)


# -- what the instrumented places call --------------------------------------------------------------------------------
@dataclass
class _Step:
    index: int
    span: Any


@dataclass
class _Run:
    span: Any
    step: _Step | None = None


class _Telemetry:
    """The tracer, the meter and the instruments, made once when telemetry is switched on."""

    def __init__(self, tracer_provider: Any, meter_provider: Any, owned: list[Any], capture: bool) -> None:
        from opentelemetry import trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.trace, self.SpanKind, self.Status, self.StatusCode = trace, SpanKind, Status, StatusCode
        self.owned, self.capture = owned, capture
        version = _version()
        self.tracer = tracer_provider.get_tracer("ace", version)
        meter = meter_provider.get_meter("ace", version)
        self.commits = meter.create_counter(
            "ace.store.commits",
            unit="{version}",
            description="Versions written to the store (commits, rollbacks, merges)",
        )
        self.alerts = meter.create_counter(
            "ace.collapse.alerts", unit="{alert}", description="Collapse alerts the loop's guard raised"
        )
        self.promotions = meter.create_counter(
            "ace.promotions", unit="{move}", description="Channel moves (serving promoted, pinned or demoted)"
        )
        self.episodes = meter.create_counter(
            "ace.episodes", unit="{episode}", description="Episodes a worker handled, by the status it left them in"
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens of a role call, input and output"
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of a role call, retries included"
        )
        self.queues: dict[str, Any] = {}  # by the store's URL: the queues workers of this process served
        meter.create_observable_gauge(
            "ace.queue.depth",
            callbacks=[self._queue_depth],
            unit="{episode}",
            description="Episodes waiting (queued) and being learned from (running)",
        )
        self.runs: dict[int, _Run] = {}

    def shutdown(self) -> None:
        for p in self.owned:
            p.shutdown()

    def flush(self, timeout_s: float) -> None:
        for p in self.owned:
            p.force_flush(int(timeout_s * 1000))

    # -- helpers ----------------------------------------------------------------------------------------------------
    def _failed(self, span: Any, e: BaseException) -> None:
        span.set_attribute("error.type", type(e).__name__)

    def _queue_depth(self, options: Any) -> Iterator[Any]:
        from opentelemetry.metrics import Observation

        for url, queue in list(self.queues.items()):
            try:
                counts = queue.counts()
            except Exception as e:  # the database away for a moment: no figure this time
                log.debug("queue depth of %s: %s", url, e)
                continue
            for status in ("queued", "running"):
                yield Observation(counts.get(status, 0), {"ace.queue.status": status})

    # -- role calls ---------------------------------------------------------------------------------------------------
    @contextmanager
    def chat(self, llm: Any, messages: Any, output: Any, role: str, sampling: Any) -> Iterator[Callable[[Any], None]]:
        provider = str(getattr(llm.provider, "name", "unknown"))
        model = getattr(llm.provider, "model", None)
        s = sampling or llm.sampling
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.output.type": "json" if output is not None else "text",
            "gen_ai.request.temperature": float(s.temperature),
            "gen_ai.request.max_tokens": int(s.max_tokens),
            "ace.role": role,
        }
        if model:
            attrs["gen_ai.request.model"] = str(model)
        if s.top_p is not None:
            attrs["gen_ai.request.top_p"] = float(s.top_p)
        if s.seed is not None:
            attrs["gen_ai.request.seed"] = int(s.seed)
        if s.stop:
            attrs["gen_ai.request.stop_sequences"] = list(s.stop)
        if self.capture:
            attrs.update(_messages(messages))
        metric: dict[str, Any] = {
            k: attrs[k] for k in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model") if k in attrs
        }
        started = time.perf_counter()
        name = f"chat {model}" if model else "chat"
        with self.tracer.start_as_current_span(name, kind=self.SpanKind.CLIENT, attributes=attrs) as span:

            def done(result: Any) -> None:
                usage = result.usage
                span.set_attributes(
                    {
                        "gen_ai.response.model": str(result.model),
                        "gen_ai.usage.input_tokens": int(usage.input_tokens),
                        "gen_ai.usage.output_tokens": int(usage.output_tokens),
                        "gen_ai.usage.cache_read.input_tokens": int(usage.cached_tokens),
                        "ace.latency_s": float(result.latency_s),
                        "ace.attempts": int(result.attempts),
                    }
                )
                if result.cost_usd is not None:
                    span.set_attribute("ace.cost_usd", float(result.cost_usd))
                if self.capture:
                    # finish_reason is required by the GenAI conventions (Phoenix drops a reply without one): the
                    # provider's, else "stop" (the reply validated: it ended)
                    finish = result.finish_reason or "stop"
                    out = [{"role": "assistant", "parts": [{"type": "text", "content": result.text}],
                            "finish_reason": finish}]  # fmt: skip
                    span.set_attribute("gen_ai.output.messages", json.dumps(out, ensure_ascii=False))
                with_model = {**metric, "gen_ai.response.model": str(result.model)}
                self.tokens.record(int(usage.input_tokens), {**with_model, "gen_ai.token.type": "input"})
                self.tokens.record(int(usage.output_tokens), {**with_model, "gen_ai.token.type": "output"})

            try:
                yield done
            except BaseException as e:
                self._failed(span, e)
                self.duration.record(time.perf_counter() - started, {**metric, "error.type": type(e).__name__})
                raise
            self.duration.record(time.perf_counter() - started, metric)

    # -- the store ----------------------------------------------------------------------------------------------------
    def memory_span(self, op: str, store: Any, name: str, namespace: str) -> Any:
        sqlite = getattr(getattr(getattr(store, "engine", None), "dialect", None), "name", None)
        attrs = {
            "gen_ai.operation.name": op,
            "gen_ai.memory.store.id": str(name),
            "ace.playbook": str(name),
            "ace.namespace": str(namespace),
        }
        if sqlite:
            attrs["db.system.name"] = "sqlite" if sqlite == "sqlite" else str(sqlite)
        kind = self.SpanKind.INTERNAL if sqlite == "sqlite" else self.SpanKind.CLIENT
        return self.tracer.start_as_current_span(op, kind=kind, attributes=attrs)

    def records(self, span: Any, ids: list[str], count: int | None = None) -> None:
        span.set_attribute("gen_ai.memory.record.count", len(ids) if count is None else count)
        if len(ids) == 1:
            span.set_attribute("gen_ai.memory.record.id", ids[0])
        if ids:
            span.set_attribute("ace.memory.record.ids", ids[:MAX_IDS])

    # -- the loop -----------------------------------------------------------------------------------------------------
    def node(self, fn: Callable[[Any, Any], Any], state: Any, ctx: Any) -> Any:
        trace = self.trace
        name = getattr(fn, "__name__", "node").removesuffix("_node")
        index = int(state.get("index", 0))
        run = self.runs.get(id(ctx))
        parent = None
        if run is not None:
            if run.step is None or run.step.index != index:
                if run.step is not None:  # a step the run left (resumed elsewhere): closed as it is
                    run.step.span.end()
                task = ctx.tasks[index] if index < len(ctx.tasks) else None
                attrs = {"ace.step.index": index, "ace.run.id": str(ctx.run_id)}
                if task is not None:
                    attrs["ace.task.id"] = str(task.id)
                span = self.tracer.start_span("ace.step", context=trace.set_span_in_context(run.span), attributes=attrs)
                run.step = _Step(index, span)
            parent = trace.set_span_in_context(run.step.span)
        guard = getattr(ctx, "guard", None) if name == "guard" else None
        before = len(getattr(guard, "alerts", ()) or ())
        with self.tracer.start_as_current_span(f"ace.{name}", context=parent, attributes={"ace.node": name}):
            update = fn(state, ctx)
        if guard is not None:
            for a in list(getattr(guard, "alerts", ()) or ())[before:]:
                self.alerts.add(
                    1,
                    {
                        "ace.alert.detector": str(getattr(a, "detector", "")),
                        "ace.alert.severity": str(getattr(a, "severity", "")),
                    },
                )
        if name == "record" and run is not None and run.step is not None:
            self._end_step(run.step.span, (update or {}).get("results") or [])
            run.step = None
        return update

    def _end_step(self, span: Any, results: list[Any]) -> None:
        if results:
            r = results[-1]
            attrs: dict[str, Any] = {
                "ace.step.rounds": int(r.rounds),
                "ace.step.committed": bool(r.committed),
                "ace.version": int(r.version),
            }
            if r.correct is not None:
                attrs["ace.step.correct"] = bool(r.correct)
            if r.failure:
                attrs["ace.step.failure"] = str(r.failure)
            span.set_attributes(attrs)
            if r.error:
                span.set_status(self.Status(self.StatusCode.ERROR, str(r.error)[:200]))
        span.end()


def _messages(messages: Any) -> dict[str, str]:
    """The GenAI conventions' message attributes (JSON strings) for what a role call sends."""
    pairs = [("user", messages)] if isinstance(messages, str) else [(m.role, m.content) for m in messages]
    items = [(str(r), str(c)) for r, c in pairs]
    system = [{"type": "text", "content": c} for r, c in items if r == "system"]
    chat = [{"role": r, "parts": [{"type": "text", "content": c}]} for r, c in items if r != "system"]
    found = {"gen_ai.input.messages": json.dumps(chat, ensure_ascii=False)}
    if system:
        found["gen_ai.system_instructions"] = json.dumps(system, ensure_ascii=False)
    return found


# -- decorators for the central places -------------------------------------------------------------------------------
def traced_chat(fn: F) -> F:
    """For :meth:`ace.llm.LLM.call` and ``acall``: a ``chat`` span around the whole call."""

    def parts(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any, str, Any]:
        llm, messages = args[0], args[1] if len(args) > 1 else kwargs.get("messages")
        output = args[2] if len(args) > 2 else kwargs.get("output")
        return llm, messages, output, str(kwargs.get("role", "default")), kwargs.get("sampling")

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def acall(*args: Any, **kwargs: Any) -> Any:
            st = _current()
            if st is None:
                return await fn(*args, **kwargs)
            with st.chat(*parts(args, kwargs)) as done:
                result = await fn(*args, **kwargs)
                done(result)
                return result

        return cast(F, acall)

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        st = _current()
        if st is None:
            return fn(*args, **kwargs)
        with st.chat(*parts(args, kwargs)) as done:
            result = fn(*args, **kwargs)
            done(result)
            return result

    return cast(F, call)


def traced_write(fn: F) -> F:
    """For the store's one write path (``PlaybookStore._append_version``: commits, rollbacks, merges): an
    ``update_memory`` span and the commit counter."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def write(*args: Any, **kwargs: Any) -> Any:
        st = _current()
        if st is None:
            return fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        with st.memory_span("update_memory", a["self"], a["name"], a["namespace"]) as span:
            try:
                info = fn(*args, **kwargs)
            except BaseException as e:
                st._failed(span, e)
                raise
            span.set_attributes(
                {
                    "ace.version": int(info.version),
                    "ace.commit.kind": str(info.kind),
                    "ace.bullets": int(info.n_bullets),
                    "ace.digest": str(info.digest),
                }
            )
            if info.delta is not None:
                st.records(span, list(dict.fromkeys(i for i, _ in info.delta.ids_touched())))
            st.commits.add(
                1,
                {
                    "ace.playbook": str(a["name"]),
                    "ace.namespace": str(a["namespace"]),
                    "ace.commit.kind": str(info.kind),
                },
            )
            return info

    return cast(F, write)


def traced_read(fn: F) -> F:
    """For the store's reads of a version (``load_versioned``, ``load_held``): a ``search_memory`` span."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def read(*args: Any, **kwargs: Any) -> Any:
        st = _current()
        if st is None:
            return fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        with st.memory_span("search_memory", a["self"], a["name"], a["namespace"]) as span:
            if a.get("channel"):
                span.set_attribute("ace.channel", str(a["channel"]))
            try:
                found = fn(*args, **kwargs)
            except BaseException as e:
                st._failed(span, e)
                raise
            if found is None:  # load_held: not held in memory (the caller reads it next, in a span of its own)
                span.set_attributes({"gen_ai.memory.record.count": 0, "ace.held": False})
                return found
            version, pb = found
            span.set_attribute("ace.version", int(version))
            ids: list[str] = []
            for b in pb:
                if len(ids) == MAX_IDS:
                    break
                ids.append(b.id)
            st.records(span, ids, len(pb))
            return found

    return cast(F, read)


def traced_run(fn: F) -> F:
    """For :func:`ace.loop.graph.run`: an ``invoke_workflow ace`` span; the steps and nodes go inside it."""

    @functools.wraps(fn)
    def run(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        st = _current()
        if st is None:
            return fn(ctx, *args, **kwargs)
        attrs = {
            "gen_ai.operation.name": "invoke_workflow",
            "gen_ai.agent.name": "ace",
            "ace.run.id": str(ctx.run_id),
            "ace.playbook": str(ctx.playbook),
            "ace.namespace": str(ctx.namespace),
            "ace.tasks": len(ctx.tasks),
        }
        model = getattr(getattr(ctx.llm, "provider", None), "model", None)
        if model:
            attrs["gen_ai.request.model"] = str(model)
        with st.tracer.start_as_current_span("invoke_workflow ace", attributes=attrs) as span:
            st.runs[id(ctx)] = _Run(span)
            try:
                result = fn(ctx, *args, **kwargs)
            except BaseException as e:
                st._failed(span, e)
                raise
            finally:
                left = st.runs.pop(id(ctx), None)
                if left is not None and left.step is not None:
                    left.step.span.set_status(st.Status(st.StatusCode.ERROR, "the run stopped during this step"))
                    left.step.span.end()
            span.set_attributes(
                {
                    "ace.run.resumed": bool(result.resumed),
                    "ace.run.steps": len(result.results),
                    "ace.run.failed": len(result.failed),
                }
            )
            if result.accuracy is not None:
                span.set_attribute("ace.run.accuracy", float(result.accuracy))
            return result

    return cast(F, run)


def loop_node(fn: Callable[[Any, Any], Any], state: Any, ctx: Any) -> Any:
    """A node of the loop: in an ``ace.<node>`` span inside its step's ``ace.step`` span when telemetry is on."""
    st = _current()
    if st is None:
        return fn(state, ctx)
    return st.node(fn, state, ctx)


def traced_episode(fn: F) -> F:
    """For :meth:`ace.service.worker.Worker._learn`: an ``ace.episode`` span, the episode counter, and the worker's
    queue watched for the queue-depth gauge."""

    @functools.wraps(fn)
    def learn(worker: Any, episode: Any) -> Any:
        st = _current()
        if st is None:
            return fn(worker, episode)
        st.queues.setdefault(str(getattr(worker.queue.store, "url", id(worker.queue))), worker.queue)
        attrs = {
            "ace.episode.id": str(episode.episode_id),
            "ace.playbook": str(episode.playbook),
            "ace.namespace": str(episode.namespace),
            "ace.episode.attempt": int(episode.attempts),
            "ace.worker": str(worker.name),
        }
        with st.tracer.start_as_current_span("ace.episode", attributes=attrs) as span:
            try:
                after = fn(worker, episode)
            except BaseException as e:
                st._failed(span, e)
                raise
            span.set_attribute("ace.episode.status", str(after.status))
            if after.version is not None:
                span.set_attribute("ace.version", int(after.version))
            if after.status != "done":
                span.set_status(st.Status(st.StatusCode.ERROR, str(after.error or after.status)[:200]))
            st.episodes.add(1, {"ace.playbook": str(episode.playbook), "ace.episode.status": str(after.status)})
            return after

    return cast(F, learn)


def promoted(name: str, namespace: str, channel: str, version: int | None) -> None:
    """A channel moved (``serving`` promoted, pinned, demoted or following the head again)."""
    st = _current()
    if st is None:
        return
    st.promotions.add(1, {"ace.playbook": str(name), "ace.namespace": str(namespace), "ace.channel": str(channel)})
    span = st.trace.get_current_span()
    span.add_event("ace.promotion", {"ace.channel": str(channel), "ace.version": -1 if version is None else version})


__all__ = [
    "CAPTURE",
    "SWITCH",
    "active",
    "disable",
    "enable",
    "flush",
    "loop_node",
    "promoted",
    "traced_chat",
    "traced_episode",
    "traced_read",
    "traced_run",
    "traced_write",
    "wanted",
]
