"""``llmmeter evaluate DATASET --from A --to B``: can the cheaper model do the job?

Every request of a JSONL dataset goes to both models through the official SDK; the answers
are compared with one of the comparators shadow evaluation uses (``_compare``), with each
other (agreement) and with the right answer where the dataset gives one (accuracy). The
verdict compares the Wilson 95% *lower* bound of the decisive measure with the target, so a
small sample has to do better than the target to pass: "95% of 20 agreed" is not yet
evidence that 95% of production will. Costs are priced with llmmeter's own table, as spans
are, from the token counts each answer reported.

The whole dataset is validated before the first request: a bad line is exit code 2 with the
file, the line and what was expected. Requests that fail are reported apart (by line, model
and error class, never the API's message, which can quote a key) and their lines excluded
from every measure, so both models are always measured on the same lines.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from llmmeter._compare import (
    Answer,
    Comparator,
    ComparatorProblem,
    Comparison,
    ToolCall,
    build_comparator,
    compare,
    extract_label,
)
from llmmeter._config import resolve_settings
from llmmeter._pricing import PriceTable
from llmmeter._usage import read_usage
from llmmeter.exceptions import ConfigError

from . import inputs, progress
from .common import UsageError, Writer, exit_codes, format_cost, parse_share, plural
from .evidence import Proportion, proportion

Api = Literal["chat", "responses"]
Side = Literal["from", "to"]
SIDES: Final[tuple[Side, Side]] = ("from", "to")
REQUESTS_PER_PROJECTION: Final = 1_000_000

# Keyword arguments of the SDK's create() that are not request options a dataset may set.
_NOT_OPTIONS: Final = frozenset(
    {
        "model",
        "messages",
        "input",
        "stream",
        "stream_options",
        "background",
        "extra_headers",
        "extra_query",
        "extra_body",
        "timeout",
    }
)
_SET_BY_US: Final = {
    "model": "the model is set by --from and --to",
    "stream": "requests are sent unstreamed",
    "stream_options": "requests are sent unstreamed",
    "background": "background responses are not evaluated",
}
_API_NAMES: Final = {"chat": "chat.completions.create", "responses": "responses.create"}


@dataclass(frozen=True, slots=True)
class Item:
    """One dataset line: which API, the request options, the right answer if known."""

    line: int
    api: Api
    request: dict[str, Any]
    expected: Answer | None


@dataclass(frozen=True, slots=True)
class Sent:
    """What one model did with one request: its result, or the error class; and its cost."""

    result: Any = None
    error: str | None = None
    cost: float | None = None


@dataclass(slots=True)
class _Tally:
    """One measure being summed: scores of judged pairs, and the pairs that were not."""

    score: float = 0.0
    n: int = 0
    unjudged: list[tuple[int, str]] = field(default_factory=list)

    def add(self, line: int, judged: Comparison) -> None:
        if judged.score is None:
            self.unjudged.append((line, judged.error or "not judged"))
        else:
            self.score += judged.score
            self.n += 1


# --- the dataset ---------------------------------------------------------------------------


def _kind(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _expected(where: str, value: object, comparator: Comparator) -> Answer:
    """The ``expected`` field as an Answer the comparator can use as its reference."""
    if comparator.name == "tool":
        calls = value if isinstance(value, list) else None
        if not calls or not all(
            isinstance(c, dict)
            and isinstance(c.get("name"), str)
            and set(c) <= {"name", "arguments"}
            for c in calls
        ):
            raise UsageError(
                f"{where}: 'expected': with --compare tool, expected a non-empty array of "
                f'{{"name": ..., "arguments": {{...}}}} objects; got {_kind(value)}'
            )
        return Answer(
            None,
            tuple(
                ToolCall(
                    c["name"],
                    c["arguments"]
                    if isinstance(c.get("arguments"), str)
                    else json.dumps(c.get("arguments", {})),
                )
                for c in calls
            ),
        )
    if comparator.name == "json":
        if isinstance(value, str):
            try:
                json.loads(value)
            except ValueError:
                raise UsageError(
                    f"{where}: 'expected': with --compare json, expected a JSON value or JSON "
                    "text; got a string that is not JSON"
                ) from None
            return Answer(value)
        return Answer(json.dumps(value))
    if not isinstance(value, str):
        raise UsageError(
            f"{where}: 'expected': expected the right answer as a string; got {_kind(value)}"
        )
    if comparator.label is not None and extract_label(comparator.label, value) is None:
        raise UsageError(f"{where}: 'expected': expected a text in which --label finds a label")
    return Answer(value)


def _item(
    where: str,
    line: int,
    record: object,
    comparator: Comparator,
    options: dict[Api, frozenset[str]],
) -> Item:
    if not isinstance(record, dict):
        raise UsageError(f"{where}: expected a JSON object; got {_kind(record)}")
    if ("messages" in record) == ("input" in record):
        raise UsageError(
            f"{where}: expected exactly one of 'messages' (Chat Completions) or 'input' "
            f"(Responses); got {'both' if 'messages' in record else 'neither'}"
        )
    api: Api = "chat" if "messages" in record else "responses"
    request = {k: v for k, v in record.items() if k != "expected"}
    if api == "chat":
        messages = record["messages"]
        if not (
            isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)
        ):
            raise UsageError(
                f"{where}: 'messages': expected a non-empty array of message objects; "
                f"got {_kind(messages)}"
            )
    elif not isinstance(record["input"], str | list) or not record["input"]:
        raise UsageError(
            f"{where}: 'input': expected a non-empty string or array of input items; "
            f"got {_kind(record['input'])}"
        )
    for key in request:
        if key in ("messages", "input"):
            continue
        if key in _SET_BY_US:
            raise UsageError(f"{where}: {key!r}: {_SET_BY_US[key]}; remove it from the dataset")
        if key not in options[api]:
            raise UsageError(
                f"{where}: {key!r}: expected a request option that {_API_NAMES[api]} accepts "
                "(or 'expected'); this one it does not"
            )
    expected = _expected(where, record["expected"], comparator) if "expected" in record else None
    return Item(line, api, request, expected)


def load_dataset(
    path: str, comparator: Comparator, options: dict[Api, frozenset[str]], limit: int | None
) -> list[Item]:
    """Every request of a JSONL file (blank lines skipped), validated; the first ``limit``.

    Each line is read within ``inputs.MAX_LINE`` bytes and may nest ``inputs.MAX_DEPTH``
    levels; the requests are kept (they are sent after the whole file is checked), so the
    dataset's size is what this costs in memory: ``--limit`` reads no further.
    """
    items: list[Item] = []
    try:
        with open(path, "rb") as stream:
            reading = inputs.Progress("evaluate", path, stream)
            for number, raw in inputs.lines(path, stream, progress=reading):
                if limit is not None and len(items) >= limit:
                    break
                where = f"{path}, line {number}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    raise UsageError(
                        f"{where}: expected UTF-8 JSONL (one JSON object a line)"
                    ) from None
                if not text.strip():
                    continue
                items.append(_item(where, number, _record(where, text), comparator, options))
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not items:
        raise UsageError(f"{path}: expected one JSON object a line; the file has none")
    return items


def _record(where: str, text: str) -> object:
    """One line's JSON, nested at most ``inputs.MAX_DEPTH`` levels: deeper requests would
    fail in the SDK's (and json's) recursion, not here with the line's number."""
    try:
        record = json.loads(text)
    except RecursionError:
        record = None
        depth = inputs.MAX_DEPTH + 1
    except ValueError as exc:  # not JSONDecodeError: a number past int()'s digits
        message = getattr(
            exc, "msg", f"a number of more than {sys.get_int_max_str_digits()} digits"
        )
        raise UsageError(f"{where}: expected a JSON object; not JSON ({message})") from None
    except MemoryError:
        raise UsageError(f"{where}: not enough memory to parse this line") from None
    else:
        depth = inputs.nesting(record)
    if depth > inputs.MAX_DEPTH:
        raise UsageError(
            f"{where}: expected a request nested at most {inputs.MAX_DEPTH} levels deep; "
            "this one is deeper"
        )
    return record


