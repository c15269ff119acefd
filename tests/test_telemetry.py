"""OpenTelemetry (ace.telemetry), end to end: ``ace learn`` and ``ace worker`` in processes of their own export over
OTLP/HTTP to a real receiver on loopback (an HTTP server in this test that decodes the protobuf requests with
opentelemetry-proto), and the spans, their attributes and their parent/child structure are checked; off, nothing is
exported and ace imports nothing of OpenTelemetry. The model is the public scripted provider (``scripted:valid``):
what is tested is what is recorded about the calls, not what the model says."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ace.service.queue import EpisodeQueue
from ace.store import PlaybookStore
from ace.telemetry import wanted

pb2 = pytest.importorskip("opentelemetry.proto.collector.trace.v1.trace_service_pb2")
metrics_pb2 = pytest.importorskip("opentelemetry.proto.collector.metrics.v1.metrics_service_pb2")
pytest.importorskip("opentelemetry.exporter.otlp.proto.http", reason="the otel extra is not installed")

CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ACE_OTEL"))}


# -- a real OTLP/HTTP receiver ----------------------------------------------------------------------------------------
@dataclass
class Span:
    name: str
    span_id: bytes
    parent: bytes
    trace_id: bytes
    attrs: dict[str, Any]
    status: int
    kind: int
    events: list[str]
    service: str


@dataclass
class Receiver:
    url: str
    spans: list[Span] = field(default_factory=list)
    metrics: dict[str, list[Any]] = field(default_factory=dict)  # name -> data points
    requests: list[str] = field(default_factory=list)

    def named(self, name: str) -> list[Span]:
        return [s for s in self.spans if s.name == name]

    def by_id(self) -> dict[bytes, Span]:
        return {s.span_id: s for s in self.spans}


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            assert self.headers["Content-Type"] == "application/x-protobuf"
            with lock:
                found.requests.append(self.path)
                if self.path == "/v1/traces":
                    request = pb2.ExportTraceServiceRequest.FromString(body)
                    for rs in request.resource_spans:
                        service = {a.key: _value(a.value) for a in rs.resource.attributes}.get("service.name", "")
                        for ss in rs.scope_spans:
                            for s in ss.spans:
                                found.spans.append(Span(
                                    s.name, s.span_id, s.parent_span_id, s.trace_id,
                                    {a.key: _value(a.value) for a in s.attributes}, s.status.code, s.kind,
                                    [e.name for e in s.events], service,
                                ))  # fmt: skip
                    reply = pb2.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    request = metrics_pb2.ExportMetricsServiceRequest.FromString(body)
                    for rm in request.resource_metrics:
                        for sm in rm.scope_metrics:
                            for m in sm.metrics:
                                kind = m.WhichOneof("data")
                                points = list(getattr(m, kind).data_points)
                                found.metrics.setdefault(m.name, []).extend(
                                    ({a.key: _value(a.value) for a in p.attributes}, p) for p in points
                                )
                    reply = metrics_pb2.ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield found
    finally:
        server.shutdown()
        server.server_close()


def otlp_env(receiver: Receiver, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        **CLEAN_ENV,
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "XDG_DATA_HOME": str(tmp_path / "data"),
        **extra,
    }


def ace(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "ace.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def episode(i: int) -> dict[str, Any]:
    question = f"What is the refund window of plan {i}?"
    return {
        "id": f"run-{i}",
        "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": "Sixty days."}],
        "outcome": {"success": False, "message": "wrong: it is 30 days"},
    }


def metric_sum(receiver: Receiver, name: str, **attrs: Any) -> float:
    """The last cumulative value of a counter, summed over the series that carry ``attrs``."""
    last: dict[tuple[Any, ...], float] = {}
    for labels, point in receiver.metrics.get(name, []):
        if all(labels.get(k) == v for k, v in attrs.items()):
            value = point.as_int if point.WhichOneof("value") == "as_int" else point.as_double
            last[tuple(sorted(labels.items()))] = value
    return sum(last.values())


def check_tree(receiver: Receiver, run: Span) -> tuple[list[Span], list[Span]]:
    """The run's steps and their nodes are its descendants, in its trace; returns (steps, chat spans)."""
    by_id = receiver.by_id()
    steps = [s for s in receiver.named("ace.step") if s.parent == run.span_id]
    assert [s.attrs["ace.step.index"] for s in sorted(steps, key=lambda s: s.attrs["ace.step.index"])] == list(
        range(run.attrs["ace.tasks"])
    )
    chats = []
    for s in receiver.spans:
        if s.trace_id != run.trace_id or s.name.startswith("ace.episode"):
            continue
        if s.name.startswith("chat "):
            node = by_id[s.parent]
            assert node.name in ("ace.reflect", "ace.curate") and node.attrs["ace.node"] == node.name[4:]
            assert by_id[node.parent].name == "ace.step" and by_id[node.parent].parent == run.span_id
            chats.append(s)
        elif s.name in ("update_memory", "search_memory"):
            node = by_id[s.parent]  # a node of a step, or (reads around the run) the run or its episode
            in_step = node.name.startswith("ace.") and node.parent in by_id and by_id[node.parent] in steps
            assert in_step or node.name in ("invoke_workflow ace", "ace.episode"), node.name
    return steps, chats


