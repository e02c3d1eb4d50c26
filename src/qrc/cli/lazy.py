"""A quick start for every ``qrc`` command: sub-commands load when they run, not before.

``qrc encrypt`` should cost about what ``age`` does, yet the same program serves the key
service, operates its store and talks to it over PQ TLS. Two things keep the offline
commands from paying for the rest:

* :class:`LazyGroup` names its commands by ``module:attribute`` and imports and builds one
  only when it is invoked, or when the full list is shown (``qrc --help``, a misspelt
  command's suggestions): ``qrc encrypt`` never imports ``qrc serve``'s web stack nor
  ``qrc admin``'s store. Typer builds each, as ``app.add_typer``/``app.command`` would have
  at start: help and behaviour are the same.
* :func:`quicken` (and :class:`QuickCommand`, for ``--help``) converts the values of plain
  ``str`` and ``Path`` parameters, and absent ones, exactly as Typer does but without the
  pydantic ``TypeAdapter`` Typer builds for every parameter: importing pydantic alone costs
  more than the rest of ``qrc encrypt``'s start. Every other type, and any value that is not
  a plain command-line string, goes to Typer's own conversion.

This leans on Typer internals (``typer._coercion``, ``_TyperParameter._runtime_param``):
``tests/cli/test_startup.py`` fails if a Typer upgrade brings pydantic back into
``qrc encrypt``, and ``tests/cli`` check that behaviour is unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import typer
import typer.main
from typer._click import Command, Context
from typer._coercion import RuntimeParam, build_runtime_param
from typer._param_types import coerce_cli_path
from typer.core import TyperCommand, TyperGroup, TyperOption, _TyperParameter

__all__ = ["LazyGroup", "QuickCommand", "quicken"]


class _QuickParam(RuntimeParam):
    """Typer's conversion of one parameter, with the common cases done without pydantic."""

    def _coerce_value(self, value: Any, param: _TyperParameter, ctx: Context) -> Any:
        info, annotation = self.parameter_info, self.annotation
        if type(value) is str and info.parser is None and not param.type_descriptor.is_file:
            if annotation is str:
                return value  # Typer: str(value), checked as a str
            if annotation is Path and info.path_type is None:
                # Typer: Path(value) (pydantic's str -> Path), then the same path checks.
                return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
        # Anything else: Typer's own conversion, from now on for this parameter.
        param._runtime_param = build_runtime_param(param.type_descriptor)
        return param._runtime_param._coerce_value(value, param=param, ctx=ctx)


def _quick(param: object) -> None:
    if isinstance(param, _TyperParameter) and param._runtime_param is None:
        descriptor = param.type_descriptor
        param._runtime_param = _QuickParam(descriptor.parameter_info, descriptor.annotation)


def quicken(command: Command) -> None:
    """Give ``command``'s parameters, and its sub-commands', the quick conversion."""
    for param in command.params:
        _quick(param)
    for sub in getattr(command, "commands", {}).values():
        if isinstance(sub, Command):
            quicken(sub)


class QuickCommand(TyperCommand):
    """A Typer command whose parameters, ``--help`` included, convert without pydantic."""

    def __init__(self, name: str | None, **attrs: Any) -> None:
        super().__init__(name, **attrs)
        quicken(self)

    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option = super().get_help_option(ctx)  # made on first use, for ctx's option names
        _quick(option)
        return option


class LazyGroup(TyperGroup):
    """A command group whose ``lazy`` sub-commands are imported when they are needed.

    ``lazy`` maps a name to ``"module:attribute"``: a ``typer.Typer`` (a sub-group) or a
    command function. ``--help`` lists them after the group's own commands, in its order.
    """

    lazy: ClassVar[Mapping[str, str]] = {}

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        quicken(self)

    def get_help_option(self, ctx: Context) -> TyperOption | None:
        option = super().get_help_option(ctx)
        _quick(option)
        return option

    def _load(self, name: str) -> Command:
        module, _, attribute = self.lazy[name].partition(":")
        target = getattr(importlib.import_module(module), attribute)
        # Built through a Typer with this group's settings, as app.add_typer / app.command
        # would have built it when the whole tree was made at start.
        holder = typer.Typer(
            rich_markup_mode=self.rich_markup_mode,
            suggest_commands=self.suggest_commands,
            options_metavar=self.options_metavar or "[OPTIONS]",
        )
        if isinstance(target, typer.Typer):
            holder.add_typer(target, name=name)
        else:
            holder.command(name, cls=QuickCommand)(target)
        command = typer.main.get_group(holder).commands[name]
        quicken(command)
        self.commands[name] = command
        return command

    def _load_all(self) -> None:
        for name in self.lazy:
            if name not in self.commands:
                self._load(name)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: Context) -> list[str]:
        return [*(name for name in self.commands if name not in self.lazy), *self.lazy]

    def resolve_command(
        self, ctx: Context, args: list[str]
    ) -> tuple[str | None, Command | None, list[str]]:
        if args and args[0] not in self.commands and args[0] not in self.lazy:
            self._load_all()  # an unknown name: suggest from every command, as before
        return super().resolve_command(ctx, args)
