"""Command-line options derived from the settings schemas: each setting is declared once (in
``srcrn.settings`` for the trainings, ``srcrn.commands`` for the other commands,
``srcrn.serving.settings`` for the service), and every command's flags are generated from its
schema, with the field's description, its choices and its default as help. Values given on the
command line are validated by the schema like any other source, so a bad flag gets the same
one-line error.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, Optional

import typer
from pydantic.fields import FieldInfo

from srcrn.settings import Settings, flag_name

# Flags whose names predate the schema (kept so that users' commands keep working).
FLAG_NAMES = {"finetune": "--finetune/--frozen"}


def _base_type(annotation: Any) -> tuple[type, str]:
    """The click-level type of a field, and the text of its choices (if any)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(kinds) > 1:  # e.g. an image size, 128 or 192x256: text, parsed by the schema
            return str, ""
        annotation = kinds[0]
    if typing.get_origin(annotation) is list:  # a repeatable flag; its items' choices checked by the schema
        item_choices = _base_type(typing.get_args(annotation)[0])[1]
        return list[str], item_choices
    if typing.get_origin(annotation) is Literal:
        choices = typing.get_args(annotation)
        # Choices are validated by the schema (one-line error naming the flag), not by click.
        return type(choices[0]), " | ".join(str(c) for c in choices)
    return annotation, ""


def option_for(name: str, field: FieldInfo) -> Any:
    """``Annotated[Optional[T], typer.Option(...)]`` for one schema field; None = not given."""
    base, choices = _base_type(field.annotation)
    help_text = field.description or name.replace("_", " ")
    if choices:
        help_text += f" ({choices})"
    if field.is_required():
        help_text += "; required"
    else:
        default = field.get_default(call_default_factory=True)
        help_text += f"; default {default}" if default is not None else ""
    flag = FLAG_NAMES.get(name, f"{flag_name(name)}/--no-{flag_name(name)[2:]}" if base is bool else flag_name(name))
    return Annotated[Optional[base], typer.Option(flag, help=help_text, show_default=False)]


def with_schema_options(
    schema: type[Settings], into: str = "flags"
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a command ``f(..., flags: dict)``: typer sees one option per field of ``schema``,
    and ``f`` receives the given ones (None = not given) as ``flags`` (or the parameter named by
    ``into``, so that a command may take two schemas' flags: its own and a training's).

    Args:
        schema: the settings schema whose fields become flags.
        into: the name of the command's parameter that receives them.

    Returns:
        The decorator.
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(function, eval_str=True)
        kept = [p for p in own.parameters.values() if p.name != into]
        taken = {p.name for p in kept}
        added = [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option_for(name, field))
            for name, field in schema.model_fields.items()
            if name not in taken
        ]

        @functools.wraps(function)
        def command(**values: Any) -> Any:
            flags = {name: values.pop(name) for name in schema.model_fields if name in values}
            return function(**values, **{into: flags})

        parameters = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in kept] + added
        command.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": own.return_annotation}
        return command

    return decorate
