"""env check: owned by the foundation work. (in progress)"""
import typer

app = typer.Typer(no_args_is_help=True, help="env check: owned by the foundation work.")