# -- tests ------------------------------------------------------------------------------------------------------------
def test_a_learn_run_exports_its_spans_to_a_real_otlp_receiver(receiver: Receiver, tmp_path: Path) -> None:
    logs = tmp_path / "logs.jsonl"
    logs.write_text("".join(json.dumps(episode(i)) + "\n" for i in range(3)))
    url = f"sqlite:///{tmp_path / 'ace.db'}"
    ace(["learn", str(logs), "--playbook", "support", "--provider", "scripted:valid", "--db", url],
        otlp_env(receiver, tmp_path))  # fmt: skip
    with PlaybookStore(url) as store:
        head = store.head_version("support")
    assert head >= 2, "the scripted curator commits"
    assert set(receiver.requests) == {"/v1/traces", "/v1/metrics"}

    (run,) = receiver.named("invoke_workflow ace")
    assert run.parent == b"" and run.service == "ace"
    assert run.attrs["gen_ai.operation.name"] == "invoke_workflow" and run.attrs["gen_ai.agent.name"] == "ace"
    assert run.attrs["ace.playbook"] == "support" and run.attrs["ace.tasks"] == 3 and run.attrs["ace.run.steps"] == 3
    steps, chats = check_tree(receiver, run)
    assert len(steps) == 3 and all(s.attrs["ace.task.id"] for s in steps)

    # role calls: the conventions' attributes, token counts, no message content unless asked for
    assert {c.attrs["ace.role"] for c in chats} == {"reflector", "curator"} and len(chats) == 6
    for c in chats:
        a = c.attrs
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "scripted"
        assert c.name == f"chat {a['gen_ai.request.model']}" and a["gen_ai.response.model"]
        assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] > 0
        assert a["gen_ai.usage.cache_read.input_tokens"] == 0 and a["gen_ai.output.type"] == "json"
        assert a["ace.latency_s"] >= 0 and a["ace.attempts"] >= 1 and c.kind == 3  # SPAN_KIND_CLIENT
        assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a

    # one update_memory span per version written: the new playbook's v1 (an import, before the run), then each
    # committed version inside the commit node of its step
    writes = receiver.named("update_memory")
    assert sorted(w.attrs["ace.version"] for w in writes) == list(range(1, head + 1))
    (created,) = [w for w in writes if w.attrs["ace.version"] == 1]
    assert created.attrs["ace.commit.kind"] == "import" and created.attrs["gen_ai.memory.store.id"] == "support"
    writes = [w for w in writes if w is not created]
    by_id = receiver.by_id()
    for w in writes:
        assert by_id[w.parent].name == "ace.commit" and w.attrs["gen_ai.memory.store.id"] == "support"
        assert w.attrs["gen_ai.operation.name"] == "update_memory" and w.attrs["ace.commit.kind"] == "delta"
        assert w.attrs["gen_ai.memory.record.count"] >= 1 and w.attrs["ace.memory.record.ids"]
        assert w.attrs["db.system.name"] == "sqlite" and w.kind == 1  # SPAN_KIND_INTERNAL
    reads = receiver.named("search_memory")
    assert reads and all(r.attrs["gen_ai.memory.store.id"] == "support" for r in reads)
    assert {r.attrs["ace.version"] for r in reads} <= set(range(1, head + 1))
    assert all(
        s.trace_id == run.trace_id
        for s in receiver.spans
        if s is not created and (s.name != "search_memory" or s.parent)
    )

    # metrics: the commits, the tokens and the call durations
    assert metric_sum(receiver, "ace.store.commits", **{"ace.playbook": "support"}) == head  # v1 included
    tokens = receiver.metrics["gen_ai.client.token.usage"]
    assert {labels["gen_ai.token.type"] for labels, _ in tokens} == {"input", "output"}
    assert sum(p.count for _, p in tokens) == 2 * len(chats)
    assert "gen_ai.client.operation.duration" in receiver.metrics