def sdk_options() -> dict[Api, frozenset[str]]:
    """The request options the installed SDK's create() methods take, by API.

    Read from the signatures, so a dataset may use whatever this openai version supports
    and a typo fails before any request rather than as a TypeError mid-run.
    """
    from openai.resources.chat.completions import Completions
    from openai.resources.responses import Responses

    def names(method: Callable[..., Any]) -> frozenset[str]:
        parameters = inspect.signature(method).parameters.values()
        return frozenset(
            p.name
            for p in parameters
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in _NOT_OPTIONS
        )

    return {"chat": names(Completions.create), "responses": names(Responses.create)}


# --- running ---------------------------------------------------------------------------------


def _describe_error(exc: BaseException) -> str:
    """The error class and HTTP status: the API's message can quote part of a key."""
    status = getattr(exc, "status_code", None)
    return type(exc).__name__ + (f" (HTTP {status})" if isinstance(status, int) else "")


def _send(create: Callable[..., Any], table: PriceTable, item: Item, model: str) -> Sent:
    try:
        result = create(model=model, **item.request)
    except Exception as exc:
        return Sent(error=_describe_error(exc))
    usage = read_usage(getattr(result, "usage", None))
    answered = getattr(result, "model", None)
    cost = None
    if usage is not None:
        try:
            priced = table.price(usage, (answered if isinstance(answered, str) else None, model))
        except ArithmeticError:  # token counts no float holds, from a server gone wrong
            priced = None
        cost = priced.total if priced is not None else None
    return Sent(result=result, cost=cost)


