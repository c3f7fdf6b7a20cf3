"""`northstar erase-user` against the running suite."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from northstar_client.cli import app

runner = CliRunner()


def test_erase_user_asks_then_erases_and_the_events_leave_the_counts(suite, wait) -> None:
    user = "cli-erased-user"
    event = "cli.erasure.probe"
    sent = runner.invoke(app, ["track", event, "-u", user], env=suite.env())
    assert sent.exit_code == 0, sent.output
    wait(lambda: suite.event_count(event) == 1)

    # Without --yes it asks; "no" erases nothing.
    refused = runner.invoke(app, ["erase-user", user], input="n\n", env=suite.env())
    assert refused.exit_code == 1
    assert "not erased" in refused.output

    erased = runner.invoke(app, ["erase-user", user, "--yes", "--json"], env=suite.env())
    assert erased.exit_code == 0, erased.output
    answer = json.loads(erased.output[erased.output.index("{") :])
    assert answer["erasure_id"].startswith("erasure-") and int(answer["log_position"]) > 0
    wait(lambda: suite.event_count(event) == 0)

    # A repeat is the same erasure; the table form names it.
    again = runner.invoke(app, ["erase-user", user, "--yes"], env=suite.env())
    assert again.exit_code == 0, again.output
    assert "ERASED" in again.output and answer["erasure_id"] in again.output


def test_an_invalid_user_id_fails_with_the_status(suite) -> None:
    result = runner.invoke(app, ["erase-user", "", "--yes"], env=suite.env())
    assert result.exit_code == 1
    assert "INVALID_ARGUMENT" in result.output and "user_id is required" in result.output
