from pathlib import Path

import pytest

from memoryos_mcp.cli.main import main
from memoryos_mcp.core.errors import ConfigurationError
from memoryos_mcp.service.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "memoryos.example.toml"


def test_defaults_are_the_papers() -> None:
    s = Settings()
    assert (s.stm_capacity, s.mtm_capacity, s.theta, s.tau, s.top_m, s.top_k, s.lpm_capacity) == (
        7,
        200,
        0.6,
        5,
        5,
        10,
        100,
    )
    assert (s.alpha, s.beta, s.gamma, s.mu) == (1, 1, 1, 1e7)
    assert not s.llm_configured


def test_example_config_loads_and_matches_defaults() -> None:
    assert load_settings(EXAMPLE).model_dump() == Settings().model_dump()


def test_precedence_is_cli_then_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "m.toml"
    config.write_text('top_k = 3\ntop_m = 4\nstm_capacity = 5\nuser_id = "from-file"\n')
    monkeypatch.setenv("MEMORYOS_TOP_M", "6")
    monkeypatch.setenv("MEMORYOS_TOP_K", "8")
    s = load_settings(config, top_k=9)
    assert (s.top_k, s.top_m, s.stm_capacity, s.user_id) == (9, 6, 5, "from-file")


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "m.toml"
    config.write_text("tau = 2.5\n")
    monkeypatch.setenv("MEMORYOS_CONFIG", str(config))
    assert load_settings().tau == 2.5


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_openai_api_key_is_honoured_and_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    s = load_settings()
    assert s.llm_configured and s.llm_api_key is not None
    assert "sk-test-123" not in repr(s) and s.llm_api_key.get_secret_value() == "sk-test-123"


def test_bad_values_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="setting user_id .* 'not valid!' is invalid"):
        load_settings(user_id="not valid!")
    with pytest.raises(ConfigurationError, match="stm_capacity .* must be an integer of at least 1; got 0"):
        load_settings(stm_capacity=0)


@pytest.mark.parametrize(
    ("env", "config", "message"),
    [
        ({"MEMORYOS_TOP_K": "0"}, None, "MEMORYOS_TOP_K must be an integer from 1 to 100; got '0'"),
        ({"MEMORYOS_PORT": "abc"}, None, "MEMORYOS_PORT must be an integer from 0 to 65535; got 'abc'"),
        (
            {"MEMORYOS_TRANSPORT": "http"},
            None,
            "MEMORYOS_TRANSPORT must be 'stdio' or 'streamable-http'; got 'http'",
        ),
        (
            {"MEMORYOS_USER_ID": "null"},
            None,
            "MEMORYOS_USER_ID 'null' is invalid: it reads as a missing value",
        ),
        ({"MEMORYOS_ALLOWED_USERS": " , "}, None, "MEMORYOS_ALLOWED_USERS ' , ' is invalid: names no user"),
        ({}, "top_kk = 3\n", "unknown setting 'top_kk' (did you mean 'top_k'?) in config file"),
        ({}, "top_k = = 3\n", "is not valid TOML"),
        ({}, 'stm_capacity = "seven"\n', "stm_capacity in "),
        (
            {"MEMORYOS_CONFIG": "/nonexistent/m.toml"},
            None,
            "MEMORYOS_CONFIG=/nonexistent/m.toml does not name an existing file",
        ),
    ],
)
def test_a_bad_setting_stops_serve_with_one_line_and_status_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    env: dict[str, str],
    config: str | None,
    message: str,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    argv = ["serve", "--data-dir", str(tmp_path / "data")]
    if config is not None:
        (tmp_path / "m.toml").write_text(config)
        argv += ["--config", str(tmp_path / "m.toml")]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""  # nothing on the protocol channel
    (line,) = err.strip().splitlines()
    assert line.startswith("memoryos-mcp: error: ") and message in line, line
    assert not (tmp_path / "data").exists()  # stopped before touching the data dir


def test_allowed_users_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMORYOS_ALLOWED_USERS", "alice, bob")
    assert load_settings().allowed_users == ["alice", "bob"]
    monkeypatch.delenv("MEMORYOS_ALLOWED_USERS")
    assert Settings().allowed_users is None and Settings().auth_tokens_file is None


def test_a_user_id_is_the_whole_string() -> None:
    from memoryos_mcp.service.settings import user_id_problem

    assert user_id_problem("alice") is None
    for bad in ("alice\n", "alice\nbob", "\nalice", "al ice"):
        assert user_id_problem(bad) is not None, repr(bad)