def run_requests(
    client: Any, table: PriceTable, items: list[Item], models: tuple[str, str], concurrency: int
) -> list[dict[Side, Sent]]:
    """Both models' answers to every item, at most ``concurrency`` requests at a time."""
    results: list[dict[Side, Sent]] = [{} for _ in items]
    # Shown from the first request, on a terminal or off it: every request is a round trip.
    steps = progress.Steps("evaluate", "requests", 2 * len(items), progress.Status(delay=0.0))
    print(
        f"llmmeter evaluate: sending {steps.total} requests, {concurrency} at a time",
        file=sys.stderr,
    )
    creators: dict[Api, Callable[..., Any]] = {
        "chat": client.chat.completions.create,
        "responses": client.responses.create,
    }
    jobs = [
        (index, side, item, model)
        for index, item in enumerate(items)
        for side, model in zip(SIDES, models, strict=True)
    ]
    # The SDK imports modules lazily at its first request and first parsed answer, and a
    # thread that sees another's half-imported module fails (openai 2.x: AttributeError on
    # a partially initialized module). So the first request of each API runs alone.
    first = {item.api: index for index, item in reversed(list(enumerate(items)))}
    alone = [job for job in jobs if first[job[2].api] == job[0] and job[1] == "from"]
    done = {(index, side) for index, side, _, _ in alone}
    for index, side, item, model in alone:
        results[index][side] = _send(creators[item.api], table, item, model)
        steps.step()
    with ThreadPoolExecutor(
        max_workers=concurrency, thread_name_prefix="llmmeter-evaluate"
    ) as pool:
        running = {
            pool.submit(_send, creators[item.api], table, item, model): (index, side)
            for index, side, item, model in jobs
            if (index, side) not in done
        }
        for job in as_completed(running):
            index, side = running[job]
            results[index][side] = job.result()
            steps.step()
    steps.finish(" done")
    return results


# --- the report --------------------------------------------------------------------------------


def _measure(tally: _Tally) -> dict[str, Any]:
    found: Proportion = proportion(tally.score, tally.n)
    return {
        "score": tally.score,
        "n": tally.n,
        "point": found.point,
        "lower": found.low,
        "upper": found.high,
        "unjudged": [{"line": line, "reason": reason} for line, reason in tally.unjudged],
    }


