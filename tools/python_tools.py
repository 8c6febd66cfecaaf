"""Tools that are plain Python functions: a typed function with a docstring under @python_tool, offered with --tools."""

from __future__ import annotations

import ast
import functools
import inspect
import operator
from collections.abc import Callable
from typing import Annotated

from pydantic import Field

from tools.servers import ServerSpec

SERVER_NAME = "python"  # how the page and --check name them
MAX_EXPRESSION_CHARS = 200
MAX_RESULT_BITS = 4000  # about 1,200 digits: an answer, not a way to keep the server busy
INF = float("inf")

_BINARY: dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable] = {ast.UAdd: operator.pos, ast.USub: operator.neg}

TOOLS: list[Callable] = []  # every function under @python_tool, in order


def python_tool(function: Callable) -> Callable:
    """Offer this function as a tool (with --tools): its name is the tool's, the first paragraph of its
    docstring the description, its type hints (Annotated with a Field description, if you like) the schema.
    A ValueError's sentence reaches the model and the user as the failed call's result."""
    TOOLS.append(function)
    return function


@python_tool
def calculate(expression: Annotated[str, Field(description="Numbers with + - * / // % ** and parentheses.")]) -> str:
    """Work out an arithmetic expression exactly, such as (17 * 23) / 4 or 2 ** 64 % 1000."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"The expression is too long: at most {MAX_EXPRESSION_CHARS} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"{expression!r} is not an arithmetic expression.") from None
    try:
        value = _value(tree.body)
    except ZeroDivisionError:
        raise ValueError("It divides by zero.") from None
    except OverflowError:
        raise ValueError("The result is too large to work out here.") from None
    return str(value) if isinstance(value, int) else f"{value:.15g}"


def _value(node: ast.expr) -> int | float:
    """Only numbers and the operators above: names, calls and attributes are refused, so nothing but
    arithmetic can run."""
    match node:
        case ast.Constant(value=bool()):
            pass
        case ast.Constant(value=int() | float() as number):
            return number
        case ast.UnaryOp(op=op, operand=operand) if type(op) in _UNARY:
            return _UNARY[type(op)](_value(operand))
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            a, b = _value(left), _value(right)
            too_big = isinstance(a, int) and isinstance(b, int) and abs(a).bit_length() * b > MAX_RESULT_BITS
            if isinstance(op, ast.Pow) and abs(a) > 1 and too_big:  # refused before it is worked out
                raise OverflowError
            result = _BINARY[type(op)](a, b)
            if (isinstance(result, int) and result.bit_length() > MAX_RESULT_BITS) or result in (INF, -INF):
                raise OverflowError
            if isinstance(result, complex):  # (-8) ** 0.5
                raise ValueError("The result is not a real number.")
            return result
    raise ValueError("Only numbers, + - * / // % ** and parentheses are allowed.")


def tool_names() -> list[str]:
    return [function.__name__ for function in TOOLS]


def python_server(names: tuple[str, ...]) -> ServerSpec:
    """The named tools as an MCP server in this process: the hub calls them like any other server's,
    with the same timeouts, schema checks, redaction, approval and steps on screen."""
    from mcp.server.mcpserver import MCPServer  # here: the settings read TOOLS without loading the SDK

    server = MCPServer("python-tools", log_level="WARNING")  # its INFO lines: each failed call
    for function in TOOLS:
        if function.__name__ in names:
            described = inspect.cleandoc(function.__doc__ or "").split("\n\n")[0]  # its first paragraph
            server.add_tool(_telling(function), description=described)
    return ServerSpec(SERVER_NAME, in_process=server)


def _telling(function: Callable) -> Callable:
    """The function, its ValueError's sentence passed on to the model: the SDK passes on only a ToolError's
    text (any other exception is a crash, whose text stays on the server)."""
    from mcp.server.mcpserver.exceptions import ToolError

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_async(*args, **kwargs):
            try:
                return await function(*args, **kwargs)
            except ValueError as exc:
                raise ToolError(str(exc)) from None

        return run_async

    @functools.wraps(function)
    def run(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except ValueError as exc:
            raise ToolError(str(exc)) from None

    return run
