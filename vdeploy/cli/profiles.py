"""profiles list/show/match. (in progress)"""
import typer

app = typer.Typer(no_args_is_help=True, help="profiles list/show/match.")