def build_report(
    args: argparse.Namespace,
    comparator: Comparator,
    items: list[Item],
    results: list[dict[Side, Sent]],
) -> dict[str, Any]:
    """Everything ``evaluate`` prints, as the JSON object ``--json`` shows."""
    models: dict[Side, str] = {"from": args.source, "to": args.target_model}
    errors = [
        {"line": item.line, "model": models[side], "error": sent[side].error}
        for item, sent in zip(items, results, strict=True)
        for side in SIDES
        if sent[side].error is not None
    ]
    compared = [
        (item, sent)
        for item, sent in zip(items, results, strict=True)
        if all(sent[side].error is None for side in SIDES)
    ]
    agreement = _Tally()
    accuracy = {side: _Tally() for side in SIDES}
    disagreements: list[int] = []
    for item, sent in compared:
        judged = compare(comparator, sent["from"].result, sent["to"].result)
        agreement.add(item.line, judged)
        if judged.score is not None and judged.score < 1.0:
            disagreements.append(item.line)
        if item.expected is not None:
            for side in SIDES:
                accuracy[side].add(item.line, compare(comparator, item.expected, sent[side].result))
    with_expected = sum(item.expected is not None for item, _ in compared)
    has_expected = any(item.expected is not None for item in items)

    costs: dict[str, Any] = {}
    means: dict[Side, float | None] = {}
    for side in SIDES:
        spent = [sent[side].cost for _, sent in compared]
        priced = [c for c in spent if c is not None]
        total = sum(priced) if compared and len(priced) == len(spent) else None
        means[side] = total / len(compared) if total is not None else None
        costs[side] = {"model": models[side], "total": total, "mean": means[side]}
    mean_from, mean_to = means["from"], means["to"]
    savings = (
        (mean_from - mean_to) * REQUESTS_PER_PROJECTION
        if mean_from is not None and mean_to is not None
        else None
    )

    measures = {"agreement": _measure(agreement)}
    accuracies = {side: {"model": models[side], **_measure(accuracy[side])} for side in SIDES}
    decisive = accuracies["to"] if has_expected else measures["agreement"]
    verdict = {
        "met": decisive["lower"] >= args.target,
        "measure": "accuracy" if has_expected else "agreement",
        "model": models["to"] if has_expected else None,
        "lower": decisive["lower"],
        "target": args.target,
    }
    return {
        "dataset": args.dataset,
        "from": models["from"],
        "to": models["to"],
        "compare": comparator.name,
        "label": comparator.label.pattern if comparator.label is not None else None,
        "n": len(items),
        "compared": len(compared),
        "with_expected": with_expected,
        "errors": errors,
        "agreement": measures["agreement"],
        "accuracy": accuracies if has_expected else None,
        "cost_usd": costs,
        "savings_per_1m_requests_usd": savings,
        "verdict": verdict,
        "disagreements": disagreements,
    }


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _count(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def _lines(numbers: list[int], limit: int = 20) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f", ... ({len(numbers)} in all)" if len(numbers) > limit else "")


def render_text(report: dict[str, Any], out: Writer) -> None:
    """The report as a few aligned lines for people."""
    out(
        f"{report['n']} requests from {report['dataset']}: {report['from']} -> {report['to']}, "
        f"compared with {report['compare']}"
        + (f" (label {report['label']})" if report["label"] else "")
    )
    errors = report["errors"]
    out(
        f"compared: {report['compared']}; errors: {plural(len(errors), 'failed request')}"
        + (f", {plural(report['n'] - report['compared'], 'line')} excluded" if errors else "")
    )
    for error in errors[:20]:
        out(f"  line {error['line']}: {error['model']}: {error['error']}")
    rows = []
    if report["accuracy"] is not None:
        for side in SIDES:
            rows.append((f"accuracy {report['accuracy'][side]['model']}", report["accuracy"][side]))
    rows.append(("agreement", report["agreement"]))
    width = max(len(name) for name, _ in rows)
    out("")
    out(f"{'measure'.ljust(width)}  {'score':<18}  95% lower bound  unjudged")
    for name, measure in rows:
        score = f"{_count(measure['score'])}/{measure['n']} = {_share(measure['point'])}"
        out(
            f"{name.ljust(width)}  {score:<18}  {_share(measure['lower']):<15}  "
            f"{len(measure['unjudged'])}"
        )
    out("")
    out(f"cost over the {report['compared']} compared requests:")
    for side in SIDES:
        cost = report["cost_usd"][side]
        if cost["total"] is None:
            shown = "no price known (or no usage reported)"
        else:
            shown = f"{format_cost(cost['total'])} total, {format_cost(cost['mean'])} per request"
        out(f"  {cost['model']}: {shown}")
    savings = report["savings_per_1m_requests_usd"]
    out(
        "projected savings per 1M requests: "
        + ("n/a" if savings is None else ("-" if savings < 0 else "") + format_cost(abs(savings)))
    )
    verdict = report["verdict"]
    if verdict["measure"] == "accuracy":
        decided = (
            f"accuracy of {verdict['model']} against 'expected' ({report['with_expected']} lines)"
        )
    else:
        decided = f"agreement of {report['to']} with {report['from']} (no 'expected' answers)"
    relation = ">=" if verdict["met"] else "<"
    out("")
    out(
        f"verdict: target {'met' if verdict['met'] else 'NOT met'}: lower bound "
        f"{_share(verdict['lower'])} {relation} target {_share(verdict['target'])}; "
        f"decided by the {decided}"
    )
    if report["disagreements"]:
        out(f"disagreements on lines: {_lines(report['disagreements'])}")


