"""The `gigcx` command: each verb is a thin layer over a `gigcx.*` call.

Exit codes: 0 done, 1 done but some input was bad (reported), 2 could not run (config, index).
"""

import typer

from gigcx.cli.chat import ask
from gigcx.cli.escalation import experts_app, ledger_app
from gigcx.cli.evaluate import evaluate
from gigcx.cli.insights import report
from gigcx.cli.knowledge import knowledge_app
from gigcx.cli.plugin_list import plugins
from gigcx.cli.serve import db_upgrade, serve

app = typer.Typer(
    help="gigcx: an AI front line for customer support, backed by gig experts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(knowledge_app, name="knowledge")
app.command("serve")(serve)
app.command("ask")(ask)
app.command("eval")(evaluate)
db_app = typer.Typer(help="The conversation store.", no_args_is_help=True)
db_app.command("upgrade")(db_upgrade)
app.add_typer(db_app, name="db")
app.add_typer(experts_app, name="experts")
app.add_typer(ledger_app, name="ledger")
app.command("plugins")(plugins)
app.command("report")(report)

__all__ = ["app"]
