from binder_service.builds.r2d_logs import Progress, parse_line
from binder_service.events import Phase


def test_phases_and_plain_lines() -> None:
    assert parse_line('{"message": "Cloning\\n", "phase": "fetching"}').phase is Phase.FETCHING
    assert parse_line('{"message": "#5 RUN x\\n", "phase": "building"}').phase is Phase.BUILDING
    push = parse_line('{"message": "#7 pushing 127.0.0.1:5055/x:y with docker\\n", "phase": "building"}')
    assert push.phase is Phase.PUSHING
    assert parse_line('{"message": "Picked Git content provider.\\n"}').phase is None
    plain = parse_line("not json at all")
    assert (plain.phase, plain.message) == (None, "not json at all\n")
    assert parse_line("[1, 2]").message == "[1, 2]\n"


def test_failure_lines_are_errors() -> None:
    line = parse_line('{"message": "Failed to check out ref x", "phase": "failed"}')
    assert line.error
    assert line.message == "Failed to check out ref x"


def test_failure_prefers_the_engines_reason() -> None:
    seen: list[tuple[Phase, str]] = []
    progress = Progress(lambda phase, message: seen.append((phase, message)), Phase.BUILDING)
    progress.feed('{"message": "#5 RUN exit 3\\n", "phase": "building"}')
    progress.feed(
        '{"message": "#5 ERROR: process \\"/bin/sh -c exit 3\\" did not complete: exit code: 3\\n",'
        ' "phase": "building"}'
    )
    progress.feed(
        '{"message": "Error during build: Command [docker, buildx] returned 1", "phase": "failure"}'
    )
    assert progress.failure("fallback") == 'ERROR: process "/bin/sh -c exit 3" did not complete: exit code: 3'
    assert Progress(lambda *_: None).failure("fallback") == "fallback"
