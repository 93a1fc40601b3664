"""The ``clipdenoise train`` command line."""

from __future__ import annotations

from clipdenoise.cli import build_parser


def test_help_documents_every_option():
    parser = build_parser()
    train_parser = next(
        action.choices["train"]
        for action in parser._actions
        if getattr(action, "choices", None) and "train" in action.choices
    )
    for action in train_parser._actions:
        assert action.help and len(action.help) > 10, action.option_strings
    text = train_parser.format_help()
    for flag in ("--resume", "--set", "--overwrite", "--encoder", "torchrun", "--data-root"):
        assert flag in text