# --- the command -------------------------------------------------------------------------------


def _evaluate(args: argparse.Namespace, out: Writer) -> int:
    try:
        comparator = build_comparator(args.compare, args.label)
    except ComparatorProblem as exc:
        raise UsageError(f"--{exc.key}: {exc}") from None
    try:
        settings = resolve_settings(prices=args.prices)
        table = PriceTable.load(settings.prices_path)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        import openai
    except ImportError:
        raise UsageError("evaluate needs the openai package: pip install openai") from None
    items = load_dataset(args.dataset, comparator, sdk_options(), args.limit)
    try:
        client = openai.OpenAI(base_url=args.base_url)
    except openai.OpenAIError:
        raise UsageError(
            "no API key: set OPENAI_API_KEY (any value for a server that needs none)"
        ) from None
    with client:
        results = run_requests(
            client, table, items, (args.source, args.target_model), args.concurrency
        )
    report = build_report(args, comparator, items, results)
    if args.json:
        out(json.dumps(report, indent=2))
    else:
        render_text(report, out)
    return 0 if report["verdict"]["met"] else 1


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1; got {text!r}")
    return value


_EPILOG = """\
DATASET is JSONL, one request a line:
  {"messages": [{"role": "user", "content": "Refund please"}], "expected": "negative"}
  {"input": "Summarize: ...", "max_output_tokens": 200}
'messages' goes to Chat Completions, 'input' to Responses; other keys are request options
passed to the SDK; 'expected' (optional) is the right answer.

example:
  llmmeter evaluate sample.jsonl --from gpt-4o --to gpt-4o-mini --compare label \\
      --label '(?i)\\b(positive|negative|neutral)\\b' --target 0.95
"""


def add_evaluate_parser(commands: Any) -> None:
    """``llmmeter evaluate``."""
    parser = commands.add_parser(
        "evaluate",
        help="send a dataset to two models and judge whether the cheaper one is good enough",
        description=(
            "Send every request of DATASET to the --from and the --to model, compare the\n"
            "answers (with each other, and with 'expected' where given), price both, and\n"
            "check the Wilson 95% lower bound of the decisive measure against --target: the\n"
            "--to model's accuracy when the dataset has expected answers, else agreement."
        ),
        epilog=_EPILOG
        + "\n"
        + exit_codes(
            (0, "the target is met"),
            (1, "the target is not met (also when every request failed)"),
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("dataset", metavar="DATASET", help="JSONL file of requests")
    parser.add_argument(
        "--from", dest="source", required=True, metavar="MODEL", help="the model used today"
    )
    parser.add_argument(
        "--to", dest="target_model", required=True, metavar="MODEL", help="the candidate model"
    )
    parser.add_argument(
        "--compare",
        choices=("exact", "json", "tool", "label"),
        default="exact",
        help="how answers are compared (default: exact)",
    )
    parser.add_argument(
        "--label", metavar="REGEX", help="with --compare label: the regex that finds the label"
    )
    parser.add_argument(
        "--target",
        type=parse_share,
        default=0.95,
        metavar="SHARE",
        help="the lower bound needed, 0 to 1 (default: 0.95)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=8,
        metavar="N",
        help="requests in flight at once (default: 8)",
    )
    parser.add_argument(
        "--base-url", metavar="URL", help="an OpenAI-compatible API (default: the SDK's)"
    )
    parser.add_argument("--limit", type=_positive, metavar="N", help="only the first N requests")
    parser.add_argument(
        "--prices", metavar="FILE", help="TOML prices overrides file (default: $LLMMETER_PRICES)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    parser.set_defaults(handler=_evaluate, prog=parser.prog)