def test_a_worker_exports_episodes_with_the_flag_and_message_content_when_asked(
    receiver: Receiver, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ace.db'}"
    with PlaybookStore(url) as store:
        queue = EpisodeQueue(store)
        for i in range(2):
            queue.submit("support", episode(i), namespace="team-a")
    # ACE_OTEL=0 keeps it off whatever the OTEL_* variables say: nothing reaches the receiver ...
    env = otlp_env(receiver, tmp_path, ACE_OTEL="0", OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    base = ["worker", "--db", url, "--provider", "scripted:valid", "--drain", "--max-episodes", "1"]
    ace(base, env)
    assert receiver.requests == [] and receiver.spans == []
    # ... and --otel switches it on
    ace(["--otel", *base], env)
    (ep,) = receiver.named("ace.episode")
    assert ep.parent == b"" and ep.attrs["ace.episode.id"] == "run-1" and ep.attrs["ace.playbook"] == "support"
    assert ep.attrs["ace.namespace"] == "team-a" and ep.attrs["ace.episode.status"] == "done"
    assert ep.attrs["ace.episode.attempt"] == 1 and ep.attrs["ace.version"] >= 2 and ep.status != 2
    (run,) = receiver.named("invoke_workflow ace")
    assert run.parent == ep.span_id and run.trace_id == ep.trace_id
    steps, chats = check_tree(receiver, run)
    assert len(steps) == 1 and len(chats) == 2
    for c in chats:
        sent = json.loads(c.attrs["gen_ai.input.messages"])
        assert sent and all(m["role"] in ("user", "assistant") and m["parts"][0]["type"] == "text" for m in sent)
        (said,) = json.loads(c.attrs["gen_ai.output.messages"])
        json.loads(said["parts"][0]["content"])  # the scripted reply: JSON
        assert said["finish_reason"] == "stop"  # required by the conventions (a backend drops a reply without it)
    assert any("run-1" in c.attrs["gen_ai.input.messages"] or "plan 1" in c.attrs["gen_ai.input.messages"]
               for c in chats)  # fmt: skip
    (write,) = receiver.named("update_memory")
    assert write.attrs["ace.version"] == ep.attrs["ace.version"] and write.attrs["ace.namespace"] == "team-a"
    # metrics: the episode, and the queue's depth as the worker last saw it (both episodes done now)
    assert metric_sum(receiver, "ace.episodes", **{"ace.episode.status": "done"}) == 1
    depth = receiver.metrics["ace.queue.depth"]
    assert {labels["ace.queue.status"] for labels, _ in depth} == {"queued", "running"}
    assert all(p.as_int == 0 for labels, p in depth if labels["ace.queue.status"] == "queued")


SCRIPT_OFF = r"""
import json, sys
from ace import telemetry
from ace.llm import LLM
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.playbook import Delta
from ace.store import PlaybookStore

store = PlaybookStore(sys.argv[1])
store.ensure("p")
ADD = {"type": "ADD", "section": "CHECKS", "content": "Check the totals twice."}
store.commit("p", Delta.parse({"operations": [ADD]}))
store.load("p")
LLM(ScriptedProvider(valid_reply)).call("hello", role="generator")
before = sorted(m for m in sys.modules if m.startswith("opentelemetry"))

from ace.runs.from_logs import learn, load_logs
learn(load_logs(sys.argv[2]), LLM(ScriptedProvider(valid_reply)), store, "p", run_id="r", workdir=sys.argv[3])
from opentelemetry import trace
print(json.dumps({
    "active": telemetry.active(),
    "before": before,
    "exporters": sorted(m for m in sys.modules if m.startswith("opentelemetry.exporter")),
    "provider": type(trace.get_tracer_provider()).__name__,
    "threads": sorted(t.name for t in __import__("threading").enumerate()),
}))
"""


def test_an_unreachable_endpoint_costs_one_bounded_export_and_one_warning(tmp_path: Path) -> None:
    import socket
    import time

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"sqlite:///{tmp_path / 'ace.db'}"
    playbook = Path(__file__).resolve().parents[1] / "playbooks" / "finance.txt"
    env = {
        **CLEAN_ENV,
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
    }
    ace(["playbook", "import", "p", str(playbook), "--db", url], env)
    started = time.monotonic()
    done = ace(["playbook", "show", "p", "--db", url], env)
    took = time.monotonic() - started
    assert "could not be sent" in done.stderr and done.stderr.count("could not be sent") == 1, done.stderr
    assert "Retrying" not in done.stderr and "Traceback" not in done.stderr
    assert took < 6, f"{took:.1f} s: the exporter's 10 s timeout and retries were not bounded"


def test_off_nothing_is_imported_configured_or_exported(tmp_path: Path) -> None:
    logs = tmp_path / "logs.jsonl"
    logs.write_text(json.dumps(episode(0)) + "\n")
    script = tmp_path / "off.py"
    script.write_text(SCRIPT_OFF)
    done = subprocess.run(
        [sys.executable, str(script), f"sqlite:///{tmp_path / 'ace.db'}", str(logs), str(tmp_path / "runs")],
        env={**CLEAN_ENV, "OTEL_SERVICE_NAME": "not-a-switch"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["active"] is False
    assert found["before"] == []  # a store and a model call import nothing of OpenTelemetry
    # the loop's LangGraph imports langsmith, which imports the SDK if it is there; ace configures and exports nothing
    assert found["exporters"] == [] and found["provider"] == "ProxyTracerProvider"
    assert not [t for t in found["threads"] if "Otel" in t or "Export" in t]


SCRIPT_MISSING = r"""
import importlib.abc, json, sys

class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(("opentelemetry.sdk", "opentelemetry.exporter")):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Missing())
import logging
logging.basicConfig(level=logging.WARNING)
from ace import telemetry
from ace.llm import LLM
from ace.llm.testing import ScriptedProvider, valid_reply
from ace.playbook import Delta
from ace.store import PlaybookStore

store = PlaybookStore(sys.argv[1])
store.ensure("p")
ADD = {"type": "ADD", "section": "CHECKS", "content": "Check the totals twice."}
info = store.commit("p", Delta.parse({"operations": [ADD]}))
text = LLM(ScriptedProvider(valid_reply)).call("hello").text
print(json.dumps({"active": telemetry.active(), "version": info.version, "text": text}))
"""


def test_with_the_packages_missing_it_warns_once_and_everything_works(tmp_path: Path) -> None:
    script = tmp_path / "missing.py"
    script.write_text(SCRIPT_MISSING)
    done = subprocess.run([sys.executable, str(script), f"sqlite:///{tmp_path / 'ace.db'}"],
                          env={**CLEAN_ENV, "ACE_OTEL": "1"}, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["active"] is False and found["version"] == 2 and found["text"]
    assert done.stderr.count("pip install 'ace[otel]'") == 1


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_EXPORTER_OTLP_HEADERS": "a=b"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"ACE_OTEL": "1"}, True),
        ({"ACE_OTEL": "true"}, True),
        ({"ACE_OTEL": "0", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "ACE_OTEL": "1"}, False),
    ],
)
def test_what_switches_it_on(env: dict[str, str], on: bool) -> None:
    assert wanted(env) is on


def test_async_calls_failures_and_the_cost_when_off() -> None:
    """In process, on an in-memory pipeline: ``acall`` gets its span too, a failed call is an error span with its
    ``error.type``; off, the wrapper costs next to nothing."""
    import asyncio
    import time

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from ace import telemetry
    from ace.llm import LLM, ProviderError
    from ace.llm.testing import ScriptedProvider

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    assert telemetry.enable(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        llm = LLM(ScriptedProvider(["an answer", ProviderError("bad request", status=400)], model="m-1"), retries=0)
        result = asyncio.run(llm.acall("hello", role="generator"))
        with pytest.raises(ProviderError):
            llm.call("again", role="curator")
    finally:
        telemetry.disable()
    ok, failed = spans.get_finished_spans()
    assert ok.name == "chat m-1" and ok.attributes is not None and ok.attributes["ace.role"] == "generator"
    assert ok.attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens > 0
    assert failed.attributes is not None and failed.attributes["error.type"] == "ProviderError"
    assert failed.status.status_code.name == "ERROR" and failed.events[0].name == "exception"
    assert not telemetry.active()

    def bare(x: int) -> int:
        return x

    wrapped = telemetry.traced_write(bare)  # off: one check of a module global
    n = 20_000
    start = time.perf_counter()
    for i in range(n):
        bare(i)
    plain = time.perf_counter() - start
    start = time.perf_counter()
    for i in range(n):
        wrapped(i)
    extra = (time.perf_counter() - start - plain) / n
    assert extra < 20e-6, f"{extra * 1e6:.2f} µs a call when off"
