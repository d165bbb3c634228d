"""OpenAI-shaped error bodies, each taken from a recording or from the API reference.

Every error the fake server sends is ``{"error": {"message", "type", "param", "code"}}``
with the exact wording the real API uses, so SDK exception classes, ``e.code`` and
``e.param`` behave the same as in production.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

API_KEYS_URL = "https://platform.openai.com/account/api-keys"


class APIErrorResponse(Exception):
    """Raised inside the server to answer with an error status and an OpenAI error body."""

    def __init__(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


def error_body(
    message: str, error_type: str | None, param: str | None = None, code: Any = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def invalid_request(
    message: str, *, param: str | None = None, code: str | None = None, status: int = 400
) -> APIErrorResponse:
    return APIErrorResponse(status, error_body(message, "invalid_request_error", param, code))


def invalid_json() -> APIErrorResponse:
    return invalid_request(
        "We could not parse the JSON body of your request. (HINT: This likely means "
        "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
        "payload, but what was sent was not valid JSON. If you have trouble figuring "
        "out how to fix this, please contact us through our help center at "
        "help.openai.com.)"
    )


def model_not_found(model: str) -> APIErrorResponse:
    """404 from Chat Completions, Completions and Embeddings (recorded)."""
    return invalid_request(
        f"The model `{model}` does not exist or you do not have access to it.",
        code="model_not_found",
        status=404,
    )


def responses_model_not_found(model: str) -> APIErrorResponse:
    """The Responses API says the same thing as a 400 naming ``model`` (recorded)."""
    return invalid_request(
        f"The requested model '{model}' does not exist.", param="model", code="model_not_found"
    )


def missing_parameter(name: str) -> APIErrorResponse:
    return invalid_request(
        f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def unsupported_value(param: str, message: str) -> APIErrorResponse:
    return invalid_request(f"Unsupported value: {message}", param=param, code="unsupported_value")


def unsupported_parameter(param: str, message: str) -> APIErrorResponse:
    return invalid_request(
        f"Unsupported parameter: {message}", param=param, code="unsupported_parameter"
    )


def unknown_parameter(name: str) -> APIErrorResponse:
    return invalid_request(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def invalid_value(param: str, value: Any, allowed: Sequence[str]) -> APIErrorResponse:
    """``Invalid value: 'x'. Supported values are: 'a', 'b', and 'c'.``"""
    quoted = [f"'{item}'" for item in allowed]
    if len(quoted) > 2:
        listed = ", ".join(quoted[:-1]) + f", and {quoted[-1]}"
    else:
        listed = " and ".join(quoted)
    return invalid_request(
        f"Invalid value: '{value}'. Supported values are: {listed}.",
        param=param,
        code="invalid_value",
    )


def out_of_range(param: str, value: Any, low: float, high: float) -> APIErrorResponse | None:
    """The real API's wording for a number outside its range, or None when it is fine."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    shown = int(value) if float(value).is_integer() else value
    if value < low:
        return invalid_request(
            f"Invalid '{param}': decimal below minimum value. "
            f"Expected a value >= {_number(low)}, but got {shown} instead.",
            param=param,
            code="decimal_below_min_value",
        )
    if value > high:
        return invalid_request(
            f"Invalid '{param}': decimal above maximum value. "
            f"Expected a value <= {_number(high)}, but got {shown} instead.",
            param=param,
            code="decimal_above_max_value",
        )
    return None


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def mask_key(key: str) -> str:
    """The real API shows a wrong key as its first and last characters around asterisks."""
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:3]}{'*' * 12}{key[-4:]}"


def invalid_api_key(key: str | None) -> APIErrorResponse:
    if not key:
        return APIErrorResponse(
            401,
            error_body(
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)"
                ", or as the password field (with blank username) if you're accessing the API"
                " from your browser and are prompted for a username and password. You can "
                f"obtain an API key from {API_KEYS_URL}.",
                "invalid_request_error",
            ),
        )
    return APIErrorResponse(
        401,
        error_body(
            f"Incorrect API key provided: {mask_key(key)}. "
            f"You can find your API key at {API_KEYS_URL}.",
            "invalid_request_error",
            code="invalid_api_key",
        ),
    )


def azure_access_denied() -> APIErrorResponse:
    """Azure's 401 body (recorded): a string code and no type."""
    return APIErrorResponse(
        401,
        {
            "error": {
                "code": "401",
                "message": "Access denied due to invalid subscription key or wrong API endpoint."
                " Make sure to provide a valid key for an active subscription and use a "
                "correct regional API endpoint for your resource.",
            }
        },
    )


def azure_deployment_not_found() -> APIErrorResponse:
    """Azure's 404 for an unknown deployment (recorded)."""
    return APIErrorResponse(
        404,
        {
            "error": {
                "code": "DeploymentNotFound",
                "message": "The API deployment for this resource does not exist. If you created"
                " the deployment within the last 5 minutes, please wait a moment and try again.",
            }
        },
    )


def scripted(
    status: int,
    *,
    model: str,
    message: str | None,
    code: str | None,
    error_type: str | None,
    param: str | None,
) -> dict[str, Any]:
    """The body for ``FakeOpenAI.fail_next``: real wording per status, overridable."""
    default_message, default_type, default_code = _scripted_defaults(status, model, code)
    return error_body(
        message if message is not None else default_message,
        error_type if error_type is not None else default_type,
        param,
        code if code is not None else default_code,
    )


def _scripted_defaults(status: int, model: str, code: str | None) -> tuple[str, str, Any]:
    if status == 401:
        return (
            "Incorrect API key provided: sk-fake************1234. "
            f"You can find your API key at {API_KEYS_URL}.",
            "invalid_request_error",
            "invalid_api_key",
        )
    if status == 403:
        return (
            "Country, region, or territory not supported",
            "request_forbidden",
            "unsupported_country_region_territory",
        )
    if status == 404:
        return (
            f"The model `{model}` does not exist or you do not have access to it.",
            "invalid_request_error",
            "model_not_found",
        )
    if status == 429 and code == "insufficient_quota":
        return (
            "You exceeded your current quota, please check your plan and billing details. "
            "For more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            "insufficient_quota",
        )
    if status == 429:
        return (
            f"Rate limit reached for {model} in organization org-fake on requests per min "
            "(RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            "requests",
            "rate_limit_exceeded",
        )
    if status == 500:
        return (
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )
    if status == 502:
        return ("Bad gateway.", "cf_bad_gateway", 502)
    if status == 503:
        return (
            "The engine is currently overloaded, please try again later.",
            "service_unavailable_error",
            "server_is_overloaded",
        )
    if status >= 500:
        return ("The server had an error processing your request.", "server_error", None)
    return ("Invalid request.", "invalid_request_error", None)
